"""Fidelity: the official, unmodified openai SDK against the fake DeepSeek."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from fakes import FakeDeepSeek
from tests.fakes.conftest import HOTEL_PROMPT


def ask(question: str, system: str = HOTEL_PROMPT) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


NO_THINKING: dict[str, object] = {"thinking": {"type": "disabled"}}


def test_answers_from_hotel_facts_without_thinking(deepseek: FakeDeepSeek, openai_client: OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="deepseek-flash", messages=ask("What time is check-out?"), extra_body=NO_THINKING
    )

    [choice] = completion.choices
    assert choice.message.content == "Check-out at Seaside Inn is until 11:00. Anything else I can help with?"
    assert choice.finish_reason == "stop"
    assert "reasoning_content" not in choice.message.model_dump()
    assert completion.model == "deepseek-flash"
    assert completion.object == "chat.completion"
    usage = completion.usage
    assert usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens == len(choice.message.content) // 4
    extra = usage.model_dump()
    assert extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"] == usage.prompt_tokens
    [entry] = deepseek.journal("chat/completions")
    assert entry["path"] == "/chat/completions"
    assert entry["model"] == "deepseek-flash"
    assert entry["headers"]["authorization"] == "Bearer sk-test"
    assert entry["body"]["thinking"] == {"type": "disabled"}


def test_thinking_is_on_by_default(openai_client: OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="deepseek-v4-pro", messages=ask("wifi password?")
    )

    message = completion.choices[0].message.model_dump()
    assert message["content"].startswith('For the Wi-Fi at Seaside Inn, use network "Seaside-Guest"')
    assert "wifi" in message["reasoning_content"]
    assert completion.usage is not None
    details = completion.usage.completion_tokens_details
    assert details is not None
    assert details.reasoning_tokens == len(message["reasoning_content"]) // 4


def test_second_call_with_the_same_system_prompt_hits_the_cache(openai_client: OpenAI) -> None:
    messages = ask("hi", system=HOTEL_PROMPT * 3)
    first = openai_client.chat.completions.create(
        model="deepseek-flash", messages=messages, extra_body=NO_THINKING
    )
    second = openai_client.chat.completions.create(
        model="deepseek-flash", messages=messages, extra_body=NO_THINKING
    )

    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.model_dump()["prompt_cache_hit_tokens"] == 0
    hit = second.usage.model_dump()["prompt_cache_hit_tokens"]
    assert hit > 0
    assert hit % 64 == 0


def test_streaming_yields_the_same_answer_with_usage(openai_client: OpenAI) -> None:
    expected = openai_client.chat.completions.create(
        model="deepseek-flash", messages=ask("Where can I park?"), extra_body=NO_THINKING
    )

    stream = openai_client.chat.completions.create(
        model="deepseek-flash",
        messages=ask("Where can I park?"),
        stream=True,
        stream_options={"include_usage": True},
        extra_body=NO_THINKING,
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    assert len(chunks) > 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_streaming_with_thinking_sends_reasoning_first(openai_client: OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(model="deepseek-flash", messages=ask("breakfast?"), stream=True)
    )
    deltas = [c.choices[0].delta.model_dump() for c in chunks]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    last_reasoning = max(i for i, d in enumerate(deltas) if d.get("reasoning_content"))
    assert reasoning
    assert content.startswith("Breakfast at Seaside Inn is served 07:00-10:30")
    assert last_reasoning < first_content


def test_json_mode(openai_client: OpenAI) -> None:
    messages = ask("When can I check in?", system=HOTEL_PROMPT + "\nReply as JSON.")

    completion = openai_client.chat.completions.create(
        model="deepseek-flash",
        messages=messages,
        response_format={"type": "json_object"},
        extra_body=NO_THINKING,
    )

    payload = json.loads(completion.choices[0].message.content or "")
    assert payload == {
        "reply": "Check-in at Seaside Inn is from 15:00. Anything else I can help with?",
        "topic": "checkin",
        "handoff": False,
    }


def test_max_tokens_truncates_with_finish_reason_length(openai_client: OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="deepseek-flash", messages=ask("check-out?"), max_tokens=5, extra_body=NO_THINKING
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Check-out at Seaside"


@pytest.mark.parametrize(
    ("setup", "kwargs", "exc_type", "status", "message"),
    [
        (None, {"model": "deepseek-chat"}, openai.BadRequestError, 400, "Model Not Exist"),
        (None, {"temperature": 3}, openai.UnprocessableEntityError, 422, "temperature"),
        ({"mode": "rate_limit"}, {}, openai.RateLimitError, 429, "Rate Limit Reached"),
        ({"mode": "overloaded"}, {}, openai.InternalServerError, 503, "Server Overloaded"),
        ({"mode": "error", "status": 500}, {}, openai.InternalServerError, 500, "Server Error"),
        ({"mode": "error", "status": 402}, {}, openai.APIStatusError, 402, "Insufficient Balance"),
    ],
)
def test_errors_map_to_sdk_exceptions(
    deepseek: FakeDeepSeek,
    openai_client: OpenAI,
    setup: dict[str, object] | None,
    kwargs: dict[str, str | float],
    exc_type: type[openai.APIStatusError],
    status: int,
    message: str,
) -> None:
    if setup:
        deepseek.add_fault(setup)
    with pytest.raises(exc_type) as caught:
        openai_client.chat.completions.create(
            model=str(kwargs.get("model", "deepseek-flash")),
            messages=ask("hi"),
            temperature=float(kwargs.get("temperature", 1)),
        )

    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    assert message in body["message"]
    assert body["param"] is None
    assert body["type"]


def test_bad_key_is_authentication_error(deepseek: FakeDeepSeek) -> None:
    client = OpenAI(api_key="sk-wrong-key-1234", base_url=deepseek.url, max_retries=0, timeout=5)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="deepseek-flash", messages=ask("hi"))
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "message": "Authentication Fails, Your api key: ****1234 is invalid",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_request_error",
    }


def test_keepalive_blank_lines_before_the_json_still_parse(
    deepseek: FakeDeepSeek, openai_client: OpenAI
) -> None:
    deepseek.add_fault({"mode": "keepalive", "keepalive_s": 1, "count": 2})

    completion = openai_client.chat.completions.create(
        model="deepseek-flash", messages=ask("hi"), extra_body=NO_THINKING
    )
    stream = openai_client.chat.completions.create(
        model="deepseek-flash", messages=ask("hi"), stream=True, extra_body=NO_THINKING
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert (completion.choices[0].message.content or "").startswith("Hello and welcome to Seaside Inn!")
    assert streamed == completion.choices[0].message.content
    assert [e["note"] for e in deepseek.journal()] == ["keepalive", "keepalive"]
    assert all(e["duration_ms"] >= 900 for e in deepseek.journal())


def test_stream_error_event_raises_api_error(deepseek: FakeDeepSeek, openai_client: OpenAI) -> None:
    deepseek.add_fault({"mode": "stream_error"})
    stream = openai_client.chat.completions.create(
        model="deepseek-flash", messages=ask("check-in?"), stream=True, extra_body=NO_THINKING
    )
    with pytest.raises(openai.APIError, match="interrupted"):
        list(stream)


def test_x_should_retry_header_controls_sdk_retries(deepseek: FakeDeepSeek) -> None:
    client = OpenAI(api_key="sk-test", base_url=deepseek.url, max_retries=1, timeout=5)
    deepseek.add_fault({"mode": "overloaded", "x_should_retry": False, "count": 1})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="deepseek-flash", messages=ask("hi"))
    assert len(deepseek.journal()) == 1  # 503 would normally be retried

    deepseek.reset()
    deepseek.add_fault({"mode": "error", "status": 400, "x_should_retry": True, "count": 1})
    client.chat.completions.create(model="deepseek-flash", messages=ask("hi"))
    assert [e["status"] for e in deepseek.journal()] == [400, 200]  # 400 is normally final


def test_retired_models_can_be_accepted() -> None:
    with FakeDeepSeek(accept_retired=True) as fake:
        client = OpenAI(api_key="sk-test", base_url=fake.url, max_retries=0, timeout=5)
        completion = client.chat.completions.create(model="deepseek-chat", messages=ask("checkout"))
        assert completion.model == "deepseek-chat"
        assert "reasoning_content" not in completion.choices[0].message.model_dump()  # non-thinking alias


def test_models_endpoint(openai_client: OpenAI) -> None:
    assert [m.id for m in openai_client.models.list()] == [
        "deepseek-flash",
        "deepseek-v4-pro",
        "deepseek-v4-flash",
    ]
