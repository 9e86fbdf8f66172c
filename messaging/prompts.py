"""What the concierge knows and says: the DeepSeek prompt and the canned answers used without AI."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from messaging.handoff_rules import MARKER_PREFIX
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


def system_prompt(facts: HotelFacts) -> str:
    block = "\n".join(f"- {label}: {value}" for label, value in facts.lines())
    extra = f"\nMore facts:\n{facts.extra.strip()}\n" if facts.extra.strip() else ""
    return (
        f"You are the WhatsApp concierge of {facts.name}. Answer the guest briefly (at most three "
        "sentences), warmly, in the guest's language, using only the facts below. If the facts do "
        "not answer the question, say so and give the staff contact. Never invent prices or "
        "promises. If the guest needs a person (they ask for one, complain, describe an emergency, "
        "or want something only staff can do, such as a booking, a refund or a repair), start your "
        f"answer with {MARKER_PREFIX}<reason>] where <reason> is one word (request, complaint, "
        "emergency or unknown); staff will then answer the guest.\n\n"
        f"Hotel facts:\n{block}\n{extra}"
    )


def chat_messages(facts: HotelFacts, history: Iterable[Turn], question: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt(facts)}]
    for turn in history:
        if turn.text:
            messages.append({"role": "user" if turn.inbound else "assistant", "content": turn.text})
    messages.append({"role": "user", "content": question})
    return messages


# (keywords, fact attribute, sentence template) in priority order.
_FAQ: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("check-out", "checkout", "check out"), "check_out", "Check-out at {name} is {value}."),
    (("check-in", "checkin", "check in", "arrive", "arrival"), "check_in", "Check-in at {name} is {value}."),
    (("wifi", "wi-fi", "internet", "password"), "wifi", "Wi-Fi: {value}."),
    (("breakfast",), "breakfast", "Breakfast is served {value}."),
    (("parking", "park", "car"), "parking", "Parking: {value}."),
    (("address", "where", "location", "located", "directions"), "address", "{name} is at {value}."),
    (("staff", "reception", "human", "contact"), "staff_contact", "You can reach our staff at {value}."),
)


def _mentions(text: str, keyword: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(keyword)}(?![a-z])", text) is not None


_MORE = " Anything else I can help with?"


def _faq_sentence(facts: HotelFacts, question: str) -> str | None:
    lowered = question.lower()
    for keywords, attribute, template in _FAQ:
        value = getattr(facts, attribute)
        if value and any(_mentions(lowered, k) for k in keywords):
            return template.format(name=facts.name, value=value)
    return None


def faq_answer(facts: HotelFacts, question: str) -> str | None:
    """The answer of the first FAQ entry the question mentions and the hotel has a fact for, or None."""
    sentence = _faq_sentence(facts, question)
    return None if sentence is None else sentence + _MORE


def faq_answers(facts: HotelFacts, questions: Iterable[str]) -> str | None:
    """One answer to several messages of a guest (a burst): each message's FAQ answer, in order and
    none twice; None when none of them has one."""
    sentences = list(dict.fromkeys(s for q in questions if (s := _faq_sentence(facts, q)) is not None))
    return " ".join(sentences) + _MORE if sentences else None


def canned_reply(facts: HotelFacts, question: str, *, type_message: str = "textMessage") -> str:
    """An answer without AI: the matching fact, or a pointer to the staff. (The reply pipeline hands
    a guest without a FAQ answer, or with a message it cannot read, to staff instead:
    docs/handoff.md; these texts remain for callers without a conversation.)"""
    staff = f" Our staff can help: {facts.staff_contact}." if facts.staff_contact else ""
    if type_message not in TEXT_TYPES:
        return f"Thank you! I can read text messages only, please type your question.{staff}"
    if SWE001_MARKER in question:
        return "Sorry, your message did not come through. Could you send it again?"
    answer = faq_answer(facts, question)
    if answer is not None:
        return answer
    return f"Thank you for your message to {facts.name}! Our concierge will get back to you shortly.{staff}"
