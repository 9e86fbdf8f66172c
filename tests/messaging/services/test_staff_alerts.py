"""Issue 19 items 5, 6, 11: reception hours in the notice, the SLA clock that runs only while reception
is open, staff alerted again past the target, the staff webhook, and the handoff metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.utils import timezone

from messaging.clients import staff_webhook
from messaging.models import Conversation, Hotel, ReceptionHours, ReplyJob, StaffEvent
from messaging.services import alerts, handoff, replies, staff_events
from reliability import masking
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging import payloads
from tests.messaging.payloads import CHAT
from tests.reliability.test_metrics import Delta

pytestmark = pytest.mark.django_db
URL = "/webhooks/green-api/"


# --- a hotel's own system, receiving the webhook ----------------------------------------------------
class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: ClassVar[list[dict[str, Any]]] = []
    mode: ClassVar[str] = "ok"  # ok, fail (503 with Retry-After), slow (answers after 2 s)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.mode == "slow":
            time.sleep(2)
        Receiver.received.append({"headers": dict(self.headers), "body": body})
        status = 503 if self.mode == "fail" else 204
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received, Receiver.mode = [], "ok"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hooks/hotelbot"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hotel() -> Hotel:
    return HotelFactory.create(staff_email="desk@example.com", timezone="UTC", handoff_target_minutes=15)


def _handed_over(hotel: Hotel, capture, text: str = "I want to talk to a person") -> Conversation:
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=CHAT)
    job = ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation, text=text))
    with capture(execute=True):
        assert replies.reply_job_process(job_id=job.pk).result == "done"
    conversation.refresh_from_db()
    assert conversation.owner == Conversation.Owner.WAITING
    return conversation


def _waited(conversation: Conversation, minutes: float) -> None:
    """The handoff happened ``minutes`` ago."""
    since = timezone.now() - timedelta(minutes=minutes)
    Conversation.objects.filter(pk=conversation.pk).update(owner_since=since, handoff_at=since)
    conversation.refresh_from_db()


def _closed_recently(hotel: Hotel) -> None:
    """Reception hours that exclude the last days: one hour, three days from now."""
    later = timezone.now().astimezone(UTC) + timedelta(days=3)
    ReceptionHours.objects.create(hotel=hotel, weekday=later.weekday(), opens="07:00", closes="08:00")


# --- the notice says when staff will answer ----------------------------------------------------------
def test_the_notice_while_reception_is_closed_says_when_it_opens(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    Hotel.objects.filter(pk=hotel.pk).update(timezone="Asia/Tokyo")
    opens = (timezone.now() + timedelta(hours=2)).astimezone(ZoneInfo("Asia/Tokyo"))
    closes = opens + timedelta(hours=1)
    ReceptionHours.objects.create(
        hotel=hotel, weekday=opens.weekday(), opens=f"{opens:%H:%M}", closes=f"{closes:%H:%M}"
    )
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    notice = ReplyJob.objects.get(inbound__conversation=conversation, kind="handoff").reply_text
    assert notice == (
        "Thank you for your message. A member of our staff will answer you here. Reception is closed "
        f"now: it opens at {opens:%H:%M} (hotel time), and we will answer you then. You can also reach "
        "them: reception, dial 9."
    )
    [send] = fake_green.journal("sendMessage")
    assert send["body"]["message"] == notice


def test_the_notice_while_reception_is_open_is_as_before(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    now = timezone.now().astimezone(UTC)
    ReceptionHours.objects.create(hotel=hotel, weekday=now.weekday(), opens="00:00", closes="00:00")
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    notice = ReplyJob.objects.get(inbound__conversation=conversation, kind="handoff").reply_text
    assert "A member of our staff will answer you here." in notice


# --- re-alert past the target, counted while reception is open ----------------------------------------
def test_a_guest_waiting_past_the_target_is_alerted_again_once(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    _waited(conversation, 10)
    mail.outbox.clear()
    assert alerts.handoffs_flag_overdue() == 0  # 10 min < the 15 min target
    _waited(conversation, 20)
    assert alerts.handoffs_flag_overdue() == 1
    staff_mail = next(m for m in mail.outbox if m.to == ["desk@example.com"])
    assert "A guest is still waiting for a person" in staff_mail.subject
    assert "waiting 20 min while reception was open (the hotel's target is 15 min)" in staff_mail.body
    assert "the guest asked for a person" in staff_mail.body
    assert CHAT.partition("@")[0] not in f"{staff_mail.subject}\n{staff_mail.body}"
    mail.outbox.clear()
    assert alerts.handoffs_flag_overdue() == 0  # once per handoff
    assert mail.outbox == []


def test_the_clock_stops_while_reception_is_closed(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    _closed_recently(hotel)
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    _waited(conversation, 120)  # two hours, all of them closed
    assert alerts.handoffs_flag_overdue() == 0


def test_a_new_handoff_is_alerted_again_and_a_failed_mail_next_run(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks, monkeypatch
):
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    _waited(conversation, 30)

    def refuse(alert: alerts.Alert) -> None:
        raise OSError("SMTP refused")

    monkeypatch.setattr(alerts, "_send", refuse)
    assert alerts.handoffs_flag_overdue() == 0
    conversation.refresh_from_db()
    assert conversation.staff_realerted_at is None  # set back: tried again next run
    monkeypatch.undo()
    assert alerts.handoffs_flag_overdue() == 1
    # (that re-alert was an hour ago, before what follows)
    Conversation.objects.filter(pk=conversation.pk).update(
        staff_realerted_at=timezone.now() - timedelta(hours=1)
    )
    # Staff hand it back, the guest asks again: a new handoff, a new target crossing.
    handoff.conversation_hand_back(conversation_id=conversation.pk, actor=None, via="test")
    job = ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation, text="A manager!"))
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    _waited(conversation, 16)
    assert alerts.handoffs_flag_overdue() == 1


def test_a_conversation_staff_took_is_not_alerted_again(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    _waited(conversation, 30)
    handoff.conversation_take(conversation_id=conversation.pk, actor=None, via="test")
    assert alerts.handoffs_flag_overdue() == 0


# --- the webhook -------------------------------------------------------------------------------------
def test_a_handoff_posts_a_signed_event_once(
    hotel, receiver, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    Hotel.objects.filter(pk=hotel.pk).update(staff_webhook_url=receiver)
    hotel.refresh_from_db()
    hotel.staff_webhook_secret = "s3cret-signing-key"
    hotel.save(update_fields=["staff_webhook_secret"])
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    assert alerts.staff_alerts_run() >= 1  # the handoff mail
    [request] = Receiver.received
    event = json.loads(request["body"])
    assert event == {
        "id": StaffEvent.objects.get().pk,
        "event": "handoff",
        "hotel": hotel.pk,
        "conversation": conversation.pk,
        "reason": "guest_asked",
        "waiting_seconds": 0,
        "guest": masking.mask_chat_id(CHAT),
        "at": event["at"],
    }
    timestamp = request["headers"][staff_webhook.TIMESTAMP_HEADER]
    expected = staff_webhook.signature("s3cret-signing-key", timestamp, request["body"])
    assert request["headers"][staff_webhook.SIGNATURE_HEADER] == expected
    assert CHAT.partition("@")[0] not in request["body"].decode()
    assert StaffEvent.objects.get().delivered_at is not None
    assert alerts.staff_alerts_run() == 0
    assert len(Receiver.received) == 1  # delivered once


def test_a_failing_endpoint_is_tried_again_later_and_never_blocks_the_mail(
    hotel, receiver, fake_green, fake_deepseek, django_capture_on_commit_callbacks, settings
):
    Hotel.objects.filter(pk=hotel.pk).update(staff_webhook_url=receiver)
    hotel.refresh_from_db()
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    _waited(conversation, 20)
    Receiver.mode = "fail"
    mail.outbox.clear()
    assert alerts.staff_alerts_run() == 2  # the handoff mail and the re-alert went out anyway
    assert {e.event for e in StaffEvent.objects.all()} == {"handoff", "handoff_overdue"}
    failed = StaffEvent.objects.filter(delivered_at__isnull=True)
    assert failed.count() == 2
    assert all("answered 503" in e.last_error for e in failed)
    assert all(e.next_attempt_at >= timezone.now() + timedelta(minutes=9) for e in failed)  # Retry-After
    # The endpoint recovers; a later run delivers both (nothing lost).
    Receiver.mode, Receiver.received = "ok", []
    later = timezone.now() + timedelta(minutes=11)
    assert staff_events.staff_events_deliver(now=later) == 2
    events = sorted(json.loads(r["body"])["event"] for r in Receiver.received)
    assert events == ["handoff", "handoff_overdue"]
    overdue = next(json.loads(r["body"]) for r in Receiver.received if b"overdue" in r["body"])
    assert 1190 <= overdue["waiting_seconds"] <= 1210
    # A slow endpoint is cut at STAFF_WEBHOOK_TIMEOUT.
    settings.STAFF_WEBHOOK_TIMEOUT = 0.3
    staff_webhook.default_session.cache_clear()
    try:
        Receiver.mode = "slow"
        Conversation.objects.filter(pk=conversation.pk).update(owner=Conversation.Owner.BOT)
        job = ReplyJobFactory.create(
            inbound=MessageFactory.create(conversation=conversation, text="Manager!")
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert replies.reply_job_process(job_id=job.pk).result == "done"
        started = time.monotonic()
        assert staff_events.staff_events_deliver() == 0
        assert time.monotonic() - started < 1.5
        slow = StaffEvent.objects.filter(delivered_at__isnull=True).get()
        assert "timed out" in slow.last_error
    finally:
        staff_webhook.default_session.cache_clear()


def test_an_event_not_delivered_for_a_day_is_given_up(hotel, receiver):
    Hotel.objects.filter(pk=hotel.pk).update(staff_webhook_url=receiver)
    hotel.refresh_from_db()
    conversation = ConversationFactory.create(guest__hotel=hotel, owner="waiting", owner_since=timezone.now())
    staff_events.staff_event_record(conversation=conversation, event="handoff", now=timezone.now())
    later = timezone.now() + staff_events.GIVE_UP_AFTER + timedelta(minutes=1)
    assert staff_events.staff_events_deliver(now=later) == 0
    event = StaffEvent.objects.get()
    assert event.given_up_at is not None
    assert "not delivered within" in event.last_error
    assert Receiver.received == []


# --- the webhook's URL against SSRF (without DEBUG) ---------------------------------------------------
def _event_for(hotel: Hotel, url: str) -> StaffEvent:
    Hotel.objects.filter(pk=hotel.pk).update(staff_webhook_url=url)
    hotel.refresh_from_db()
    conversation = ConversationFactory.create(guest__hotel=hotel, owner="waiting", owner_since=timezone.now())
    staff_events.staff_event_record(conversation=conversation, event="handoff", now=timezone.now())
    return StaffEvent.objects.get()


@pytest.mark.parametrize(
    ("allow_http", "allow_private", "error"),
    [
        (False, False, "refused: The URL must start with https://"),  # production: https only
        (True, False, "refused: The host 127.0.0.1 resolves to 127.0.0.1: not a public address"),
    ],
)
def test_a_url_the_deployment_refuses_is_never_posted_to(
    hotel, receiver, settings, allow_http, allow_private, error
):
    settings.STAFF_WEBHOOK_ALLOW_HTTP, settings.STAFF_WEBHOOK_ALLOW_PRIVATE = allow_http, allow_private
    event = _event_for(hotel, receiver)
    assert staff_events.staff_events_deliver() == 0
    event.refresh_from_db()
    assert error in event.last_error
    assert (event.delivered_at, event.attempts) == (None, 1)  # tried again later: DNS can change
    assert Receiver.received == []


def test_a_name_rebound_to_a_private_address_after_the_check_is_refused_at_connect(
    hotel, receiver, settings, monkeypatch
):
    """The host passes the check as a public address, then connects to 127.0.0.1 (DNS rebinding):
    the connection's own address is refused before a byte is sent."""
    settings.STAFF_WEBHOOK_ALLOW_HTTP, settings.STAFF_WEBHOOK_ALLOW_PRIVATE = True, False
    monkeypatch.setattr("reliability.egress.resolve", lambda host, port: ["93.184.215.14"])
    staff_webhook.default_session.cache_clear()
    try:
        event = _event_for(hotel, receiver.replace("127.0.0.1", "localhost"))
        assert staff_events.staff_events_deliver() == 0
    finally:
        staff_webhook.default_session.cache_clear()
    event.refresh_from_db()
    assert "not a public address" in event.last_error
    assert Receiver.received == []


