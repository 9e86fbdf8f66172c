"""A faithful fake of the DeepSeek OpenAI-compatible API, per ``docs/providers.md`` §3.8.

* ``POST /chat/completions`` (and ``/v1/...``), ``GET /models``, ``GET /user/balance``.
* DeepSeek's auth, validation and error envelope ``{"error": {"message", "type", "param", "code"}}``.
* Deterministic replies that read well in a hotel demo: the ``Hotel facts:`` block of the system
  prompt is parsed and the last user message is answered by keywords (see :func:`compose_reply`);
  tests can script replies by regex (:meth:`FakeDeepSeek.add_script`). When the system prompt asks
  for a ``[HANDOFF:<reason>]`` marker, a question the facts cannot answer gets one in front.
* Thinking mode (on by default), JSON mode, ``max_tokens`` truncation, SSE streaming with usage.
* Extra fault modes: ``keepalive``, ``stream_error``, ``slow_stream``, ``blank_json``; rule fields
  ``keepalive_s``, ``keepalive_then`` ("answer" | "close"), ``chunk_delay_ms``, ``x_should_retry``.
* A per-model-pool concurrency limit answering 429 when exceeded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import ControlError, FakeRequest, FakeResponse, FakeServer, json_response

CURRENT_MODELS: tuple[str, ...] = ("deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash")
RETIRED_MODELS: dict[str, bool] = {"deepseek-chat": False, "deepseek-reasoner": True}  # name -> thinks
#: Concurrency pools (``docs/providers.md`` §2.2): the flash names share one pool.
POOLS: dict[str, str] = {
    "deepseek-flash": "flash",
    "deepseek-v4-flash": "flash",
    "deepseek-v4-flash-vision-exp": "flash",
    "deepseek-chat": "flash",
    "deepseek-reasoner": "flash",
    "deepseek-v4-pro": "pro",
}
DEFAULT_POOL_LIMITS: dict[str, int] = {"flash": 2500, "pro": 500}
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
SYSTEM_FINGERPRINT = "fp_5f8b7d3c1e_prod1017_fp8_kvcache"
MAX_OUTPUT_TOKENS = 393_216
KEEPALIVE_INTERVAL = 0.5
_UNSET: Any = object()
EXTRA_MODES = frozenset({"keepalive", "stream_error", "slow_stream", "blank_json"})
EXTRA_FIELDS = frozenset({"keepalive_s", "keepalive_then", "chunk_delay_ms", "x_should_retry"})

_ROUTES: dict[str, str] = {
    "/chat/completions": "chat/completions",
    "/v1/chat/completions": "chat/completions",
    "/models": "models",
    "/v1/models": "models",
    "/user/balance": "user/balance",
    "/v1/user/balance": "user/balance",
}
_ERROR_KINDS: dict[int, tuple[str, str, str]] = {
    # status: (message, type, code)
    400: ("Invalid Format", "invalid_request_error", "invalid_request_error"),
    401: ("Authentication Fails (no such user)", "authentication_error", "invalid_request_error"),
    402: ("Insufficient Balance", "unknown_error", "invalid_request_error"),
    404: ("Not Found", "invalid_request_error", "invalid_request_error"),
    405: ("Method Not Allowed", "invalid_request_error", "invalid_request_error"),
    422: ("Invalid Parameters", "invalid_request_error", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error", "rate_limit_exceeded"),
    500: ("Server Error", "server_error", "server_error"),
    503: ("Server Overloaded", "server_overloaded", "server_overloaded"),
}


def error_envelope(message: str, type_: str, code: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _error(status: int, message: str | None = None, note: str | None = None) -> FakeResponse:
    default_message, type_, code = _ERROR_KINDS.get(status, _ERROR_KINDS[500])
    return json_response(
        status,
        error_envelope(message or default_message, type_, code),
        headers={"x-ds-trace-id": secrets.token_hex(16)},
        note=note,
    )


def _serde(detail: str) -> str:
    return f"Failed to deserialize the JSON body into the target type: {detail}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"floating point `{value}`" if isinstance(value, float) else f"integer `{value}`"
    if isinstance(value, str):
        return f'string "{value[:40]}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def tokens(text: str) -> int:
    """The fake's tokenizer: about four characters per token."""
    return len(text) // 4


