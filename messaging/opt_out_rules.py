# ruff: noqa: RUF001 - phrases in Russian and French: their letters are meant
"""When a guest's message asks us to stop writing to them (opt-out; docs/handoff.md).

Pure, no ORM. The whole message must be one of the phrases (per language: en, ru, es, de, fr),
compared case-insensitively with punctuation, emoji and extra spaces ignored: "STOP", "Stop!",
" unsubscribe. " opt out; "Please stop the music" or "bus stop?" do not. Words a guest may well
mean otherwise ("cancel": a booking; "end", "quit") are not phrases here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: language -> phrases (lower case, words separated by one space).
PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "stop",
        "stop all",
        "stop messages",
        "stop messaging me",
        "unsubscribe",
        "opt out",
        "optout",
    ),
    "ru": ("стоп", "отписаться", "отписка", "отпишите меня", "не пишите мне"),
    "es": ("parar", "baja", "darme de baja", "dar de baja", "cancelar suscripción", "no más mensajes"),
    "de": ("stopp", "abmelden", "abbestellen", "abmeldung", "keine nachrichten mehr"),
    "fr": (
        "arrêt",
        "arrêter",
        "arret",
        "arreter",
        "désabonner",
        "se désabonner",
        "désinscrire",
        "désabonnement",
    ),
}

#: Phrases shared by several languages: the reply keeps the guest's language.
_AMBIGUOUS = frozenset(
    phrase
    for phrase in {p for phrases in PHRASES.values() for p in phrases}
    if sum(phrase in phrases for phrases in PHRASES.values()) > 1
) | {"stop"}  # STOP is understood everywhere (en, fr, es, de, ru: "stop" in Latin letters)

_BY_PHRASE: dict[str, str] = {
    phrase: language
    for language, phrases in PHRASES.items()
    for phrase in phrases
    if phrase not in _AMBIGUOUS
}
_ALL = frozenset(p for phrases in PHRASES.values() for p in phrases)
_NOT_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True, slots=True)
class OptOut:
    #: The phrase's language, or "" when it does not tell (STOP): answer in the guest's language.
    language: str


def normalized(text: str) -> str:
    """Lower case, NFC, every run of punctuation, symbols and spaces one space, trimmed."""
    text = unicodedata.normalize("NFC", text).casefold().replace("’", "'")
    return _NOT_WORD.sub(" ", text).strip(" '")


def opt_out(text: str) -> OptOut | None:
    """The guest's whole message asks us to stop writing to them, or None."""
    phrase = normalized(text)
    if phrase not in _ALL:
        return None
    return OptOut(language=_BY_PHRASE.get(phrase, ""))
