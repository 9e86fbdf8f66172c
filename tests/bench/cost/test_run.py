"""The cost bench's split of a reply's latency into stages, from the fakes' logs."""

from __future__ import annotations

from typing import Any

from bench.cost.run import STAGES, stages_from_logs

T0 = 1_000_000.0


def _push(id_message: str, end: float, ms: float, status: int = 200) -> dict[str, Any]:
    return {"idMessage": id_message, "time": end, "duration_ms": ms, "status": status}


def _send(chat: str, at: float, status: int = 200) -> dict[str, Any]:
    return {"time": at, "status": status, "body": {"chatId": chat, "message": "..."}}


def _ask(at: float, path: str = "/chat/completions") -> dict[str, Any]:
    return {"time": at, "path": path}


def test_each_stage_is_the_time_between_two_logged_events_of_one_message() -> None:
    ids = {"m1": "a@c.us", "m2": "b@c.us"}
    injected = {"a@c.us": T0, "b@c.us": T0 + 0.1}
    deliveries = [
        _push("m1", T0 + 0.012, 10.0, status=500),  # a refused push is not the one answered
        _push("m1", T0 + 0.020, 8.0),  # started at +12 ms: 12 ms queued, 8 ms of webhook
        _push("m2", T0 + 0.110, 6.0),  # started at +104 ms: 4 ms queued
        _push("other", T0 + 0.2, 1.0),  # a journal notification: not a guest message
    ]
    asked = [_ask(T0 + 0.030), _ask(T0 + 0.120), _ask(T0 + 0.121, "/models")]
    sends = [
        _send("a@c.us", T0 + 0.035),
        _send("b@c.us", T0 + 0.130, status=429),
        _send("b@c.us", T0 + 0.140),
    ]

    stages = stages_from_logs(deliveries, sends, asked, injected, ids)

    assert set(stages) == {"p50", "p95"}
    assert tuple(stages["p95"]) == STAGES
    # message 1: 12 queued, 8 webhook, 10 to DeepSeek, 5 to the send; message 2: 4, 6, 10, 20
    assert stages["p95"] == {
        "queued_at_fake": 12.0,
        "webhook": 8.0,
        "to_deepseek": 10.0,
        "deepseek_to_send": 20.0,
    }
    assert stages["p50"] == {
        "queued_at_fake": 4.0,
        "webhook": 6.0,
        "to_deepseek": 10.0,
        "deepseek_to_send": 5.0,
    }


def test_the_deepseek_request_is_the_last_before_the_send_and_an_unanswered_message_is_left_out() -> None:
    ids = {"m1": "a@c.us", "m2": "b@c.us"}
    injected = {"a@c.us": T0, "b@c.us": T0}
    deliveries = [_push("m1", T0 + 0.010, 10.0), _push("m2", T0 + 0.020, 10.0)]
    # a retried AI call: the one the reply came from is the last before the send
    asked = [_ask(T0 - 0.5), _ask(T0 + 0.015), _ask(T0 + 0.025), _ask(T0 + 0.9)]
    sends = [_send("a@c.us", T0 + 0.030)]  # m2 was never answered

    stages = stages_from_logs(deliveries, sends, asked, injected, ids)

    assert stages["p50"] == {
        "queued_at_fake": 0.0,
        "webhook": 10.0,
        "to_deepseek": 15.0,
        "deepseek_to_send": 5.0,
    }