# ---------------------------------------------------------------------- reply engine
_FACTS_HEADER = re.compile(r"(?i)\b(?:hotel|more)\s+facts\s*:")
_FACT_LINE = re.compile(r"^\s*[-*\u2022]\s*([^:\n]{1,60}?)\s*:\s*(.+?)\s*$")


def _norm(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.lower())


def parse_hotel_facts(text: str) -> dict[str, tuple[str, str]]:
    """``- Label: value`` lines after ``Hotel facts:`` (and ``More facts:``), keyed by normalised
    label (``Wi-Fi`` -> ``wifi``) with ``(label, value)``. The first occurrence of a label wins."""
    facts: dict[str, tuple[str, str]] = {}
    for header in _FACTS_HEADER.finditer(text):
        started = False
        for line in text[header.end() :].splitlines():
            if not line.strip():
                if started:
                    break
                continue
            m = _FACT_LINE.match(line)
            if not m:
                break
            started = True
            label, value = m.group(1).strip(), m.group(2).strip()
            facts.setdefault(_norm(label), (label, value))
    return facts


@dataclass(frozen=True)
class _Topic:
    key: str
    title: str
    labels: tuple[str, ...]
    strong: re.Pattern[str]
    weak: re.Pattern[str] | None
    template: str


def _words(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?i)\b(?:{pattern})\b")


TOPICS: tuple[_Topic, ...] = (
    _Topic(
        "checkout",
        "check-out",
        ("checkout", "checkouttime"),
        _words(r"check[\s-]?outs?"),
        _words(r"leav(?:e|ing)|late"),
        "Check-out at {hotel} is {value}.",
    ),
    _Topic(
        "checkin",
        "check-in",
        ("checkin", "checkintime"),
        _words(r"check[\s-]?ins?"),
        _words(r"arriv(?:e|es|ing|al)|early"),
        "Check-in at {hotel} is {value}.",
    ),
    _Topic(
        "wifi",
        "Wi-Fi",
        ("wifi", "wlan", "internet"),
        _words(r"wi[\s-]?fi|internet|password|wlan"),
        None,
        "For the Wi-Fi at {hotel}, use {value}.",
    ),
    _Topic(
        "breakfast",
        "breakfast",
        ("breakfast",),
        _words(r"breakfast"),
        _words(r"eat(?:ing)?|food|hungry"),
        "Breakfast at {hotel} is served {value}.",
    ),
    _Topic(
        "parking",
        "parking",
        ("parking", "park", "carpark", "garage"),
        _words(r"parking|park|cars?|garage"),
        None,
        "Parking at {hotel}: {value}.",
    ),
    _Topic(
        "address",
        "address",
        ("address", "location"),
        _words(r"address|located|location|directions?"),
        _words(r"where"),
        "{hotel} is located at {value}.",
    ),
    _Topic(
        "staff",
        "staff contact",
        ("staffcontact", "staff", "contact", "reception"),
        _words(r"staff|reception|contact|human|person|manager"),
        _words(r"help"),
        "You can reach our staff at any time: {value}.",
    ),
)
#: The handoff marker a system prompt may ask for ("start your answer with [HANDOFF:<reason>]").
HANDOFF_MARKER = "[HANDOFF:"
_GREETING = _words(r"hi|hello|hey|hiya|good\s+(?:morning|afternoon|evening)|hola|ol[aá]|bonjour")
#: Topics whose weak keywords ("where", "help") are so generic that any other topic wins.
GENERIC_WEAK = frozenset({"address", "staff"})
_THANKS = _words(r"thanks?|thank\s+you|thx|obrigad[oa]|gracias|merci")
_CLOSING = "Anything else I can help with?"


