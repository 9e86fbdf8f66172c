"""What the concierge knows and says: the DeepSeek prompt and the canned answers used without AI."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from messaging.bot_texts import DEFAULT_LANGUAGE, Overrides, TextKey, language_name, text_for
from messaging.handoff_rules import MARKER_PREFIX, notice_text
from messaging.notifications import TEXT_TYPES

SWE001_MARKER = "{{SWE001}}"


@dataclass(frozen=True, slots=True)
class HotelFacts:
    name: str
    check_in: str = ""
    check_out: str = ""
    wifi: str = ""
    breakfast: str = ""
    address: str = ""
    parking: str = ""
    staff_contact: str = ""
    extra: str = ""

    def lines(self) -> list[tuple[str, str]]:
        pairs = [
            ("Hotel", self.name),
            ("Check-in", self.check_in),
            ("Check-out", self.check_out),
            ("Wi-Fi", self.wifi),
            ("Breakfast", self.breakfast),
            ("Address", self.address),
            ("Parking", self.parking),
            ("Staff contact", self.staff_contact),
        ]
        return [(label, value) for label, value in pairs if value]


@dataclass(frozen=True, slots=True)
class Turn:
    inbound: bool
    text: str


def system_prompt(facts: HotelFacts, language: str = "") -> str:
    """The concierge's instructions; ``language`` (the guest's, when known) is named explicitly."""
    block = "\n".join(f"- {label}: {value}" for label, value in facts.lines())
    extra = f"\nMore facts:\n{facts.extra.strip()}\n" if facts.extra.strip() else ""
    writes_in = (
        f"The guest writes in {language_name(language)}: answer in {language_name(language)}. "
        if language
        else ""
    )
    return (
        f"You are the WhatsApp concierge of {facts.name}. Answer the guest briefly (at most three "
        "sentences), warmly, in the guest's language, using only the facts below. If the facts do "
        "not answer the question, say so and give the staff contact. Never invent prices or "
        "promises. If the guest needs a person (they ask for one, complain, describe an emergency, "
        "or want something only staff can do, such as a booking, a refund or a repair), start your "
        f"answer with {MARKER_PREFIX}<reason>] where <reason> is one word (request, complaint, "
        "emergency or unknown); staff will then answer the guest.\n"
        f"{writes_in}\n"
        f"Hotel facts:\n{block}\n{extra}"
    )


def chat_messages(
    facts: HotelFacts, history: Iterable[Turn], question: str, *, language: str = ""
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt(facts, language)}]
    for turn in history:
        if turn.text:
            messages.append({"role": "user" if turn.inbound else "assistant", "content": turn.text})
    messages.append({"role": "user", "content": question})
    return messages


# (keywords in en, ru, es, de, fr; fact attribute; text key) in priority order.
_FAQ: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        (
            "check-out",
            "checkout",
            "check out",
            "выезд",
            "выселение",
            "salida",
            "auschecken",
            "abreise",
            "départ",
        ),
        "check_out",
        TextKey.FAQ_CHECK_OUT,
    ),
    (
        (
            "check-in",
            "checkin",
            "check in",
            "arrive",
            "arrival",
            "заезд",
            "заселение",
            "llegada",
            "anreise",
            "einchecken",
            "arrivée",
        ),
        "check_in",
        TextKey.FAQ_CHECK_IN,
    ),
    (
        (
            "wifi",
            "wi-fi",
            "internet",
            "password",
            "вайфай",
            "интернет",
            "пароль",
            "contraseña",
            "wlan",
            "passwort",
            "mot de passe",
        ),
        "wifi",
        TextKey.FAQ_WIFI,
    ),
    (
        ("breakfast", "завтрак", "desayuno", "frühstück", "petit-déjeuner", "petit déjeuner"),
        "breakfast",
        TextKey.FAQ_BREAKFAST,
    ),
    (
        (
            "parking",
            "park",
            "car",
            "парковка",
            "парковку",
            "aparcamiento",
            "aparcar",
            "estacionamiento",
            "parkplatz",
            "parken",
            "garer",
            "stationnement",
        ),
        "parking",
        TextKey.FAQ_PARKING,
    ),
    (
        (
            "address",
            "where",
            "location",
            "located",
            "directions",
            "адрес",
            "где",
            "dirección",
            "dónde",
            "adresse",
            "wo",
            "où",
        ),
        "address",
        TextKey.FAQ_ADDRESS,
    ),
    (
        ("staff", "reception", "human", "contact", "ресепшн", "recepción", "rezeption", "réception"),
        "staff_contact",
        TextKey.FAQ_STAFF_CONTACT,
    ),
)


def _mentions(text: str, keyword: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text) is not None


def _faq_sentence(facts: HotelFacts, question: str, language: str, overrides: Overrides | None) -> str | None:
    """The answer of the first FAQ entry the question mentions (in any of en, ru, es, de, fr) and
    the hotel has a fact for, in ``language`` (``bot_texts``), without the closing question; or None."""
    lowered = question.lower()
    for keywords, attribute, key in _FAQ:
        value = getattr(facts, attribute)
        if value and any(_mentions(lowered, k) for k in keywords):
            return text_for(key, language, overrides, name=facts.name, value=value)
    return None


def faq_answer(
    facts: HotelFacts, question: str, *, language: str = DEFAULT_LANGUAGE, overrides: Overrides | None = None
) -> str | None:
    """The FAQ answer to one message (its sentence and the closing question), or None."""
    return faq_answers(facts, [question], language=language, overrides=overrides)


def faq_answers(
    facts: HotelFacts,
    questions: Iterable[str],
    *,
    language: str = DEFAULT_LANGUAGE,
    overrides: Overrides | None = None,
) -> str | None:
    """One answer to several messages of a guest (a burst): each message's FAQ answer, in order and
    none twice, then the closing question; None when none of them has one."""
    sentences = list(
        dict.fromkeys(s for q in questions if (s := _faq_sentence(facts, q, language, overrides)) is not None)
    )
    if not sentences:
        return None
    return f"{' '.join(sentences)} {text_for(TextKey.FAQ_MORE, language, overrides)}"


def canned_reply(
    facts: HotelFacts,
    question: str,
    *,
    type_message: str = "textMessage",
    language: str = DEFAULT_LANGUAGE,
    overrides: Overrides | None = None,
) -> str:
    """An answer without AI, in ``language``: "please send it again" for an undelivered message,
    the matching fact, else the notice that staff will answer (the reply pipeline hands such a
    guest to staff with that notice: docs/handoff.md)."""
    if type_message in TEXT_TYPES and SWE001_MARKER in question:
        return text_for(TextKey.RESEND, language, overrides)
    if type_message in TEXT_TYPES:
        answer = faq_answer(facts, question, language=language, overrides=overrides)
        if answer is not None:
            return answer
    reason = "fallback" if type_message in TEXT_TYPES else "unreadable_message"
    return notice_text(
        language=language, staff_contact=facts.staff_contact, reason=reason, overrides=overrides
    )
