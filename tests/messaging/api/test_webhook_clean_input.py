"""Clean input, answered (issue 16 item 9): a NUL or a lone surrogate (half an emoji, sent as the
JSON escape ``"\\ud83d"``) in a guest's text or name is replaced by U+FFFD, the message is stored
and answered, and the original body is kept for staff as a resolved dead letter. Identifiers with
those characters are still quarantined (they would not be the identifier any more).

Both intake paths: the ORM path (SQLite, and PostgreSQL with the statement switched off) and
PostgreSQL's one statement, which would refuse a NUL: the cleaning happens before storage.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from messaging.models import Guest, Message, ReplyJob
from messaging.notifications import REPLACEMENT, IncomingMessage, RawBody, parse_webhook_body
from messaging.services import intake, replies
from reliability.models import DeadLetter
from tests.messaging import payloads

URL = "/webhooks/green-api/"
pytestmark = pytest.mark.django_db


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()  # ensure_ascii: "\u0000" and "\ud83d" travel as JSON escapes


def _dlq_added(reason: str) -> float:
    labels = {"kind": "webhook_quarantine", "reason_code": reason}
    return REGISTRY.get_sample_value("dlq_messages_total", labels) or 0.0


def _quarantined_total() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "hotelbot_webhook_quarantined"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


CASES = [
    # (case, text, sender name, stored text, stored name, cleaned fields)
    ("NUL in text", "check\u0000out?", "Ana", f"check{REPLACEMENT}out?", "Ana", "textMessage"),
    ("half an emoji in text", "thanks \ud83d", "Ana", f"thanks {REPLACEMENT}", "Ana", "textMessage"),
    ("low surrogate alone", "\udc00hi", "Ana", f"{REPLACEMENT}hi", "Ana", "textMessage"),
    ("NUL in sender name", "hello", "An\u0000a", "hello", f"An{REPLACEMENT}a", "senderName"),
    ("half an emoji in name", "hello", "Ana \ud83d", "hello", f"Ana {REPLACEMENT}", "senderName"),
    (
        "both",
        "\u0000\ud83d\ude00\ud83d",
        "\udfff",
        f"{REPLACEMENT}\U0001f600{REPLACEMENT}",
        REPLACEMENT,
        "senderName",
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "name", "stored_text", "stored_name", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_unsafe_characters_in_free_text_are_replaced_and_the_message_is_stored_and_kept_for_staff(
    webhook_client, hotel, intake_path, case, text, name, stored_text, stored_name, field
):
    body = _raw(payloads.incoming_text(id_message="CLEAN1", text=text, sender_name=name))
    added_before, quarantined_before = _dlq_added("text_cleaned"), _quarantined_total()

    resp = webhook_client.post(URL, data=body, content_type="application/json")

    assert (resp.status_code, resp.json()) == (200, {"status": "stored"})
    message = Message.objects.get(provider_message_id="CLEAN1")
    assert message.text == stored_text
    assert Guest.objects.get(hotel=hotel).display_name == stored_name
    assert ReplyJob.objects.get(inbound=message).status == ReplyJob.Status.PENDING  # it will be answered
    letter = DeadLetter.objects.get()
    assert (letter.kind, letter.reason_code, letter.status) == (
        "webhook_quarantine",
        "text_cleaned",
        "resolved",
    )
    assert letter.resolved_at is not None
    assert letter.resolution == f"cleaned and processed: stored (message {message.pk})"
    assert (letter.tenant, letter.subject) == (str(hotel.pk), str(payloads.INSTANCE))
    assert field in letter.reason
    assert letter.raw == body.decode()  # the original, byte for byte (its escapes are ASCII)
    assert json.loads(letter.raw)["senderData"]["senderName"] == name
    # Not a failure: neither a new dead letter for the DLQ alerts nor a quarantine.
    assert (_dlq_added("text_cleaned"), _quarantined_total()) == (added_before, quarantined_before)


def test_a_redelivery_of_a_cleaned_message_is_a_duplicate_and_keeps_no_second_copy(
    webhook_client, hotel, intake_path
):
    body = _raw(payloads.incoming_text(id_message="CLEAN2", text="a\u0000b"))
    assert webhook_client.post(URL, data=body, content_type="application/json").json() == {"status": "stored"}
    assert webhook_client.post(URL, data=body, content_type="application/json").json() == {
        "status": "duplicate"
    }
    assert Message.objects.filter(provider_message_id="CLEAN2").count() == 1
    assert DeadLetter.objects.count() == 1


def test_identifiers_with_unsafe_characters_are_still_quarantined(webhook_client, hotel, intake_path):
    for n, changes in enumerate(({"idMessage": "AB\u0000C"}, {"chatId": "\udc00@c.us"})):
        body = payloads.incoming_text(id_message=f"ID{n}", text="a\u0000b")
        if "chatId" in changes:
            body["senderData"]["chatId"] = changes["chatId"]
        else:
            body["idMessage"] = changes["idMessage"]
        resp = webhook_client.post(URL, data=_raw(body), content_type="application/json")
        assert resp.json() == {"status": "quarantined"}
    assert not Message.objects.exists()
    letters = DeadLetter.objects.order_by("pk")
    assert [(d.reason_code, d.status) for d in letters] == [("unsafe_text", "pending")] * 2


def test_a_status_description_is_cleaned_and_the_status_applied(webhook_client, hotel):
    body = payloads.outgoing_status(id_message="S-CLEAN", status="failed", description="bad\u0000\ud83d")
    resp = webhook_client.post(URL, data=_raw(body), content_type="application/json")
    assert resp.json() == {"status": "status_deferred"}  # no outbound message with that id yet
    letter = DeadLetter.objects.get()
    assert (letter.reason_code, letter.status) == ("text_cleaned", "resolved")
    assert "description" in letter.reason


def test_the_parser_names_what_it_cleaned_and_leaves_clean_text_alone():
    dirty = payloads.incoming_text(id_message="P1", text="x\u0000" * 3, sender_name="\ud800")
    parsed = parse_webhook_body(RawBody(_raw(dirty), 0))
    assert isinstance(parsed, IncomingMessage)
    assert (parsed.text, parsed.sender_name) == (f"x{REPLACEMENT}" * 3, REPLACEMENT)
    assert parsed.cleaned == ("messageData.textMessageData.textMessage", "senderData.senderName")
    clean = parse_webhook_body(RawBody(_raw(payloads.incoming_text(id_message="P2", text="ok 😀")), 0))
    assert isinstance(clean, IncomingMessage)
    assert (clean.text, clean.cleaned) == ("ok 😀", ())


def test_a_cleaned_message_is_answered(job_world_for_clean_input):
    job = job_world_for_clean_input
    outcome = replies.reply_job_process(job_id=job.pk)
    assert outcome.result == "done"
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.DONE
    assert job.outbound is not None
    assert job.outbound.text


@pytest.fixture
def job_world_for_clean_input(webhook_client, fake_green, fake_deepseek, hotel) -> ReplyJob:
    body = _raw(payloads.incoming_text(id_message="CLEAN3", text="late check-out? \ud83d\u0000"))
    assert webhook_client.post(URL, data=body, content_type="application/json").json() == {"status": "stored"}
    return ReplyJob.objects.get(inbound__provider_message_id="CLEAN3")


def test_cleaned_original_keep_never_raises_when_the_letter_cannot_be_written(hotel, monkeypatch):
    from django.db import OperationalError

    def refuse(**_: Any) -> None:
        raise OperationalError("database went away")

    monkeypatch.setattr(intake, "dead_letter_quarantine", refuse)
    parsed = parse_webhook_body(RawBody(_raw(payloads.incoming_text(id_message="K1", text="\u0000")), 0))
    assert isinstance(parsed, IncomingMessage)
    result = intake.IngestResult(action="stored", message_id=1)
    assert intake.cleaned_original_keep(notification=parsed, body=None, result=result) is None