@dataclass
class Reply:
    """A composed answer: the text, the topics it covers and whether staff must take over."""

    text: str
    topics: list[str]
    handoff: bool
    facts_used: list[str]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def compose_reply(system_text: str, question: str) -> Reply:
    """Deterministic concierge answer to ``question`` from the ``Hotel facts:`` in ``system_text``.

    A question of several lines (a guest's messages sent together, e.g. "hi" / "do you have
    parking" / "and breakfast?") is read line by line and answered in one reply: a greeting first
    if a line greets, then every topic asked, in the order asked (``_compose_lines``)."""
    lines = [line.strip() for line in question.splitlines() if line.strip()]
    if len(lines) > 1:
        return _compose_lines(system_text, lines)
    facts = parse_hotel_facts(system_text)
    hotel = next((facts[k][1] for k in ("hotel", "hotelname", "name") if k in facts), "our hotel")
    staff = next((facts[k][1] for k in ("staffcontact", "staff", "contact", "reception") if k in facts), None)
    fixed_labels = {label for t in TOPICS for label in t.labels} | {"hotel", "hotelname", "name"}

    # (position in the question, (topic key, sentence, fact label or None when the fact is missing))
    strong: list[tuple[int, tuple[str, str, str | None]]] = []
    weak: list[tuple[int, tuple[str, str, str | None]]] = []
    generic: list[tuple[int, tuple[str, str, str | None]]] = []  # "where" / "help" alone

    def render(topic: _Topic) -> tuple[str, str, str | None]:
        label = next((lb for lb in topic.labels if lb in facts), None)
        if label is None:
            missing = f"I'm sorry, I don't have the {topic.title} details at hand."
            if staff:
                missing += f" Please contact our staff: {staff}."
            else:
                missing += " Please ask at the reception."
            return topic.key, missing, None
        return topic.key, _sentence(topic.template.format(hotel=hotel, value=facts[label][1])), label

    for topic in TOPICS:
        hit = topic.strong.search(question)
        if hit:
            strong.append((hit.start(), render(topic)))
            continue
        hit = topic.weak.search(question) if topic.weak is not None else None
        if hit:
            (weak if topic.weak is not None and topic.key not in GENERIC_WEAK else generic).append(
                (hit.start(), render(topic))
            )
    for key, (label, value) in facts.items():
        if key in fixed_labels:
            continue
        for word in (w for w in re.findall(r"[a-z]+", label.lower()) if len(w) >= 3):
            hit = re.search(rf"(?i)\b{re.escape(word)}", question)
            if hit:
                strong.append((hit.start(), (key, f"{label} at {hotel}: {value}.", key)))
                break

    # Up to two topics, in the order the guest mentioned them.
    chosen = [item for _, item in sorted(strong or weak or generic, key=lambda pair: pair[0])[:2]]
    if chosen:
        text = " ".join(sentence for _, sentence, _ in chosen) + f" {_CLOSING}"
        return Reply(
            text,
            [key for key, _, _ in chosen],
            handoff=any(lb is None for _, _, lb in chosen),
            facts_used=[lb for _, _, lb in chosen if lb],
        )
    if _THANKS.search(question):
        return Reply(
            f"You're welcome! Enjoy your stay at {hotel}. {_CLOSING}",
            ["thanks"],
            handoff=False,
            facts_used=[],
        )
    if _GREETING.search(question):
        return Reply(
            f"Hello and welcome to {hotel}! I'm the virtual concierge and can help with check-in and "
            "check-out times, Wi-Fi, breakfast, parking and directions. How can I help you?",
            ["greeting"],
            handoff=False,
            facts_used=[],
        )
    if staff:
        text = (
            "Thank you for your message! I can't answer that myself, so I've passed it on to our team. "
            f"You can also reach our staff directly: {staff}."
        )
    else:
        text = "Thank you for your message! I've passed it on to our team, who will get back to you shortly."
    return Reply(text, ["unknown"], handoff=True, facts_used=[])


