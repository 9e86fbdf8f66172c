# ruff: noqa: RUF001 - phrases and notices in Russian and French: their letters are meant
"""When the bot hands a guest to a person, and the one notice it sends then (docs/handoff.md).

Pure functions, no ORM. Three signals, each giving a reason code of ``Conversation.owner_reason``:

* the guest's own words (:func:`guest_wants_staff`): keywords per language (en, ru, es, de, fr)
  for asking for a person, a complaint and an emergency, matched on word boundaries, so "fire"
  matches "Fire in room 12!" and not "fireplace";
* the AI's judgement (:func:`ai_marker_split`): the system prompt (``prompts.system_prompt``) asks
  DeepSeek to start its answer with :data:`MARKER_PREFIX` ``<reason>]`` when a person is needed;
  the marker is removed wherever it stands, so a guest never sees it;
* the notice (:func:`notice_text`), in the guest's language (``messaging.language``), its texts
  chosen by key (``messaging.bot_texts``: the hotel's own, else the defaults).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from messaging.bot_texts import Overrides, TextKey, text_for, weekday_name

GUEST_ASKED = "guest_asked"
COMPLAINT = "complaint"
EMERGENCY = "emergency"

#: reason -> language -> phrases (lower case; a space matches any run of whitespace). The first
#: reason that matches wins, so an emergency outranks a complaint, which outranks a plain request.
KEYWORDS: dict[str, dict[str, tuple[str, ...]]] = {
    EMERGENCY: {
        "en": ("emergency", "ambulance", "fire", "police", "doctor", "heart attack"),
        "ru": ("скорая", "скорую", "скорой", "пожар", "полиция", "полицию", "врач", "врача"),
        "es": ("emergencia", "ambulancia", "incendio", "fuego", "policía", "policia", "médico", "socorro"),
        "de": ("notfall", "krankenwagen", "notarzt", "feuer", "polizei", "arzt"),
        "fr": ("urgence", "ambulance", "incendie", "pompiers", "police", "médecin", "au secours"),
    },
    COMPLAINT: {
        "en": (
            "complaint",
            "complain",
            "complaining",
            "unacceptable",
            "disgusting",
            "refund",
            "dirty",
            "rude",
        ),
        "ru": (
            "жалоба",
            "жалобу",
            "пожаловаться",
            "жалуюсь",
            "безобразие",
            "возврат денег",
            "грязно",
            "грязный",
        ),
        "es": (
            "queja",
            "quejarme",
            "reclamación",
            "reclamacion",
            "inaceptable",
            "reembolso",
            "sucio",
            "sucia",
        ),
        "de": (
            "beschwerde",
            "beschweren",
            "unverschämt",
            "inakzeptabel",
            "erstattung",
            "schmutzig",
            "dreckig",
        ),
        "fr": ("plainte", "me plaindre", "réclamation", "inacceptable", "remboursement", "sale chambre"),
    },
    GUEST_ASKED: {
        "en": (
            "real person",
            "talk to a person",
            "speak to a person",
            "speak with a person",
            "talk to a human",
            "speak to a human",
            "real human",
            "human being",
            "talk to someone",
            "speak to someone",
            "speak with someone",
            "talk to somebody",
            "receptionist",
            "manager",
            "live agent",
            "staff member",
        ),
        "ru": (
            "живой человек",
            "живым человеком",
            "с человеком",
            "оператор",
            "оператора",
            "оператором",
            "администратор",
            "администратора",
            "администратором",
            "менеджер",
            "менеджера",
            "менеджером",
        ),
        "es": (
            "hablar con una persona",
            "persona real",
            "hablar con alguien",
            "un humano",
            "recepcionista",
            "gerente",
            "operador",
        ),
        "de": ("mit einem menschen", "echten menschen", "mitarbeiter", "mitarbeiterin", "jemandem sprechen"),
        "fr": (
            "parler à une personne",
            "vraie personne",
            "un humain",
            "parler à quelqu'un",
            "parler à quelqu’un",
            "réceptionniste",
            "gérant",
            "directeur",
        ),
    },
}


def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(r"\s+".join(re.escape(word) for word in p.split()) for p in phrases)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


_PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (reason, language, _pattern(phrases))
    for reason, by_language in KEYWORDS.items()
    for language, phrases in by_language.items()
)


@dataclass(frozen=True, slots=True)
class Match:
    reason: str  # GUEST_ASKED, COMPLAINT or EMERGENCY
    language: str


def guest_wants_staff(text: str) -> Match | None:
    """The reason the guest's words call for a person (and the language of the phrase), or None."""
    for reason, language, pattern in _PATTERNS:
        if pattern.search(text):
            return Match(reason=reason, language=language)
    return None


# --- the AI's marker ---------------------------------------------------------------------------------
MARKER_PREFIX = "[HANDOFF:"
_MARKER = re.compile(r"\[HANDOFF(?::\s*([^\]\n]{0,40}))?\]\s*", re.IGNORECASE)


def ai_marker_split(text: str) -> tuple[str | None, str]:
    """(the AI's reason, the text without any marker): the reason is None when the answer carries no
    marker; "" when it carries one without a reason."""
    found = _MARKER.search(text)
    if found is None:
        return None, text
    return (found.group(1) or "").strip(), _MARKER.sub("", text).strip()


# --- the notice ----------------------------------------------------------------------------------------
#: The notice's main line per reason (``Conversation.owner_reason``); any other reason: NOTICE.
NOTICE_BY_REASON: dict[str, str] = {
    "fallback": TextKey.NOTICE_FALLBACK,
    "unreadable_message": TextKey.NOTICE_UNREADABLE,
}


def notice_text(
    *,
    language: str,
    staff_contact: str = "",
    reason: str = "",
    overrides: Overrides | None = None,
    opens_at: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """The one honest handoff notice in ``language`` (``bot_texts.text_resolve``: the hotel's text,
    the default, English): the emergency line first for an emergency, the line of the reason, when
    staff will answer if reception is closed (``opens_at``, hotel time; None: open; ``now``: the
    moment of the notice), and the hotel's staff contact when it has one. ``overrides``: the
    hotel's own texts."""

    def text(key: str, **values: str) -> str:
        return text_for(key, language, overrides, **values)

    parts = [text(TextKey.NOTICE_EMERGENCY)] if reason == EMERGENCY else []
    parts.append(text(NOTICE_BY_REASON.get(reason, TextKey.NOTICE)))
    if opens_at is not None:
        at = f"{opens_at:%H:%M}"
        if opens_at - (now or opens_at) < timedelta(days=1):
            parts.append(text(TextKey.NOTICE_CLOSED, time=at))
        else:
            parts.append(
                text(TextKey.NOTICE_CLOSED_ON, day=weekday_name(opens_at.weekday(), language), time=at)
            )
    if staff_contact.strip():
        parts.append(text(TextKey.NOTICE_CONTACT, contact=staff_contact.strip()))
    return " ".join(parts)
