"""Logging infrastructure: the request id, and the filters every handler runs.

* ``request_id``: a context variable holding the id of the request (or task) being served. The
  middleware (``hotelbot.middleware.RequestIdMiddleware``) sets it from ``X-Request-ID`` or makes
  one; Celery carries it from the publishing request into the task (``hotelbot/celery.py``), so a
  webhook's id reaches the provider-call log lines of the reply job it caused.
* :class:`RequestIdFilter` adds ``request_id`` to every record.
* :class:`MaskingFilter` redacts secrets and personal data in every record: the message and its
  arguments, every extra field, exception and stack text. Tokens, API keys, ``Authorization``
  values and the configured secrets become ``***``; phone numbers and WhatsApp chat ids keep their
  last 4 digits. Apps add their own redactors (``register_redactor``: Green API URL tokens,
  the live HTTP sessions' URL redaction).

``LOG_FORMAT=json`` (settings) renders one JSON object per line with python-json-logger; the
default is the human-readable console line.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

from reliability import masking

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

#: Longest accepted incoming ``X-Request-ID``; anything else (too long, odd characters) is replaced.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MASK = masking.MASK


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """``value`` if it is a safe id (no log injection, bounded), else a new one."""
    return value if value and _VALID_ID.match(value) else new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (empty outside a request or task) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get()
        return True


# --- masking (the look is reliability.masking's: one look in logs, pages, mail and the API) ------
_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # Authorization headers (dict reprs, JSON, raw header lines): the whole value.
    (
        re.compile(r"""(?i)(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^\s"',}]+"""),
        rf"\g<1>{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\g<1> {MASK}"),
    # key=value / "key": "value" for secret-looking keys.
    (
        re.compile(
            r"""(?i)((?:api[_-]?key|apitokeninstance|access[_-]?token|token|secret|password|passwd)"""
            r"""["']?\s*[:=]\s*["']?)[^\s"'&,}]+"""
        ),
        rf"\g<1>{MASK}",
    ),
    # OpenAI-style API keys.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{3,}"), MASK),
]
#: Extra fields whose whole value is personal data (digits masked even without ``@c.us``).
_PERSONAL_FIELDS = frozenset({"chat_id", "chatId", "phone", "sender", "wid"})

_redactors: list[Callable[[str], str]] = []
#: Settings whose values are masked wherever they appear.
SECRET_SETTINGS = ("GREEN_API_TOKEN", "GREEN_API_WEBHOOK_TOKEN", "DEEPSEEK_API_KEY", "SECRET_KEY")


def _configured_secrets() -> tuple[str, ...]:
    from django.conf import settings

    if not settings.configured:
        return ()
    return tuple(str(getattr(settings, name, "") or "") for name in SECRET_SETTINGS)


_secrets: Callable[[], tuple[str, ...]] | None = _configured_secrets


def register_redactor(fn: Callable[[str], str]) -> None:
    """Apply ``fn`` to every logged text (idempotent per function)."""
    if fn not in _redactors:
        _redactors.append(fn)


def set_secret_source(fn: Callable[[], tuple[str, ...]]) -> None:
    """Where the exact secrets to mask come from (configured tokens and keys)."""
    global _secrets
    _secrets = fn


def mask(text: str) -> str:
    """``text`` with every secret and personal number masked."""
    if _secrets is not None:
        text = masking.redact(text, _secrets())
    for redact in _redactors:
        try:
            text = redact(text)
        except Exception:  # a redactor must never lose the log line
            text = MASK
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return masking.mask_chat_id(text)  # WhatsApp chat ids and phone numbers keep their last 4 digits


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        masked = mask(value)
        return masking.mask_numbers(masked) if key in _PERSONAL_FIELDS else masked
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    return mask(str(value))


class MaskingFilter(logging.Filter):
    """Masks the rendered message, every extra field, exception and stack text of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can, masked
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = mask(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_"):
                record.__dict__[key] = _mask_value(key, value)
        if record.exc_info:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True