def test_private_addresses_are_posted_to_when_the_deployment_allows_them(hotel, receiver, settings):
    settings.STAFF_WEBHOOK_ALLOW_HTTP, settings.STAFF_WEBHOOK_ALLOW_PRIVATE = True, True
    _event_for(hotel, receiver)
    assert staff_events.staff_events_deliver() == 1
    assert len(Receiver.received) == 1


# --- metrics -----------------------------------------------------------------------------------------
def test_handoffs_are_counted_by_reason_once_committed(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    asked = Delta("hotelbot_handoffs_total", {"reason": "guest_asked"})
    _handed_over(hotel, django_capture_on_commit_callbacks)
    assert asked() == 1


def test_the_first_staff_reply_after_a_handoff_is_observed_once(
    hotel, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    observed = Delta("hotelbot_first_human_reply_seconds_count")
    within_ten_minutes = Delta("hotelbot_first_human_reply_seconds_bucket", {"le": "600.0"})
    conversation = _handed_over(hotel, django_capture_on_commit_callbacks)
    _waited(conversation, 7)
    for text in ("Hi, Frida here.", "Anything else?"):
        job = handoff.staff_reply_queue(conversation_id=conversation.pk, text=text, actor=None, via="test")
        assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert (observed(), within_ten_minutes()) == (1, 1)
    conversation.refresh_from_db()
    replied, handed = conversation.staff_replied_at, conversation.handoff_at
    assert replied is not None
    assert handed is not None
    assert 419 <= (replied - handed).total_seconds() <= 440


def test_a_message_from_the_hotels_phone_is_a_first_human_reply(
    webhook_client, fake_green, fake_deepseek, django_capture_on_commit_callbacks
):
    observed = Delta("hotelbot_first_human_reply_seconds_count")
    hotel = HotelFactory.create()
    webhook_client.post(
        URL, payloads.incoming_text(id_message="IN-1", text="A manager please"), format="json"
    )
    job = ReplyJob.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert replies.reply_job_process(job_id=job.pk).result == "done"
    phone = payloads.outgoing_phone_message(id_message="PHONE-1", text="Hi, reception here.")
    with django_capture_on_commit_callbacks(execute=True):
        webhook_client.post(URL, phone, format="json")
    assert observed() == 1
    conversation = Conversation.objects.get(hotel=hotel)
    assert conversation.staff_replied_at is not None
    assert conversation.owner == "staff"