def _compose_lines(system_text: str, lines: list[str]) -> Reply:
    """One answer to several messages: each line's topics (none twice), greeted first when a line
    is a greeting, a pointer to staff when a line could not be answered; a line of thanks alone
    or a greeting alone is answered as such, nothing answerable at all as one unknown question."""
    replies = [compose_reply(system_text, line) for line in lines]
    answered = [r for r in replies if r.topics and r.topics[0] not in ("greeting", "thanks", "unknown")]
    if not answered:
        for kind in ("unknown", "greeting", "thanks"):
            first = next((r for r in replies if r.topics == [kind]), None)
            if first is not None:
                return first
    facts = parse_hotel_facts(system_text)
    hotel = next((facts[k][1] for k in ("hotel", "hotelname", "name") if k in facts), "our hotel")
    sentences: list[str] = []
    topics: list[str] = []
    used: list[str] = []
    for reply in answered:
        body = reply.text.removesuffix(f" {_CLOSING}")
        if all(topic in topics for topic in reply.topics):
            continue
        sentences.append(body)
        topics += [t for t in reply.topics if t not in topics]
        used += [f for f in reply.facts_used if f not in used]
    if any(r.topics == ["greeting"] for r in replies):
        sentences.insert(0, f"Hello and welcome to {hotel}!")
    unknown = next((r for r in replies if r.topics == ["unknown"]), None)
    if unknown is not None:
        staff = next(
            (facts[k][1] for k in ("staffcontact", "staff", "contact", "reception") if k in facts), None
        )
        sentences.append(
            f"For the rest, please contact our staff: {staff}."
            if staff
            else "For the rest, please ask at the reception."
        )
    return Reply(
        " ".join(sentences) + f" {_CLOSING}",
        topics,
        handoff=any(r.handoff for r in answered) or unknown is not None,
        facts_used=used,
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


# ---------------------------------------------------------------------- the server
class FakeDeepSeek(FakeServer):
    """Fake DeepSeek chat-completions API."""

    provider: ClassVar[str] = "deepseek"
    extra_modes: ClassVar[frozenset[str]] = EXTRA_MODES
    extra_rule_fields: ClassVar[frozenset[str]] = EXTRA_FIELDS

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = ("sk-test",),
        models: Iterable[str] = CURRENT_MODELS,
        accept_retired: bool = False,
        concurrency_limit: int | Mapping[str, int] | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, seed=seed)
        self.api_keys = tuple(api_keys)
        self.models = tuple(models)
        self.accept_retired = accept_retired
        self._limits = self._parse_limits(concurrency_limit)
        self._initial = (accept_retired, self._limits)
        self._state_lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._scripts: list[tuple[re.Pattern[str], str, dict[str, Any]]] = []
        self._seen_prefixes: set[str] = set()

    @staticmethod
    def _parse_limits(limit: int | Mapping[str, int] | None) -> dict[str, int] | int | None:
        if limit is None:
            return None
        if isinstance(limit, int) and not isinstance(limit, bool):
            if limit < 0:
                raise ValueError("concurrency_limit must be >= 0")
            return limit
        if isinstance(limit, Mapping):
            out = {}
            for k, v in limit.items():
                if not isinstance(k, str) or not _is_int(v) or v < 0:
                    raise ValueError("concurrency_limit must map model names to integers >= 0")
                out[k] = int(v)
            return out
        raise ValueError("concurrency_limit must be an integer, a mapping or None")

    # ------------------------------------------------------------------ public Python API
    def add_script(self, pattern: str, reply: str) -> dict[str, Any]:
        """Answer user messages matching ``pattern`` (regex, case-insensitive) with ``reply``.

        Scripts are checked in order before the keyword engine."""
        if not isinstance(pattern, str) or not isinstance(reply, str):
            raise ValueError("pattern and reply must be strings")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regex: {exc}") from exc
        with self._state_lock:
            item = {"id": len(self._scripts) + 1, "pattern": pattern, "reply": reply, "hits": 0}
            self._scripts.append((compiled, reply, item))
            return dict(item)

    def scripts(self) -> list[dict[str, Any]]:
        with self._state_lock:
            return [dict(item) for _, _, item in self._scripts]

    def clear_scripts(self) -> None:
        with self._state_lock:
            self._scripts.clear()

    def in_flight(self) -> dict[str, int]:
        with self._state_lock:
            return dict(self._in_flight)

    def configure(
        self,
        *,
        accept_retired: bool | None = None,
        concurrency_limit: int | Mapping[str, int] | None = _UNSET,
    ) -> dict[str, Any]:
        """Change behaviour at run time. ``concurrency_limit=None`` restores the documented
        per-pool limits (flash 2500, pro 500); an int applies to every pool; a mapping is per model."""
        limits = self._parse_limits(concurrency_limit) if concurrency_limit is not _UNSET else _UNSET
        if accept_retired is not None:
            if not isinstance(accept_retired, bool):
                raise ValueError("accept_retired must be a boolean")
            self.accept_retired = accept_retired
        if limits is not _UNSET:
            self._limits = limits
        return self.config()

    def config(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "accept_retired": self.accept_retired,
            "concurrency_limit": copy.deepcopy(self._limits),
            "api_keys": [f"****{k[-4:]}" for k in self.api_keys],
        }

    def _reset_provider(self) -> None:
        self.accept_retired, self._limits = self._initial
        with self._state_lock:
            self._scripts.clear()
            self._seen_prefixes.clear()

    # ------------------------------------------------------------------ hooks
    def classify(self, req: FakeRequest) -> dict[str, Any]:
        route = _ROUTES.get(req.path.rstrip("/") or "/")
        attrs: dict[str, Any] = {"method_name": route}
        if route == "chat/completions":
            body = req.json
            attrs["model"] = body.get("model") if isinstance(body, dict) else None
        return attrs

    def default_error(self, status: int, req: FakeRequest) -> FakeResponse:
        return _error(status)

    def _validate_extra_rule(self, spec: dict[str, Any]) -> None:
        then = spec.get("keepalive_then")
        if then is not None and then not in ("answer", "close"):
            raise ControlError('keepalive_then must be "answer" or "close"')
        xsr = spec.get("x_should_retry")
        if xsr is not None and not isinstance(xsr, bool | str):
            raise ControlError("x_should_retry must be a boolean or a string")

    def _pool(self, model: str) -> str:
        return POOLS.get(model, model)

    def _limit_for(self, model: str) -> int | None:
        limits = self._limits
        if limits is None:
            return DEFAULT_POOL_LIMITS.get(self._pool(model))
        if isinstance(limits, int):
            return limits
        return limits.get(model, limits.get(self._pool(model)))

    def _auth(self, req: FakeRequest) -> FakeResponse | None:
        header = req.header("authorization") or ""
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return _error(401, "Authentication Fails (auth header format should be Bearer sk-...)", "auth")
        if not any(secrets.compare_digest(key.encode(), k.encode()) for k in self.api_keys):
            return _error(401, f"Authentication Fails, Your api key: ****{key[-4:]} is invalid", "auth")
        return None

    def admit(self, req: FakeRequest) -> FakeResponse | None:
        route = req.attrs.get("method_name")
        if route is None:
            return _error(404, f"Not Found: {req.method} {req.path}")
        expected = "POST" if route == "chat/completions" else "GET"
        if req.method != expected:
            return _error(405, f"Method Not Allowed: {req.method} {req.path}")
        rejection = self._auth(req)
        if rejection is not None or route != "chat/completions":
            return rejection
        rejection = self._validate_chat(req)
        if rejection is not None:
            return rejection
        model = req.json["model"]
        pool = self._pool(model)
        limit = self._limit_for(model)
        with self._state_lock:
            current = self._in_flight.get(pool, 0)
            if limit is not None and current >= limit:
                return _error(429, "Rate Limit Reached", note="concurrency_limit")
            self._in_flight[pool] = current + 1
        req.attrs["_pool"] = pool
        return None

    def release(self, req: FakeRequest) -> None:
        pool = req.attrs.pop("_pool", None)
        if pool is not None:
            with self._state_lock:
                self._in_flight[pool] = max(0, self._in_flight.get(pool, 0) - 1)

    # ------------------------------------------------------------------ validation
    def _validate_chat(self, req: FakeRequest) -> FakeResponse | None:
        if req.json_error is not None:
            err = req.json_error
            return _error(
                400,
                f"Failed to parse the request body as JSON: {err.msg} "
                f"at line {err.lineno} column {err.colno}",
                "bad_json",
            )
        body = req.json
        if not req.has_json or not isinstance(body, dict):
            return _error(
                400, _serde(f"invalid type: {_type_name(body)}, expected struct ChatRequest"), "bad_json"
            )
        model = body.get("model")
        if model is None:
            return _error(422, _serde("missing field `model`"), "validation")
        if not isinstance(model, str):
            return _error(
                422, _serde(f"model: invalid type: {_type_name(model)}, expected a string"), "validation"
            )
        known = set(self.models) | (set(RETIRED_MODELS) if self.accept_retired else set())
        if model not in known:
            return _error(400, "Model Not Exist", "model")
        messages = body.get("messages")
        if messages is None:
            return _error(400, _serde("missing field `messages`"), "validation")
        if not isinstance(messages, list):
            return _error(
                400,
                _serde(f"messages: invalid type: {_type_name(messages)}, expected a sequence"),
                "validation",
            )
        if not messages:
            return _error(400, "Empty input messages", "validation")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                return _error(
                    400,
                    _serde(f"messages[{i}]: invalid type: {_type_name(msg)}, expected a map"),
                    "validation",
                )
            role = msg.get("role")
            if role not in ROLES:
                detail = (
                    f"messages[{i}]: missing field `role`"
                    if role is None
                    else f"messages[{i}].role: unknown variant `{role}`, expected one of "
                    "`system`, `user`, `assistant`, `tool`"
                )
                return _error(400, _serde(detail), "validation")
            content = msg.get("content")
            if content is None and role != "assistant":
                return _error(400, _serde(f"messages[{i}]: missing field `content`"), "validation")
            if content is not None and not isinstance(content, str | list):
                return _error(
                    400,
                    _serde(f"messages[{i}].content: invalid type: {_type_name(content)}, expected a string"),
                    "validation",
                )
        return self._validate_params(body)

    def _validate_params(self, body: dict[str, Any]) -> FakeResponse | None:
        def bad_type(name: str, value: Any, expected: str) -> FakeResponse:
            return _error(
                422, _serde(f"{name}: invalid type: {_type_name(value)}, expected {expected}"), "params"
            )

        def out_of_range(name: str, rng: str) -> FakeResponse:
            return _error(422, f"Invalid {name} value, the valid range of {name} is {rng}", "params")

        numeric: tuple[tuple[str, float, float, str], ...] = (
            ("temperature", 0.0, 2.0, "[0, 2]"),
            ("top_p", 0.0, 1.0, "(0, 1]"),
            ("presence_penalty", -2.0, 2.0, "[-2, 2]"),
            ("frequency_penalty", -2.0, 2.0, "[-2, 2]"),
        )
        for name, lo, hi, rng in numeric:
            value = body.get(name)
            if value is None:
                continue
            if not _is_num(value):
                return bad_type(name, value, "f32")
            if not lo <= value <= hi or (name == "top_p" and value == 0):
                return out_of_range(name, rng)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None:
            if not _is_int(max_tokens):
                return bad_type("max_tokens", max_tokens, "u32")
            if not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
                return out_of_range("max_tokens", f"[1, {MAX_OUTPUT_TOKENS}]")
        n = body.get("n")
        if n is not None:
            if not _is_int(n):
                return bad_type("n", n, "u32")
            if n != 1:
                return out_of_range("n", "[1, 1]")
        for flag in ("stream", "logprobs"):
            if flag in body and body[flag] is not None and not isinstance(body[flag], bool):
                return bad_type(flag, body[flag], "a boolean")
        options = body.get("stream_options")
        if options is not None and (
            not isinstance(options, dict)
            or ("include_usage" in options and not isinstance(options["include_usage"], bool))
        ):
            return bad_type("stream_options", options, "struct StreamOptions")
        fmt = body.get("response_format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object"):
                return _error(
                    422,
                    _serde("response_format.type: unknown variant, expected `text` or `json_object`"),
                    "params",
                )
            if fmt["type"] == "json_object":
                prompt = " ".join(_content_text(m.get("content")) for m in body["messages"])
                if "json" not in prompt.lower():
                    return _error(
                        400,
                        "Prompt must contain the word 'json' in some form to use 'response_format' "
                        "of type 'json_object'.",
                        "validation",
                    )
        thinking = body.get("thinking")
        if thinking is not None and (
            not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled")
        ):
            return _error(
                422, _serde("thinking.type: unknown variant, expected `enabled` or `disabled`"), "params"
            )
        user_id = body.get("user_id")
        if user_id is not None and (
            not isinstance(user_id, str)
            or len(user_id.encode()) > 512
            or not re.fullmatch(r"[A-Za-z0-9_-]*", user_id)
        ):
            return _error(422, "Invalid user_id: only [a-zA-Z0-9_-], at most 512 bytes", "params")
        return None

    # ------------------------------------------------------------------ generation
    def handle(self, req: FakeRequest, rule: dict[str, Any] | None) -> FakeResponse:
        route = req.attrs.get("method_name")
        if route == "models":
            return json_response(
                200,
                {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "owned_by": "deepseek"} for m in self.models],
                },
            )
        if route == "user/balance":
            return json_response(
                200,
                {
                    "is_available": True,
                    "balance_infos": [
                        {
                            "currency": "USD",
                            "total_balance": "10.00",
                            "granted_balance": "0.00",
                            "topped_up_balance": "10.00",
                        }
                    ],
                },
            )
        return self._chat(req.json, rule)

    def _reply_for(self, body: dict[str, Any]) -> tuple[str, str, Reply | None]:
        """(content, reasoning, reply) for a validated request."""
        messages = body["messages"]
        system_text = "\n".join(_content_text(m.get("content")) for m in messages if m["role"] == "system")
        question = next(
            (_content_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
        )
        with self._state_lock:
            for pattern, script_reply, item in self._scripts:
                if pattern.search(question):
                    item["hits"] += 1
                    scripted = script_reply
                    break
            else:
                scripted = None
        json_mode = (body.get("response_format") or {}).get("type") == "json_object"
        if scripted is not None:
            content = scripted
            if json_mode and not _is_json_object(scripted):
                content = json.dumps(
                    {"reply": scripted, "topic": "scripted", "handoff": False}, ensure_ascii=False
                )
            reasoning = f'The message matches a scripted reply. The guest wrote: "{question[:200]}".'
            return content, reasoning, None
        reply = compose_reply(system_text, question)
        content = reply.text
        if HANDOFF_MARKER in system_text and reply.topics == ["unknown"] and not json_mode:
            # The system prompt asks for a marker when a person is needed, and the model follows it
            # for a question it cannot answer from the facts (what a real model does with that
            # instruction; docs/providers.md §3.8).
            content = f"{HANDOFF_MARKER}unknown] {reply.text}"
        if json_mode:
            topic = reply.topics[0] if len(reply.topics) == 1 else ",".join(reply.topics)
            content = json.dumps(
                {"reply": reply.text, "topic": topic, "handoff": reply.handoff}, ensure_ascii=False
            )
        used = ", ".join(reply.facts_used) or "none"
        reasoning = (
            f'The guest wrote: "{question[:200]}". This is about: {", ".join(reply.topics)}. '
            f"Relevant hotel facts: {used}. I will answer briefly and politely"
            + (" and hand over to the staff." if reply.handoff else ".")
        )
        return content, reasoning, reply

    def _chat(self, body: dict[str, Any], rule: dict[str, Any] | None) -> FakeResponse:
        model: str = body["model"]
        mode = rule["mode"] if rule else None
        thinking_cfg = body.get("thinking")
        if isinstance(thinking_cfg, dict):
            thinking = thinking_cfg.get("type") != "disabled"
        else:
            thinking = RETIRED_MODELS.get(model, True)
        content, reasoning, _ = self._reply_for(body)
        if not thinking:
            reasoning = ""
        finish = "stop"
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None:
            if tokens(reasoning) >= max_tokens:
                reasoning, content, finish = reasoning[: max_tokens * 4], "", "length"
            elif tokens(content) > max_tokens - tokens(reasoning):
                content, finish = content[: (max_tokens - tokens(reasoning)) * 4], "length"
        if mode == "blank_json":
            content, finish = " " * max(len(content), 8), "stop"
        usage = self._usage(body["messages"], content, reasoning, thinking)
        base = {
            "id": str(uuid.uuid4()),
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        headers = {"x-ds-trace-id": secrets.token_hex(16)}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._stream(
                base, content, reasoning, thinking, finish, usage, include_usage, rule, headers
            )
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["reasoning_content"] = reasoning
        payload = {
            "id": base["id"],
            "object": "chat.completion",
            "created": base["created"],
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        resp = json_response(200, payload, headers=headers)
        if mode == "keepalive":
            assert rule is not None
            beats = self._keepalive_beats(rule)
            resp.parts = [(KEEPALIVE_INTERVAL, b"\n") for _ in range(beats)]
            resp.chunked = True
            if rule.get("keepalive_then") == "close":
                resp.abort = True
            else:
                resp.parts.append((0.0, resp.body))
            resp.note = "keepalive"
        return resp

    @staticmethod
    def _keepalive_beats(rule: dict[str, Any]) -> int:
        seconds = float(rule.get("keepalive_s", 2.0))
        return max(1, round(seconds / KEEPALIVE_INTERVAL))

    def _usage(
        self, messages: list[dict[str, Any]], content: str, reasoning: str, thinking: bool
    ) -> dict[str, Any]:
        prompt_text = "".join(_content_text(m.get("content")) for m in messages)
        prompt_tokens = max(1, tokens(prompt_text))
        prefix = ""
        for m in messages:
            if m["role"] != "system":
                break
            prefix += _content_text(m.get("content"))
        digest = hashlib.sha256(prefix.encode()).hexdigest()
        with self._state_lock:
            seen = digest in self._seen_prefixes
            self._seen_prefixes.add(digest)
        # DeepSeek's context cache works in 64-token units of a repeated prefix.
        hit = min(prompt_tokens, (tokens(prefix) // 64) * 64) if seen and prefix else 0
        reasoning_tokens = tokens(reasoning) if thinking else 0
        completion_tokens = max(1, tokens(content)) + reasoning_tokens if content else reasoning_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": hit},
            "prompt_cache_hit_tokens": hit,
            "prompt_cache_miss_tokens": prompt_tokens - hit,
        }
        if thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return usage

    def _stream(
        self,
        base: dict[str, Any],
        content: str,
        reasoning: str,
        thinking: bool,
        finish: str,
        usage: dict[str, Any],
        include_usage: bool,
        rule: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> FakeResponse:
        mode = rule["mode"] if rule else None
        delay = float(rule.get("chunk_delay_ms", 200)) / 1000 if rule and mode == "slow_stream" else 0.0

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            payload = {
                "id": base["id"],
                "object": "chat.completion.chunk",
                "created": base["created"],
                "model": base["model"],
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            payload.update(extra)
            return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"

        parts: list[tuple[float, bytes]] = []
        if mode == "keepalive":
            assert rule is not None
            parts.extend(
                (KEEPALIVE_INTERVAL, b": keep-alive\n\n") for _ in range(self._keepalive_beats(rule))
            )
            if rule.get("keepalive_then") == "close":
                return FakeResponse(
                    200,
                    headers=_sse_headers(headers),
                    parts=parts,
                    chunked=True,
                    abort=True,
                    note="keepalive",
                )
        if thinking:
            parts.append((delay, chunk({"role": "assistant", "content": None, "reasoning_content": ""})))
            parts.extend(
                (delay, chunk({"content": None, "reasoning_content": piece})) for piece in _pieces(reasoning)
            )
            content_pieces = _pieces(content)
            if content_pieces:
                first, rest = content_pieces[0], content_pieces[1:]
                parts.append((delay, chunk({"content": first, "reasoning_content": None})))
                parts.extend((delay, chunk({"content": piece, "reasoning_content": None})) for piece in rest)
        else:
            parts.append((delay, chunk({"role": "assistant", "content": ""})))
            parts.extend((delay, chunk({"content": piece})) for piece in _pieces(content))
        if mode == "stream_error":
            cut = max(2, len(parts) // 2)
            parts = parts[:cut]
            error = error_envelope("Server Error: the stream was interrupted", "server_error", "server_error")
            parts.append((delay, b"data: " + json.dumps(error).encode() + b"\n\n"))
            return FakeResponse(
                200, headers=_sse_headers(headers), parts=parts, chunked=True, note="stream_error"
            )
        if include_usage:
            parts.append((delay, chunk({"content": ""}, finish, usage=usage)))
        else:
            parts.append((delay, chunk({"content": ""}, finish)))
        parts.append((0.0, b"data: [DONE]\n\n"))
        return FakeResponse(200, headers=_sse_headers(headers), parts=parts, chunked=True, note=mode)

    # ------------------------------------------------------------------ control API
    def control(self, req: FakeRequest, sub: str) -> FakeResponse | None:
        m = req.method
        try:
            if sub == "script":
                if m == "POST":
                    body = req.control_json()
                    return json_response(201, self.add_script(body.get("pattern"), body.get("reply")))  # type: ignore[arg-type]
                if m == "GET":
                    return json_response(200, self.scripts())
                if m == "DELETE":
                    self.clear_scripts()
                    return json_response(200, {"cleared": True})
            if sub == "config":
                if m == "POST":
                    body = req.control_json()
                    unknown = sorted(set(body) - {"accept_retired", "concurrency_limit"})
                    if unknown:
                        raise ControlError(f"unknown config field(s): {', '.join(unknown)}")
                    return json_response(200, self.configure(**body))
                if m == "GET":
                    return json_response(200, self.config())
            if sub == "in-flight" and m == "GET":
                return json_response(200, self.in_flight())
        except (ValueError, TypeError) as exc:
            raise ControlError(str(exc)) from exc
        return None


def _sse_headers(extra: dict[str, str]) -> dict[str, str]:
    headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    headers.update(extra)
    return headers


def _pieces(text: str) -> list[str]:
    """Split text into stream deltas of one or two words (keeps all characters)."""
    words = re.findall(r"\S+\s*|\s+", text)
    return ["".join(words[i : i + 2]) for i in range(0, len(words), 2)]


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False
