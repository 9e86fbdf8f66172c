"""How guest numbers and secrets look wherever people or logs see them: one look, one module.

The look is ``***`` followed by what is kept, everywhere (log lines, admin pages, staff mail, the
API, dead letters): a WhatsApp chat id or phone number keeps its last 4 digits
(``79001234567@c.us`` → ``***4567@c.us``, ``+447700900123`` → ``+***0123``), a secret shown to
people keeps its last 4 characters when it is long enough to spare them (``***Xy9z``), and a
secret found in a text becomes ``***``.

Why this look: plain ASCII, so a JSON log line, a mail subject and a terminal show it as is (no
``\\u2022`` escapes); and a fixed-width mark does not tell the length of what it hides (the old
``*******4567`` told how many digits a guest's number has).

Log records are masked here too (:class:`MaskingFilter`, every handler runs it: settings ``LOGGING``):
the message and its arguments, every extra field, exception and stack text. Apps add redactors of
their own (:func:`register_redactor`: Green API URL tokens, the live HTTP sessions' URLs, ciphertexts).
The module needs only the standard library (Django's settings are read lazily, for the secrets).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

#: What stands for everything hidden.
MASK = "***"
#: How many trailing digits (of a number) or characters (of a secret) stay visible.
KEEP = 4
#: Secrets shorter than this keep nothing visible when shown to people.
SECRET_HINT_MIN_LENGTH = 12
#: Secrets shorter than this are not searched for in texts (they would mask ordinary words).
REDACT_MIN_LENGTH = 4

# A WhatsApp chat id (person or group) or an international phone number (``+`` and 7-15 digits).
_CHAT_ID = re.compile(r"(?P<digits>\d{5,20})(?P<suffix>@[cg]\.us)")
_PHONE = re.compile(r"(?<![\w+])\+(?P<digits>\d{7,15})\b")
# Any run of 5 or more digits: a number in free text (a payload, a provider's error).
_DIGIT_RUN = re.compile(r"\d{5,}")


def mask_number(number: str) -> str:
    """A phone number (digits) with all but its last 4 digits hidden: ``79001234567`` → ``***4567``;
    a number of 4 digits or fewer is hidden whole."""
    return MASK + number[-KEEP:] if len(number) > KEEP else MASK


def mask_chat_id(text: str) -> str:
    """``text`` with every WhatsApp chat id and international phone number in it masked:
    ``79001234567@c.us`` → ``***4567@c.us``, ``+447700900123`` → ``+***0123``. Other digits (ids,
    counts, times) are left alone, so it suits log lines and messages. A bare chat id of 4 digits or
    fewer is hidden whole."""
    number, at, domain = text.partition("@")
    if at and number.isdigit() and len(number) <= KEEP:
        return MASK + at + domain
    text = _CHAT_ID.sub(lambda m: mask_number(m["digits"]) + m["suffix"], text)
    return _PHONE.sub(lambda m: "+" + mask_number(m["digits"]), text)


def mask_numbers(text: str) -> str:
    """``text`` with every run of 5 or more digits cut to its last 4: for a field whose whole value
    is personal (a chat id, a phone) and free text shown to people (payloads, provider errors)."""
    return _DIGIT_RUN.sub(lambda m: mask_number(m.group()), text)


def mask_secret(value: str) -> str:
    """A secret shown to people: ``***`` and its last 4 characters, or ``***`` alone when it is
    shorter than 12 characters (or empty: the caller says "not set" when that matters)."""
    return MASK + value[-KEEP:] if len(value) >= SECRET_HINT_MIN_LENGTH else MASK


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (of 4 characters or more) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= REDACT_MIN_LENGTH and secret in text:
            text = text.replace(secret, MASK)
    return text


_UNSTORABLE = re.compile("[\\x00\\ud800-\\udfff]")


def storable_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Text any database can hold: NUL and lone surrogates escaped (``\\x00``, ``\\ud83d``),
    every secret masked (:func:`redact`)."""
    text = redact(text, secrets)
    if _UNSTORABLE.search(text):
        text = _UNSTORABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text


# --- log records ----------------------------------------------------------------------------------
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


def register_redactor(fn: Callable[[str], str]) -> None:
    """Apply ``fn`` to every logged text (idempotent per function)."""
    if fn not in _redactors:
        _redactors.append(fn)


def mask(text: str) -> str:
    """A log text with every secret and personal number masked: the configured secrets, what the
    registered redactors find, ``Authorization`` values, secret-looking ``key=value`` pairs and API
    keys (``***``), then chat ids and phone numbers (their last 4 digits)."""
    text = redact(text, _configured_secrets())
    for redactor in _redactors:
        try:
            text = redactor(text)
        except Exception:  # a redactor must never lose the log line
            text = MASK
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return mask_chat_id(text)  # WhatsApp chat ids and phone numbers keep their last 4 digits


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        masked = mask(value)
        return mask_numbers(masked) if key in _PERSONAL_FIELDS else masked
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
