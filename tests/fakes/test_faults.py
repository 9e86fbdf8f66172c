"""The fault engine and the common control API (shared by both fakes)."""

from __future__ import annotations

import http.client
import threading
import time

import pytest

from fakes import FakeDeepSeek, FakeGreenApi
from tests.fakes.conftest import Reply, call, wait_until

STATE = "/waInstance1101000001/getStateInstance/test-token"
SETTINGS = "/waInstance1101000001/getSettings/test-token"


def statuses(fake: FakeGreenApi, n: int, path: str = STATE) -> list[int]:
    return [call(fake.url, "GET", path).status for _ in range(n)]


def test_count_applies_n_times(green: FakeGreenApi) -> None:
    rule = green.add_fault({"mode": "error", "status": 500, "count": 2})

    assert statuses(green, 3) == [500, 500, 200]
    [after] = green.faults()
    assert (after["id"], after["matched"], after["applied"]) == (rule["id"], 3, 2)
    assert [e["rule"]["id"] if e["rule"] else None for e in green.journal()] == [rule["id"], rule["id"], None]


def test_after_skips_the_first_matches(green: FakeGreenApi) -> None:
    green.add_fault({"mode": "overloaded", "after": 2, "count": 1})
    assert statuses(green, 4) == [200, 200, 503, 200]


def test_probability_is_deterministic_per_seed(green: FakeGreenApi) -> None:
    def pattern() -> list[int]:
        green.add_fault({"mode": "error", "status": 500, "probability": 0.5})
        return statuses(green, 30)

    green.reset(seed=42)
    first = pattern()
    green.reset(seed=42)
    second = pattern()
    green.reset(seed=7)
    third = pattern()

    assert first == second
    assert first != third
    assert 5 <= first.count(500) <= 25


def test_match_fields(green: FakeGreenApi) -> None:
    green.add_fault({"match": {"method_name": "GETSETTINGS", "http_method": "get"}, "mode": "rate_limit"})
    green.add_fault({"match": {"path_regex": r"/lastIncomingMessages/"}, "mode": "overloaded"})

    assert call(green.url, "GET", SETTINGS).status == 429
    assert call(green.url, "GET", STATE).status == 200
    assert call(green.url, "GET", "/waInstance1101000001/lastIncomingMessages/test-token").status == 503


def test_outage_window_resets_then_recovers(green: FakeGreenApi) -> None:
    green.add_fault(
        {"match": {"method_name": "getSettings"}, "mode": "outage", "status": 503, "window": {"end": 0.7}}
    )
    # Rules are evaluated in order: the getSettings rule must come before the catch-all.
    green.add_fault({"mode": "outage", "window": {"start": 0.3, "end": 0.7}})
    created = time.monotonic()

    assert call(green.url, "GET", STATE).status == 200
    time.sleep(max(0.0, 0.4 - (time.monotonic() - created)))
    with pytest.raises(ConnectionResetError):
        call(green.url, "GET", STATE)
    assert call(green.url, "GET", SETTINGS).status == 503
    time.sleep(max(0.0, 0.8 - (time.monotonic() - created)))
    assert call(green.url, "GET", STATE).status == 200
    assert call(green.url, "GET", SETTINGS).status == 200


def test_reset_sends_rst(green: FakeGreenApi) -> None:
    green.add_fault({"mode": "reset", "count": 1})

    with pytest.raises(ConnectionResetError):
        call(green.url, "GET", STATE)

    [entry] = green.journal()
    assert entry["outcome"] == "reset"
    assert entry["status"] is None


def test_hang_never_answers_and_stop_is_prompt() -> None:
    fake = FakeGreenApi(rate_limits=False).start()
    try:
        fake.add_fault({"mode": "hang"})
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            call(fake.url, "GET", STATE, timeout=0.3)
        assert time.monotonic() - started < 1
        wait_until(lambda: fake.journal()[0]["outcome"] == "hang")  # noticed the client left

        errors: list[BaseException] = []

        def patient_client() -> None:
            try:
                call(fake.url, "GET", STATE, timeout=30)
            except BaseException as exc:
                errors.append(exc)

        client = threading.Thread(target=patient_client)
        client.start()
        wait_until(lambda: len(fake.journal()) == 2)
    finally:
        started = time.monotonic()
        fake.stop()
        stop_took = time.monotonic() - started
    client.join(timeout=5)
    assert stop_took < 1.5
    assert not client.is_alive()
    assert isinstance(errors[0], http.client.RemoteDisconnected | ConnectionError)


def test_latency_delays_then_processes_normally(green: FakeGreenApi) -> None:
    green.add_fault({"mode": "latency", "latency_ms": 300, "jitter_ms": 100, "count": 1})

    started = time.monotonic()
    reply = call(green.url, "GET", STATE)
    elapsed = time.monotonic() - started

    assert reply.json == {"stateInstance": "authorized"}
    assert 0.3 <= elapsed < 1.0
    assert green.journal()[0]["rule"]["mode"] == "latency"


