"""The only module that speaks DeepSeek's HTTP API (OpenAI-compatible chat completions).

Non-streaming calls under an overall deadline: while a request waits for capacity DeepSeek sends
blank keep-alive lines, which reset any read timeout, so only a deadline bounds the call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from hotelbot.exceptions import ProviderError
from reliability import ratelimit
from reliability.breaker import CircuitOpenError
from reliability.http import DeadlineExceeded, ResilientSession, TransportError
from reliability.retry import RetryConfig, classify_failure

DEPENDENCY = "deepseek"


class DeepSeekError(ProviderError):
    code = "deepseek_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeepSeekUnavailable(DeepSeekError):
    """Timeouts, deadline, connection errors, 408, 429, 499 and 5xx but 501/505: the AI is (for now)
    not answering."""

    code = "deepseek_unavailable"


class DeepSeekRejected(DeepSeekError):
    """Other 4xx (bad key, bad model, no balance), 501, 505: retrying will not help."""

    code = "deepseek_rejected"


@dataclass(frozen=True, slots=True)
class ChatCompletion:
    text: str
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int


def _error_message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return ""


class DeepSeekClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        deadline: float,
        session: ResilientSession | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._model = model
        self._deadline = deadline
        self._http = session or default_session()

    def chat(self, *, messages: list[dict[str, str]], max_tokens: int, user_id: str = "") -> ChatCompletion:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.3,
            "stream": False,
            # Thinking is on by default; a concierge wants a quick, short answer.
            "thinking": {"type": "disabled"},
        }
        if user_id:
            payload["user_id"] = user_id
        try:
            resp = self._http.request(
                "POST", self._url, json=payload, headers=self._headers, deadline=self._deadline
            )
        except CircuitOpenError as e:
            raise DeepSeekUnavailable(f"DeepSeek circuit open (retry in {e.retry_after:.0f}s)") from e
        except DeadlineExceeded as e:
            raise DeepSeekUnavailable(f"DeepSeek deadline of {self._deadline}s exceeded") from e
        except TransportError as e:
            raise DeepSeekUnavailable(f"DeepSeek: {e.message}") from e
        try:
            body = resp.json()  # tolerates the leading keep-alive blank lines
        except ValueError:
            body = None
        if resp.status != 200:
            message = f"DeepSeek answered {resp.status}: {_error_message(body) or resp.text[:200]}"
            if classify_failure(resp.status).transient:  # the one classification (reliability.retry)
                raise DeepSeekUnavailable(message, status=resp.status)
            raise DeepSeekRejected(message, status=resp.status)
        try:
            choice = body["choices"][0]
            text = (choice["message"].get("content") or "").strip()
            usage = body.get("usage") or {}
            completion = ChatCompletion(
                text=text,
                finish_reason=str(choice.get("finish_reason") or ""),
                model=str(body.get("model", self._model)),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (TypeError, KeyError, IndexError, AttributeError, ValueError) as e:
            raise DeepSeekUnavailable("DeepSeek returned an unexpected body", status=200) from e
        if not completion.text:
            raise DeepSeekUnavailable("DeepSeek returned an empty answer", status=200)
        return completion

    def models(self) -> list[str]:
        """Ids of the models the API offers (``GET /models``): a free reachability and key check,
        paced (``DEEPSEEK_RATE_MODELS`` calls/s across processes; refused at once when no slot)."""
        grant = ratelimit.acquire(f"{DEPENDENCY}:models", rate=settings.DEEPSEEK_RATE_MODELS, max_wait=0.0)
        if not grant.granted:
            raise DeepSeekUnavailable(f"DeepSeek models: paced, next slot in {grant.wait:.1f}s")
        url = self._url.removesuffix("/chat/completions") + "/models"
        try:
            # A health probe: bypasses the breaker that guards replies (see ResilientSession.request).
            resp = self._http.request("GET", url, headers=self._headers, retry=False, breaker=False)
        except DeadlineExceeded as e:
            raise DeepSeekUnavailable("DeepSeek models: deadline exceeded") from e
        except TransportError as e:
            raise DeepSeekUnavailable(f"DeepSeek: {e.message}") from e
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status != 200:
            message = f"DeepSeek answered {resp.status}: {_error_message(body) or resp.text[:200]}"
            if classify_failure(resp.status).transient:
                raise DeepSeekUnavailable(message, status=resp.status)
            raise DeepSeekRejected(message, status=resp.status)
        data = body.get("data") if isinstance(body, dict) else None
        return [str(item["id"]) for item in data or [] if isinstance(item, dict) and item.get("id")]


@functools.cache
def default_session() -> ResilientSession:
    """One pooled session per process for DeepSeek (``cache_clear()`` to rebuild it)."""
    return ResilientSession(
        DEPENDENCY,
        connect_timeout=settings.DEEPSEEK_CONNECT_TIMEOUT,
        read_timeout=settings.DEEPSEEK_READ_TIMEOUT,
        deadline=settings.DEEPSEEK_DEADLINE,
        # The only retry layer for AI calls (a failed generation degrades, it is not re-queued);
        # bounded by the deadline and the dependency's retry budget.
        retry=RetryConfig(max_attempts=2, base_delay=0.5, max_delay=2.0, retry_after_cap=5.0),
    )


def default_client() -> DeepSeekClient:
    return DeepSeekClient(
        base_url=settings.DEEPSEEK_URL,
        api_key=settings.DEEPSEEK_API_KEY,
        model=settings.DEEPSEEK_MODEL,
        deadline=settings.DEEPSEEK_DEADLINE,
    )
