"""How guest numbers and secrets look wherever people or logs see them: one look, one module.

The look is ``***`` followed by what is kept, everywhere (log lines, admin pages, staff mail, the
API, dead letters): a WhatsApp chat id or phone number keeps its last 4 digits
(``79001234567@c.us`` → ``***4567@c.us``, ``+447700900123`` → ``+***0123``), a secret shown to
people keeps its last 4 characters when it is long enough to spare them (``***Xy9z``), and a
secret found in a text becomes ``***``.

Why this look: plain ASCII, so a JSON log line, a mail subject and a terminal show it as is (no
``\\u2022`` escapes); and a fixed-width mark does not tell the length of what it hides (the old
``*******4567`` told how many digits a guest's number has).

Pure functions of the standard library: ``hotelbot.logs`` (the logging filter) can use them without
loading Django.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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