def test_close_early_truncates_the_body(green: FakeGreenApi) -> None:
    green.add_fault({"mode": "close_early", "count": 1})

    with pytest.raises(http.client.IncompleteRead):
        call(green.url, "GET", SETTINGS)

    assert green.journal()[0]["outcome"] == "close_early"


def test_close_early_on_a_stream_drops_it_mid_way(deepseek: FakeDeepSeek) -> None:
    deepseek.add_fault({"mode": "close_early"})
    body = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "checkout?"}], "stream": True}

    with pytest.raises(http.client.IncompleteRead) as caught:
        call(deepseek.url, "POST", "/chat/completions", body, headers={"Authorization": "Bearer sk-test"})

    assert b"data: " in caught.value.partial
    assert b"[DONE]" not in caught.value.partial


def test_flaky_chooses_among_error_reset_latency(green: FakeGreenApi) -> None:
    green.add_fault({"mode": "flaky", "probability": 1, "latency_ms": 10})

    outcomes = []
    for _ in range(15):
        try:
            outcomes.append(call(green.url, "GET", STATE).status)
        except ConnectionResetError:
            outcomes.append(0)

    applied = [e["rule"]["applied_mode"] for e in green.journal()]
    assert set(applied) == {"error", "reset", "latency"}
    expected = {"error": 500, "reset": 0, "latency": 200}
    assert outcomes == [expected[m] for m in applied]


def test_control_api_crud_and_journal_filters(green: FakeGreenApi) -> None:
    created = call(
        green.url, "POST", "/__fake__/faults", {"match": {"method_name": "getSettings"}, "mode": "overloaded"}
    )
    assert created.status == 201
    rule_id = created.json["id"]
    call(green.url, "POST", "/__fake__/faults", {"mode": "hang", "match": {"path_regex": "never-matches"}})
    assert [r["id"] for r in call(green.url, "GET", "/__fake__/faults").json] == [rule_id, rule_id + 1]

    call(green.url, "GET", SETTINGS)
    call(green.url, "GET", STATE)
    by_name = call(green.url, "GET", "/__fake__/requests?method_name=getsettings").json
    by_path = call(green.url, "GET", "/__fake__/requests?path_regex=getState").json

    assert [(e["method_name"], e["status"], e["rule"]["id"]) for e in by_name] == [
        ("getSettings", 503, rule_id)
    ]
    assert [(e["method_name"], e["status"], e["rule"]) for e in by_path] == [("getStateInstance", 200, None)]
    assert call(green.url, "DELETE", f"/__fake__/faults/{rule_id}").json == {"deleted": 1}
    assert call(green.url, "DELETE", "/__fake__/faults").json == {"deleted": 1}
    assert call(green.url, "GET", "/__fake__/faults").json == []


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{oops", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"mode": "explode"}', "mode must be one of"),
        (b'{"mode": "error", "stauts": 500}', "unknown rule field(s): stauts"),
        (b'{"mode": "error", "probability": 2}', "probability"),
        (b'{"mode": "error", "match": {"path_regex": "("}}', "path_regex"),
        (b'{"mode": "outage", "window": {"start": 5, "end": 1}}', "window.end"),
    ],
)
def test_bad_rules_get_400_json(green: FakeGreenApi, raw: bytes, fragment: str) -> None:
    reply = call(green.url, "POST", "/__fake__/faults", raw=raw, headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert fragment in reply.json["error"]
    with pytest.raises(ValueError, match="mode"):
        green.add_fault({"mode": "explode"})


def test_control_paths_are_never_faulted(green: FakeGreenApi, deepseek: FakeDeepSeek) -> None:
    for fake in (green, deepseek):
        fake.add_fault({"mode": "hang", "match": {"path_regex": ".*"}})
        reply: Reply = call(fake.url, "GET", "/__fake__/faults", timeout=2)
        assert reply.status == 200
        assert call(fake.url, "GET", "/__fake__/health", timeout=2).json["ok"] is True
        assert fake.journal() == []  # control calls are not journaled either


def test_deepseek_rules_match_on_model(deepseek: FakeDeepSeek) -> None:
    deepseek.add_fault({"match": {"model": "deepseek-v4-pro"}, "mode": "rate_limit", "retry_after": 2})
    auth = {"Authorization": "Bearer sk-test"}
    messages = [{"role": "user", "content": "hi"}]

    pro = call(
        deepseek.url,
        "POST",
        "/chat/completions",
        {"model": "deepseek-v4-pro", "messages": messages},
        headers=auth,
    )
    flash = call(
        deepseek.url,
        "POST",
        "/chat/completions",
        {"model": "deepseek-flash", "messages": messages},
        headers=auth,
    )

    assert (pro.status, pro.headers["retry-after"]) == (429, "2")
    assert pro.json["error"]["type"] == "rate_limit_error"
    assert flash.status == 200
    assert [e["model"] for e in deepseek.journal(model="deepseek-v4-pro")] == ["deepseek-v4-pro"]
