"""The fake DeepSeek over plain HTTP (validation, envelopes, concurrency, scripts) and its reply engine."""

from __future__ import annotations

import json
import threading

import pytest

from fakes import FakeDeepSeek, compose_reply, parse_hotel_facts
from tests.fakes.conftest import HOTEL_PROMPT, Reply, call, wait_until

AUTH = {"Authorization": "Bearer sk-test"}


def chat(
    fake: FakeDeepSeek, body: object, headers: dict[str, str] | None = None, path: str = "/chat/completions"
) -> Reply:
    return call(fake.url, "POST", path, body, headers=AUTH if headers is None else headers)


def valid(**extra: object) -> dict[str, object]:
    return {"model": "deepseek-flash", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authentication Fails (auth header format should be Bearer sk-...)"),
        ({"Authorization": "sk-test"}, "Authentication Fails (auth header format should be Bearer sk-...)"),
        ({"Authorization": "Bearer sk-nope"}, "Authentication Fails, Your api key: ****nope is invalid"),
    ],
)
def test_auth_errors(deepseek: FakeDeepSeek, headers: dict[str, str], message: str) -> None:
    reply = chat(deepseek, valid(), headers=headers)
    assert reply.status == 401
    assert reply.json == {
        "error": {
            "message": message,
            "type": "authentication_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 400, "Model Not Exist"),
        ({"model": "deepseek-flash"}, 400, "missing field `messages`"),
        ({"model": "deepseek-flash", "messages": []}, 400, "Empty input messages"),
        (
            {"model": "deepseek-flash", "messages": [{"role": "robot", "content": "x"}]},
            400,
            "unknown variant `robot`",
        ),
        (valid(temperature=2.5), 422, "valid range of temperature is [0, 2]"),
        (valid(temperature="hot"), 422, "invalid type"),
        (valid(top_p=0), 422, "top_p"),
        (valid(max_tokens=0), 422, "max_tokens"),
        (valid(n=3), 422, "valid range of n"),
        (valid(response_format={"type": "json_object"}), 400, "must contain the word 'json'"),
        (valid(thinking={"type": "sometimes"}), 422, "thinking.type"),
    ],
)
def test_validation_errors(
    deepseek: FakeDeepSeek, body: dict[str, object], status: int, fragment: str
) -> None:
    reply = chat(deepseek, body)
    assert reply.status == status
    error = reply.json["error"]
    assert fragment in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None


def test_broken_json_is_400(deepseek: FakeDeepSeek) -> None:
    reply = call(deepseek.url, "POST", "/chat/completions", raw=b"{not json", headers=AUTH)
    assert reply.status == 400
    assert "Failed to parse the request body as JSON" in reply.json["error"]["message"]


def test_v1_prefix_balance_and_models(deepseek: FakeDeepSeek) -> None:
    assert chat(deepseek, valid(), path="/v1/chat/completions").status == 200
    balance = call(deepseek.url, "GET", "/user/balance", headers=AUTH).json
    assert balance["is_available"] is True
    assert balance["balance_infos"][0]["currency"]
    models = call(deepseek.url, "GET", "/v1/models", headers=AUTH).json
    assert models["object"] == "list"
    assert {"id": "deepseek-flash", "object": "model", "owned_by": "deepseek"} in models["data"]
    assert call(deepseek.url, "GET", "/models").status == 401


