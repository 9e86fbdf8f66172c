# ruff: noqa: RUF001 - phrases and notices in Russian and French: their letters are meant
"""When the bot hands a guest to a person, and the one notice it sends then (docs/handoff.md).

Pure functions, no ORM. Three signals, each giving a reason code of ``Conversation.owner_reason``:

* the guest's own words (:func:`guest_wants_staff`): keywords per language (en, ru, es, de, fr)
  for asking for a person, a complaint and an emergency, matched on word boundaries, so "fire"
  matches "Fire in room 12!" and not "fireplace";
* the AI's judgement (:func:`ai_marker_split`): the system prompt (``prompts.system_prompt``) asks
  DeepSeek to start its answer with :data:`MARKER_PREFIX` ``<reason>]`` when a person is needed;
  the marker is removed wherever it stands, so a guest never sees it;
* the notice's language (:func:`language_guess`): a cheap guess (Cyrillic, or the language whose
  keyword matched, else English) until real detection comes; the texts are one table
  (:data:`NOTICES`), ready for per-hotel edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

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
LANGUAGES: tuple[str, ...] = ("en", "ru", "es", "de", "fr")
_CYRILLIC = re.compile("[\u0400-\u04ff]")


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


def language_guess(text: str, matched: str | None = None) -> str:
    """A cheap guess of the guest's language for the notice: Cyrillic is Russian, else the language
    whose keyword matched, else English."""
    if _CYRILLIC.search(text):
        return "ru"
    return matched if matched in LANGUAGES else "en"


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
@dataclass(frozen=True, slots=True)
class NoticeText:
    notice: str  # a person will answer here (reception open)
    contact: str  # + the hotel's staff contact, "{contact}"
    emergency: str  # first, when the guest wrote about an emergency
    closed: str  # reception closed, opens within a day: "{time}"
    closed_on: str  # reception closed, opens a day or more later: "{day}" (from ``days``) and "{time}"
    days: tuple[str, ...]  # Monday .. Sunday, as ``closed_on`` puts them


#: The one honest notice, per language: who answers, and when (reception hours, docs/handoff.md).
NOTICES: dict[str, NoticeText] = {
    "en": NoticeText(
        "Thank you for your message. A member of our staff will answer you here.",
        "You can also reach them: {contact}.",
        "If anyone is in danger, please call the local emergency number now.",
        "Thank you for your message. Reception opens at {time} (hotel time); a member of our staff "
        "will answer you then.",
        "Thank you for your message. Reception opens on {day} at {time} (hotel time); a member of our "
        "staff will answer you then.",
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    ),
    "ru": NoticeText(
        "Спасибо за сообщение. Вам ответит здесь сотрудник отеля.",
        "Также можно связаться с нами: {contact}.",
        "Если кому-то грозит опасность, срочно позвоните по местному номеру экстренных служб.",
        "Спасибо за сообщение. Ресепшен откроется в {time} (по времени отеля); тогда вам ответит "
        "сотрудник отеля.",
        "Спасибо за сообщение. Ресепшен откроется {day} в {time} (по времени отеля); тогда вам "
        "ответит сотрудник отеля.",
        ("в понедельник", "во вторник", "в среду", "в четверг", "в пятницу", "в субботу", "в воскресенье"),
    ),
    "es": NoticeText(
        "Gracias por su mensaje. Un miembro de nuestro personal le responderá aquí.",
        "También puede contactarnos: {contact}.",
        "Si alguien está en peligro, llame ahora al número local de emergencias.",
        "Gracias por su mensaje. La recepción abre a las {time} (hora del hotel); un miembro de "
        "nuestro personal le responderá entonces.",
        "Gracias por su mensaje. La recepción abre el {day} a las {time} (hora del hotel); un miembro "
        "de nuestro personal le responderá entonces.",
        ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    ),
    "de": NoticeText(
        "Vielen Dank für Ihre Nachricht. Ein Mitarbeiter unseres Hauses antwortet Ihnen hier.",
        "Sie erreichen uns auch so: {contact}.",
        "Wenn jemand in Gefahr ist, rufen Sie bitte sofort die örtliche Notrufnummer an.",
        "Vielen Dank für Ihre Nachricht. Die Rezeption öffnet um {time} Uhr (Hotelzeit); dann "
        "antwortet Ihnen ein Mitarbeiter unseres Hauses.",
        "Vielen Dank für Ihre Nachricht. Die Rezeption öffnet am {day} um {time} Uhr (Hotelzeit); "
        "dann antwortet Ihnen ein Mitarbeiter unseres Hauses.",
        ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    ),
    "fr": NoticeText(
        "Merci pour votre message. Un membre de notre équipe vous répondra ici.",
        "Vous pouvez aussi nous joindre : {contact}.",
        "Si quelqu'un est en danger, appelez tout de suite le numéro d'urgence local.",
        "Merci pour votre message. La réception ouvre à {time} (heure de l'hôtel) ; un membre de "
        "notre équipe vous répondra à ce moment-là.",
        "Merci pour votre message. La réception ouvre {day} à {time} (heure de l'hôtel) ; un membre "
        "de notre équipe vous répondra à ce moment-là.",
        ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    ),
}


def _when_closed(texts: NoticeText, opens_at: datetime, now: datetime) -> str:
    """The notice while reception is closed: the time it opens (within a day), else day and time."""
    at = f"{opens_at:%H:%M}"
    if opens_at - now < timedelta(days=1):
        return texts.closed.format(time=at)
    return texts.closed_on.format(day=texts.days[opens_at.weekday()], time=at)


def notice_text(
    *,
    language: str,
    staff_contact: str = "",
    reason: str = "",
    opens_at: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """The handoff notice in ``language`` (English if unknown), with the staff contact when the
    hotel has one, and the emergency line first for an emergency. ``opens_at`` (hotel time; None:
    reception is open) says when staff will answer; ``now`` is the moment of the notice."""
    texts = NOTICES.get(language, NOTICES["en"])
    parts = [texts.emergency] if reason == EMERGENCY else []
    if opens_at is None:
        parts.append(texts.notice)
    else:
        parts.append(_when_closed(texts, opens_at, now or opens_at))
    if staff_contact.strip():
        parts.append(texts.contact.format(contact=staff_contact.strip()))
    return " ".join(parts)
