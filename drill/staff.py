"""Staff of the demo hotel, as the drill and the end-to-end tests play them: a user of the "hotel
staff" group with an API token, and a small client of the staff inbox's API
(``/api/v1/conversations/``, docs/handoff.md "The API").
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from drill.traffic import STAFF_MARK, TOPICS
from reliability.masking import mask_chat_id

#: The simulated receptionist (a member of the "hotel staff" group and of the demo hotel's staff).
STAFF_USERNAME = "drill-staff"

_CREATE_STAFF = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from messaging.models import Hotel
from messaging.permissions import HOTEL_STAFF_GROUP
user, _ = get_user_model().objects.get_or_create(username={username!r}, defaults={{"is_staff": True}})
user.groups.add(Group.objects.get(name=HOTEL_STAFF_GROUP))
for hotel in Hotel.objects.all():
    hotel.staff.add(user)
print(Token.objects.get_or_create(user=user)[0].key)
"""


def create_staff(stack: Any, username: str = STAFF_USERNAME) -> str:
    """Make ``username`` a receptionist of every hotel of ``stack`` (the onboarding docs/handoff.md
    describes: the "hotel staff" group and ``Hotel.staff``); returns the user's API token."""
    return str(stack.shell(_CREATE_STAFF.format(username=username)).splitlines()[-1])


@dataclass
class StaffApi:
    """The staff inbox's API as one receptionist calls it (token authentication)."""

    web_url: str
    token: str
    timeout: float = 10.0

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = requests.request(
            method,
            f"{self.web_url}/api/v1/conversations/{path}",
            headers={"Authorization": f"Token {self.token}"},
            timeout=self.timeout,
            **kwargs,
        )
        resp.raise_for_status()
        return resp.json()

    def waiting(self) -> list[dict[str, Any]]:
        """Conversations waiting for staff, the longest wait first (the first page: 200)."""
        return list(self._call("GET", "", params={"owner": "waiting", "page_size": 200})["results"])

    def conversation(self, pk: int) -> dict[str, Any]:
        return dict(self._call("GET", f"{pk}/"))

    def reply(self, pk: int, text: str, request_key: str) -> dict[str, Any]:
        """Queue a staff reply (202 with its job); the same key queues it once."""
        return dict(self._call("POST", f"{pk}/reply/", json={"text": text, "request_key": request_key}))

    def hand_back(self, pk: int) -> dict[str, Any]:
        return dict(self._call("POST", f"{pk}/hand-back/"))


#: Statuses after which a reply job never sends (docs/handoff.md; a dead one is staff's to redrive).
_SETTLED = ("done", "superseded", "merged", "dead")

_JOBS_SETTLED = """
from messaging.models import ReplyJob
ids = {ids!r}
settled = ReplyJob.objects.filter(inbound__provider_message_id__in=ids, status__in={settled!r})
print(" ".join(settled.values_list("inbound__provider_message_id", flat=True)) or "-")
"""