def test_non_stream_response_shape(deepseek: FakeDeepSeek) -> None:
    reply = chat(deepseek, valid(thinking={"type": "disabled"}))

    body = reply.json
    assert reply.headers["content-type"] == "application/json"
    assert "content-length" in reply.headers
    assert "x-ds-trace-id" in reply.headers
    assert set(body) == {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    assert len(body["id"]) == 36
    assert body["choices"][0]["logprobs"] is None
    assert set(body["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "prompt_cache_hit_tokens",
        "prompt_cache_miss_tokens",
    }


def test_stream_wire_format(deepseek: FakeDeepSeek) -> None:
    reply = chat(deepseek, valid(stream=True, thinking={"type": "disabled"}))

    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.headers["transfer-encoding"] == "chunked"
    events = [e for e in reply.raw.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_concurrency_limit_answers_429(deepseek: FakeDeepSeek) -> None:
    deepseek.configure(concurrency_limit=1)
    deepseek.add_fault({"mode": "latency", "latency_ms": 400, "count": 1})
    slow: list[Reply] = []
    worker = threading.Thread(target=lambda: slow.append(chat(deepseek, valid())))
    worker.start()
    wait_until(lambda: deepseek.in_flight().get("flash") == 1)

    rejected = chat(deepseek, valid(model="deepseek-v4-flash"))  # the same pool as deepseek-flash
    other_pool = chat(deepseek, valid(model="deepseek-v4-pro"))
    worker.join()

    assert rejected.status == 429
    assert rejected.json["error"]["message"] == "Rate Limit Reached"
    assert other_pool.status == 200
    assert slow[0].status == 200
    # The fake counts a request out once its response is written: the client may see it first.
    wait_until(lambda: deepseek.in_flight() == {"flash": 0, "pro": 0})


def test_blank_json_fault(deepseek: FakeDeepSeek) -> None:
    deepseek.add_fault({"mode": "blank_json"})
    body = valid(response_format={"type": "json_object"})
    body["messages"] = [{"role": "user", "content": "answer in json: hi"}]

    choice = chat(deepseek, body).json["choices"][0]

    assert choice["message"]["content"].strip() == ""
    assert choice["finish_reason"] == "stop"


def test_keepalive_then_close(deepseek: FakeDeepSeek) -> None:
    deepseek.add_fault({"mode": "keepalive", "keepalive_s": 0.5, "keepalive_then": "close"})
    with pytest.raises(Exception, match=r"(?i)incomplete|IncompleteRead|closed"):
        chat(deepseek, valid())
    assert deepseek.journal()[0]["outcome"] == "aborted"


def test_scripts_win_over_keywords(deepseek: FakeDeepSeek) -> None:
    created = call(deepseek.url, "POST", "/__fake__/script", {"pattern": r"check.?out", "reply": "Scripted!"})
    assert created.status == 201

    reply = chat(
        deepseek,
        valid(messages=[{"role": "user", "content": "Late CHECKOUT please"}], thinking={"type": "disabled"}),
    )

    assert reply.json["choices"][0]["message"]["content"] == "Scripted!"
    assert call(deepseek.url, "GET", "/__fake__/script").json[0]["hits"] == 1
    assert call(deepseek.url, "POST", "/__fake__/script", {"pattern": "(", "reply": "x"}).status == 400
    call(deepseek.url, "DELETE", "/__fake__/script")
    assert "Scripted!" not in chat(deepseek, valid()).raw.decode()


# ---------------------------------------------------------------------- reply engine
MORE = " Anything else I can help with?"


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Can I have a late checkout?", "Check-out at Seaside Inn is until 11:00."),
        ("what time can we arrive", "Check-in at Seaside Inn is from 15:00."),
        (
            "WIFI PASSWORD?",
            'For the Wi-Fi at Seaside Inn, use network "Seaside-Guest", password "sunny2026".',
        ),
        (
            "Where do we eat in the morning?",
            "Breakfast at Seaside Inn is served 07:00-10:30 in the garden room.",
        ),
        ("Where can I leave my car?", "Parking at Seaside Inn: free on-site parking, 20 spaces."),
        ("How do I find you, what's the address?", "Seaside Inn is located at 1 Beach Road, Porto."),
        (
            "I want to talk to a human",
            "You can reach our staff at any time: reception, dial 9 or +351 900 000 000.",
        ),
    ],
)
def test_keyword_answers(question: str, answer: str) -> None:
    assert compose_reply(HOTEL_PROMPT, question).text == answer + MORE


def test_greeting_thanks_and_unknown() -> None:
    assert compose_reply(HOTEL_PROMPT, "Hello!").text.startswith("Hello and welcome to Seaside Inn!")
    assert compose_reply(HOTEL_PROMPT, "thanks a lot").text.startswith(
        "You're welcome! Enjoy your stay at Seaside Inn."
    )
    unknown = compose_reply(HOTEL_PROMPT, "Do you have a sauna?")
    assert unknown.handoff is True
    assert unknown.text.endswith(
        "You can also reach our staff directly: reception, dial 9 or +351 900 000 000."
    )
    assert compose_reply(HOTEL_PROMPT, "this is odd").topics == ["unknown"]  # "hi" in "this" is no greeting


def test_two_topics_in_question_order() -> None:
    reply = compose_reply(HOTEL_PROMPT, "When is breakfast, and when is check-out?")
    assert reply.topics == ["breakfast", "checkout"]


def test_several_messages_in_one_question_get_one_answer_to_each() -> None:
    """A guest's burst (one user message, a line per WhatsApp message): greeted, then each topic."""
    reply = compose_reply(HOTEL_PROMPT, "hi\ndo you have parking\nand breakfast?")
    assert reply.text == (
        "Hello and welcome to Seaside Inn! Parking at Seaside Inn: free on-site parking, 20 spaces. "
        "Breakfast at Seaside Inn is served 07:00-10:30 in the garden room." + MORE
    )
    assert (reply.topics, reply.handoff) == (["parking", "breakfast"], False)
    partial = compose_reply(HOTEL_PROMPT, "is there parking?\nDo you have a sauna?")
    assert partial.text == (
        "Parking at Seaside Inn: free on-site parking, 20 spaces. For the rest, please contact our "
        "staff: reception, dial 9 or +351 900 000 000." + MORE
    )
    assert partial.handoff is True
    assert compose_reply(HOTEL_PROMPT, "hi\nthanks").topics == ["greeting"]
    assert compose_reply(HOTEL_PROMPT, "hmm\nsauna?").topics == ["unknown"]


def test_missing_facts_and_custom_labels() -> None:
    prompt = (
        "Hotel facts:\n- Hotel: Casa Azul\n- Pool: open 08:00-20:00 on the roof\n- Staff contact: dial 9\n"
        "\nBe kind.\n- Spa: not parsed, the facts block ended"
    )
    assert parse_hotel_facts(prompt) == {
        "hotel": ("Hotel", "Casa Azul"),
        "pool": ("Pool", "open 08:00-20:00 on the roof"),
        "staffcontact": ("Staff contact", "dial 9"),
    }
    assert compose_reply(prompt, "is the pool open?").text.startswith(
        "Pool at Casa Azul: open 08:00-20:00 on the roof."
    )
    missing = compose_reply(prompt, "wifi?")
    assert missing.text.startswith(
        "I'm sorry, I don't have the Wi-Fi details at hand. Please contact our staff: dial 9."
    )
    assert missing.handoff is True
    assert compose_reply("no facts here", "checkout?").text.startswith("I'm sorry")
