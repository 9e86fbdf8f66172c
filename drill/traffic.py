"""The drill's guests: messages pushed through the fake Green API, and the independent tally.

Every guest message asks about one topic whose fact appears in any answer to it (the AI's and the
canned FAQ answer alike), and a chat never asks the same topic twice. So an accepted send to a chat
is paired with the message it answers by the fact it contains, using nothing but the fake Green
API's list of accepted sends: no table of the application is consulted for lost or duplicates.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

#: The burst window the stack runs (docs/handoff.md; the product's defaults unless the environment,
#: which the stack inherits, sets them): a guest's message is answered once their chat has been
#: quiet this long, at the latest the cap after the burst's first message.
BURST_QUIET = float(os.environ.get("REPLY_BURST_QUIET_SECONDS", "3.0"))
BURST_MAX = float(os.environ.get("REPLY_BURST_MAX_SECONDS", "15.0"))

#: topic -> (question, a fact every answer to it contains)
TOPICS: dict[str, tuple[str, str]] = {
    "checkout": ("What time is check-out?", "11:00"),
    "wifi": ("What is the wifi password?", "sunny2026"),
    "breakfast": ("When is breakfast served?", "07:00-10:30"),
    "parking": ("Is there parking?", "20 spaces"),
    "checkin": ("When can I check in?", "15:00"),
    "address": ("What is your address?", "Beach Road"),
}

#: The topic of a guest's message asking for a person (docs/handoff.md): answered by the handoff
#: notice, then by the drill's simulated staff (drill/staff.py).
HANDOFF = "handoff"
#: Asking for a person, in a few of the languages the keywords cover (each hands the guest to staff).
HANDOFF_ASKS: tuple[str, ...] = (
    "I want to talk to a person",
    "Quiero hablar con una persona, por favor",
    "Je voudrais parler à une personne, s'il vous plaît",
)
#: The notice's main line in every language (messaging/bot_texts.py's defaults; the demo hotel keeps
#: them): a send to the guest holding one of them answers the message that asked for a person.
NOTICE_LINES: tuple[str, ...] = (
    "A member of our staff will answer you here.",
    "Вам ответит здесь сотрудник отеля.",
    "Un miembro de nuestro personal le responderá aquí.",
    "Ein Mitarbeiter unseres Hauses antwortet Ihnen hier.",
    "Un membre de notre équipe vous répondra ici.",
)
#: Every message the simulated staff write ends with it (and its own reference): a staff message.
STAFF_MARK = "(drill staff, ref "


@dataclass
class Handoff:
    """A guest who asked for a person, as the simulated staff (drill/staff.py) work through it."""

    chat_id: str
    topics: list[str]  # what the guest asks after the staff's first reply, then the bot after hand-back
    asked_at: float
    via: str  # "api" (the inbox's API) or "phone" (typed on the hotel's phone: the fake's outgoing)
    ask: str = HANDOFF_ASKS[0]
    state: str = "asked"  # asked -> replied -> held -> answered -> handed_back
    conversation: int | None = None
    hold_question: Injected | None = None
    handed_back_at: float = 0.0
    error: str = ""


@dataclass
class Injected:
    chat_id: str
    topic: str
    scenario: str
    at: float  # wall clock, when the fake accepted it into its queue
    id_message: str = ""


#: Each Traffic of a process gets its own chat-id prefix (``make load`` runs several on one stack:
#: two with one prefix would take each other's replies for duplicates); random across runs.
_RUN_PREFIXES = itertools.count(random.randint(0, 899))


@dataclass
class Traffic:
    """A background thread injecting ``rate`` messages/s, spread over ``chats`` concurrent guests."""

    green_url: str
    rate: float = 1.5
    chats: int = 6
    scenario: str = "boot"
    #: The share of messages after which their guest sends 1-2 more within 2 s (a burst, answered
    #: by one reply: docs/handoff.md); the rest of the traffic's guests write at random moments.
    burst_share: float = 0.2
    bursts: int = 0  # follow-up messages sent in bursts
    #: Every ``handoff_every``-th new guest first asks for a person (0: none); the simulated staff
    #: answer them and hand them back to the bot, and they go on writing as the other guests.
    handoff_every: int = 10
    handoffs: list[Handoff] = field(default_factory=list)
    #: Messages the simulated staff typed on the hotel's phone (never a sendMessage): the shape of
    #: the fake's accepted sends, so the tally reads both.
    phone_sent: list[dict[str, Any]] = field(default_factory=list)
    injected: list[Injected] = field(default_factory=list)
    poison: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._run_prefix = f"{next(_RUN_PREFIXES) % 900 + 100}"
        self._seq = itertools.count(1)
        self._active: list[tuple[str, list[str]]] = []
        self._timers: list[threading.Timer] = []  # a burst's follow-up messages still to send
        self._chats = 0  # guests started
        self._asks: list[Handoff] = []  # guests who ask for a person with the next inject_one

    def _new_chat(self) -> tuple[str, list[str]]:
        topics = list(TOPICS)
        random.shuffle(topics)
        return f"79{self._run_prefix}{next(self._seq):06d}@c.us", topics

    def _fill(self) -> None:
        """Keep ``chats`` guests writing (under the lock); every ``handoff_every``-th new guest asks
        for a person first (sent by the next ``inject_one``) and writes no more until handed back."""
        self._active = [(c, t) for c, t in self._active if t]
        while len(self._active) < self.chats:
            chat_id, topics = self._new_chat()
            self._chats += 1
            if self.handoff_every and self._chats % self.handoff_every == 0:
                via = "phone" if len(self.handoffs) % 2 else "api"  # every other one on the phone
                ask = HANDOFF_ASKS[len(self.handoffs) % len(HANDOFF_ASKS)]
                handoff = Handoff(chat_id, topics, time.time(), via, ask)
                self.handoffs.append(handoff)
                self._asks.append(handoff)
            else:
                self._active.append((chat_id, topics))

    def inject_one(self) -> Injected | None:
        with self._lock:
            self._fill()
            index = random.randrange(len(self._active))
            chat_id, topics = self._active[index]
            topic = topics.pop()
            self._fill()
            asks, self._asks = self._asks, []
            scenario = self.scenario
        for handoff in asks:
            handoff.asked_at = time.time()
            if self._inject(handoff.chat_id, HANDOFF, scenario, text=handoff.ask) is None:
                handoff.state, handoff.error = "failed", "the ask was not queued"
        item = self._inject(chat_id, topic, scenario)
        if item is not None and topics and random.random() < self.burst_share:
            self._burst_follow(chat_id, topics, count=random.randint(1, 2))
        return item

    def _burst_follow(self, chat_id: str, topics: list[str], count: int) -> None:
        """The guest goes on writing: ``count`` more of their topics within 2 s, on timers (the
        traffic's own pace is kept). A chat whose topics run out is retired from the active ones."""
        delay = 0.0
        for _ in range(count):
            with self._lock:
                if not topics:
                    return
                topic = topics.pop()
                self._fill()
                self.bursts += 1
            delay += random.uniform(0.3, 0.9)
            timer = threading.Timer(delay, self._inject, args=(chat_id, topic, self.scenario))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def write_during_hold(self, handoff: Handoff) -> Injected | None:
        """The guest of ``handoff`` asks one of their topics while staff hold the conversation."""
        with self._lock:
            topic = handoff.topics.pop()
        return self._inject(handoff.chat_id, topic, self.scenario)

    def handed_back(self, handoff: Handoff) -> None:
        """The bot answers the guest again: they go on writing their other topics to it."""
        with self._lock:
            handoff.state, handoff.handed_back_at = "handed_back", time.time()
            if handoff.topics:
                self._active.append((handoff.chat_id, handoff.topics))

    def _inject(self, chat_id: str, topic: str, scenario: str, text: str = "") -> Injected | None:
        question = text or TOPICS[topic][0]
        try:
            resp = requests.post(
                f"{self.green_url}/__fake__/inbound",
                json={"chatId": chat_id, "text": question, "senderName": "Drill"},
                timeout=10,
            )
            resp.raise_for_status()
        except requests.RequestException:
            self.errors += 1
            return None
        item = Injected(chat_id, topic, scenario, time.time(), resp.json()["idMessage"])
        with self._lock:
            self.injected.append(item)
        return item

    def inject_poison(self) -> None:
        """A notification our webhook must quarantine (a chatId longer than any column takes),
        pushed through Green API's ordered queue like any other."""
        chat_id = "7" * 70 + "@c.us"
        resp = requests.post(
            f"{self.green_url}/__fake__/inbound",
            json={"chatId": chat_id, "text": "poison", "senderName": "Drill"},
            timeout=10,
        )
        resp.raise_for_status()
        with self._lock:
            self.poison.append({"idMessage": resp.json()["idMessage"], "scenario": self.scenario})

    def _loop(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.inject_one()
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="drill-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        for timer in list(self._timers):  # every burst is sent whole: its messages are tallied
            timer.join(timeout=15)


def answer_due(injected: list[Injected], quiet: float = BURST_QUIET, cap: float = BURST_MAX) -> list[float]:
    """When each message's answer may leave at the earliest (wall clock): the end of its chat's
    burst, the messages written less than ``quiet`` apart (at most ``cap`` after the first), which
    the application answers in one reply once the guest has been quiet. Injection times stand in
    for the webhook's (a push delayed by a fault may merge what this splits: a wait, not a miss)."""
    due = [m.at for m in injected]
    if quiet <= 0:
        return due
    by_chat: dict[str, list[int]] = {}
    for i, m in enumerate(injected):
        by_chat.setdefault(m.chat_id, []).append(i)
    for indexes in by_chat.values():
        indexes.sort(key=lambda i: injected[i].at)
        bursts: list[list[int]] = []
        for i in indexes:
            at = injected[i].at
            if bursts and at - injected[bursts[-1][-1]].at < quiet and at - injected[bursts[-1][0]].at < cap:
                bursts[-1].append(i)
            else:
                bursts.append([i])
        for burst in bursts:
            end = min(injected[burst[-1]].at + quiet, injected[burst[0]].at + cap)
            for i in burst:
                due[i] = end
    return due


@dataclass
class Tally:
    """Injected messages against accepted sends (the fake's ``/__fake__/sent``) and what the
    simulated staff typed on the hotel's phone. A send holding the facts of several messages of its
    chat (a burst's one reply) answers each of them; the handoff notice answers the message that
    asked for a person; a staff message holding a fact answers the question the guest asked while
    staff held the conversation."""

    answered: dict[int, list[dict[str, Any]]]  # index into injected -> accepted sends answering it
    unmatched: list[dict[str, Any]]  # accepted sends that answer no injected message
    #: The simulated staff's messages by their reference -> how many times each reached the guest.
    staff: dict[str, int] = field(default_factory=dict)

    def lost(self, injected: list[Injected]) -> list[int]:
        return [i for i in range(len(injected)) if not self.answered.get(i)]

    def duplicates(self) -> dict[int, int]:
        return {i: len(sends) - 1 for i, sends in self.answered.items() if len(sends) > 1}

    def staff_duplicates(self) -> dict[str, int]:
        return {ref: n - 1 for ref, n in self.staff.items() if n > 1}


def staff_ref(text: str) -> str:
    """The reference of a simulated staff's message ("" for any other message)."""
    start = text.find(STAFF_MARK)
    return text[start + len(STAFF_MARK) :].split(")", 1)[0] if start >= 0 else ""


def tally(injected: list[Injected], sent: list[dict[str, Any]]) -> Tally:
    by_chat_topic = {(m.chat_id, m.topic): i for i, m in enumerate(injected)}
    answered: dict[int, list[dict[str, Any]]] = {}
    unmatched: list[dict[str, Any]] = []
    staff: dict[str, int] = {}
    first_staff: dict[str, dict[str, Any]] = {}
    for send in sent:
        text = str(send.get("textMessage") or "")
        chat = str(send.get("chatId") or "")
        hits = [
            by_chat_topic[(chat, topic)]
            for topic, (_, fact) in TOPICS.items()
            if fact in text and (chat, topic) in by_chat_topic
        ]
        if (chat, HANDOFF) in by_chat_topic and any(line in text for line in NOTICE_LINES):
            hits.append(by_chat_topic[(chat, HANDOFF)])
        # One send may answer several messages of its chat: a burst (messages written within
        # REPLY_BURST_QUIET_SECONDS) is answered by one reply holding each message's fact.
        for hit in hits:
            answered.setdefault(hit, []).append(send)
        ref = staff_ref(text)
        if ref:
            staff[ref] = staff.get(ref, 0) + 1
            first_staff.setdefault(chat, send)
        elif not hits:
            unmatched.append(send)
    # Staff who answer before the notice left take the conversation, and the notice is closed
    # unsent (docs/handoff.md, "The takeover rule"): then their first message answers the guest.
    for chat, send in first_staff.items():
        index = by_chat_topic.get((chat, HANDOFF))
        if index is not None and not answered.get(index):
            answered[index] = [send]
    return Tally(answered=answered, unmatched=unmatched, staff=staff)


def bot_while_staff(handoffs: list[Handoff], sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bot's sends to a guest of ``handoffs`` after the notice and before staff handed the
    guest back (by the fake's whole-second timestamps): must be none."""
    held = {h.chat_id: h for h in handoffs}
    out = []
    for send in sent:
        handoff = held.get(str(send.get("chatId") or ""))
        text = str(send.get("textMessage") or "")
        if handoff is None or staff_ref(text) or any(line in text for line in NOTICE_LINES):
            continue
        until = handoff.handed_back_at or float("inf")
        if float(send.get("timestamp") or 0) < int(until):
            out.append(send)
    return out