class SimulatedStaff:
    """The drill's receptionist: answers every guest of the traffic who asked for a person.

    For each handoff (``Traffic.handoffs``), polling once a second: sees the guest waiting in the
    inbox's API; writes a first message (through the API, its retry with the same request key
    queuing nothing more, or typed on the hotel's phone: the fake's ``POST /__fake__/outgoing``);
    once the conversation is the staff's, the guest asks one question (``Traffic.write_during_hold``)
    which staff answer with its fact; once the bot has closed that question's job unanswered, hands
    the guest back to the bot (the API), and the guest goes on writing to the bot. Errors (an outage
    of a scenario) are retried on the next round: every request is idempotent.

    Conversations waiting for another reason (a dead reply: the drill's redrive resolves those)
    are not the staff's here: the drill's guests never ask for a person otherwise.
    """

    def __init__(self, stack: Any, traffic: Any, api: StaffApi, *, interval: float = 1.0) -> None:
        self.stack = stack
        self.traffic = traffic
        self.api = api
        self.interval = interval
        self.errors = 0
        self.retries_same_job = 0  # API replies retried with their key that answered with the same job
        self._last_check = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the loop --------------------------------------------------------------------------------
    def pending(self) -> list[Any]:
        return [h for h in list(self.traffic.handoffs) if h.state not in ("handed_back", "failed")]

    def step(self) -> None:
        pending = self.pending()
        if not pending:
            return
        waiting: list[dict[str, Any]] | None = None
        for handoff in pending:
            try:
                if handoff.state == "asked":
                    waiting = self.api.waiting() if waiting is None else waiting
                    self._first_reply(handoff, waiting)
                elif handoff.state == "replied":
                    self._guest_writes_during_hold(handoff)
                elif handoff.state == "held":
                    self._answer(handoff)
            except (requests.RequestException, ValueError) as e:
                self.errors += 1
                handoff.error = f"{type(e).__name__}: {e}"[:200]
        answered = [h for h in pending if h.state == "answered"]
        if answered and time.monotonic() - self._last_check >= 2.0:
            self._last_check = time.monotonic()
            try:
                self._hand_back_settled(answered)
            except (requests.RequestException, RuntimeError, ValueError) as e:
                self.errors += 1
                for handoff in answered:
                    handoff.error = f"{type(e).__name__}: {e}"[:200]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.step()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="drill-staff", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- the steps -------------------------------------------------------------------------------
    def _say(self, handoff: Any, text: str, n: int) -> None:
        """Send the guest ``text`` as staff (the handoff's way), marked with its reference."""
        text = f"{text} {STAFF_MARK}{handoff.chat_id.split('@')[0]}-{n})"
        if handoff.via == "phone":
            self.stack.fake("green", "POST", "outgoing", json={"chatId": handoff.chat_id, "text": text})
            self.traffic.phone_sent.append(
                {"chatId": handoff.chat_id, "textMessage": text, "timestamp": int(time.time()), "phone": True}
            )
            return
        key = f"drill-{handoff.chat_id.split('@')[0]}-{n}"
        job = self.api.reply(handoff.conversation, text, request_key=key)
        # A retry of the same request (its answer lost on the way): the same job, queued once.
        if self.api.reply(handoff.conversation, text, request_key=key)["id"] == job["id"]:
            self.retries_same_job += 1

    def _first_reply(self, handoff: Any, waiting: list[dict[str, Any]]) -> None:
        masked = mask_chat_id(handoff.chat_id)
        found = [c for c in waiting if c["guest"] == masked and c["owner_reason"] == "guest_asked"]
        if not found:
            return
        handoff.conversation = found[0]["id"]
        self._say(handoff, "Hello, this is the reception. How can we help?", 1)
        handoff.state = "replied"

    def _guest_writes_during_hold(self, handoff: Any) -> None:
        if self.api.conversation(handoff.conversation)["owner"] != "staff":
            return  # the phone's message is still on its way through the webhook
        handoff.hold_question = self.traffic.write_during_hold(handoff)
        if handoff.hold_question is None:
            handoff.state, handoff.error = "failed", "the guest's question was not queued"
            return
        handoff.state = "held"

    def _answer(self, handoff: Any) -> None:
        question, fact = TOPICS[handoff.hold_question.topic]
        thread = self.api.conversation(handoff.conversation)["thread"]
        if not any(item["who"] == "guest" and item["text"] == question for item in thread):
            return  # not stored yet
        self._say(handoff, f"About your question: {fact}.", 2)
        handoff.state = "answered"

    def _hand_back_settled(self, answered: list[Any]) -> None:
        """Hand back the guests whose question asked during the hold the bot has closed (so the
        hand-back cannot make the bot answer it after staff did)."""
        ids = [h.hold_question.id_message for h in answered]
        settled = set(self.stack.shell(_JOBS_SETTLED.format(ids=ids, settled=_SETTLED)).split())
        for handoff in answered:
            if handoff.hold_question.id_message in settled:
                self.api.hand_back(handoff.conversation)
                self.traffic.handed_back(handoff)
