"""Retention of guests' data: what goes, what is still needed and stays, a hotel's own setting,
and forgetting a guest on request (the purge engine itself: tests/reliability/test_retention.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from messaging.models import Conversation, DeliveryAttempt, Guest, Hotel, Message, ReplyJob
from reliability import retention, tasks
from reliability.models import AuditEntry, DeadLetter
from tests.factories import ConversationFactory, GuestFactory, HotelFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db

OLD = timedelta(days=200)  # past the default 180 days
GUEST_TABLES = ["messaging.deliveryattempt", "messaging.message", "messaging.conversation", "messaging.guest"]


def _age(model: type, pks: list[int], field: str, age: timedelta) -> None:
    model.objects.filter(pk__in=pks).update(**{field: timezone.now() - age})  # type: ignore[attr-defined]


def old_exchange(
    *,
    hotel: Hotel | None = None,
    status: str = ReplyJob.Status.DONE,
    age: timedelta = OLD,
    guest: Guest | None = None,
) -> ReplyJob:
    """A guest's question and the bot's answer ``age`` ago, with the job and one attempt."""
    guest = guest or GuestFactory.create(hotel=hotel or HotelFactory.create())
    conversation = ConversationFactory.create(
        guest=guest, hotel=guest.hotel, last_message_at=timezone.now() - age
    )
    inbound = MessageFactory.create(conversation=conversation)
    outbound = MessageFactory.create(
        conversation=conversation, direction=Message.Direction.OUTBOUND, status=Message.Status.DELIVERED
    )
    job = ReplyJobFactory.create(inbound=inbound, outbound=outbound, status=status)
    DeliveryAttempt.objects.create(
        job=job, attempt=1, step="send", started_at=timezone.now() - age, duration_ms=5, outcome="ok"
    )
    _age(Message, [inbound.pk, outbound.pk], "created_at", age)
    _age(Guest, [guest.pk], "last_seen_at", age)
    _age(Guest, [guest.pk], "created_at", age)
    return job


def purge_guest_data(now: datetime | None = None, batch_size: int = 2) -> dict[str, int]:
    return retention.purge(tables=GUEST_TABLES, batch_size=batch_size, now=now).counts


def test_an_old_finished_exchange_goes_whole_guest_included():
    job = old_exchange()
    guest_id = job.inbound.conversation.guest_id
    counts = purge_guest_data()
    assert counts == {
        "messaging.deliveryattempt": 1,
        "messaging.message": 2,
        "messaging.conversation": 1,
        "messaging.guest": 1,
    }
    assert not ReplyJob.objects.exists()
    assert not Guest.objects.filter(pk=guest_id).exists()


@pytest.mark.parametrize(
    "status",
    [ReplyJob.Status.PENDING, ReplyJob.Status.IN_PROGRESS, ReplyJob.Status.PENDING_PROVIDER_RECOVERY],
)
def test_a_message_whose_reply_is_not_finished_stays_with_its_conversation_and_guest(status):
    job = old_exchange(status=status)
    purge_guest_data()
    assert set(Message.objects.values_list("pk", flat=True)) == {job.inbound_id, job.outbound_id}
    assert ReplyJob.objects.filter(pk=job.pk, status=status).exists()
    assert DeliveryAttempt.objects.filter(job=job).exists()  # a job on its way keeps its history
    assert Conversation.objects.count() == 1
    assert Guest.objects.count() == 1


@pytest.mark.parametrize("open_status", list(DeadLetter.OPEN_STATUSES))
def test_messages_an_open_dead_letter_is_about_stay_until_it_closes(open_status):
    job = old_exchange(status=ReplyJob.Status.DEAD)
    letter = DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND, status=open_status, subject_type="messaging.replyjob",
        subject_id=job.pk, reason_code="attempts_exhausted", reason="gave up",
        payload={"job_id": job.pk, "inbound_message_id": job.inbound_id},
    )  # fmt: skip
    purge_guest_data()
    assert Message.objects.count() == 2
    assert ReplyJob.objects.filter(pk=job.pk).exists()
    assert Conversation.objects.count() == 1
    DeadLetter.objects.filter(pk=letter.pk).update(status=DeadLetter.Status.RESOLVED)
    assert purge_guest_data()["messaging.message"] == 2


def test_old_messages_of_a_conversation_with_recent_ones_go_but_the_conversation_stays():
    job = old_exchange()
    conversation = job.inbound.conversation
    recent = MessageFactory.create(conversation=conversation)
    Conversation.objects.filter(pk=conversation.pk).update(last_message_at=timezone.now())
    counts = purge_guest_data()
    assert counts["messaging.message"] == 2
    assert list(Message.objects.values_list("pk", flat=True)) == [recent.pk]
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert Guest.objects.count() == 1


def test_recent_data_stays_and_a_guest_without_messages_goes_only_when_not_seen_for_long():
    old_exchange(age=timedelta(days=10))
    quiet_new = GuestFactory.create(last_seen_at=timezone.now())
    quiet_old = GuestFactory.create(hotel=quiet_new.hotel)
    _age(Guest, [quiet_old.pk], "created_at", OLD)
    counts = purge_guest_data()
    assert counts == {
        "messaging.deliveryattempt": 0,
        "messaging.message": 0,
        "messaging.conversation": 0,
        "messaging.guest": 1,
    }
    assert not Guest.objects.filter(pk=quiet_old.pk).exists()
    assert Guest.objects.filter(pk=quiet_new.pk).exists()


def test_a_hotel_keeps_its_guests_data_its_own_number_of_days(settings):
    settings.RETENTION_MESSAGES_DAYS = 180
    strict = HotelFactory.create(green_api_instance_id="1101000777", guest_data_retention_days=7)
    lenient = HotelFactory.create(green_api_instance_id="1101000888", guest_data_retention_days=400)
    default = HotelFactory.create()
    old_exchange(hotel=strict, age=timedelta(days=10))
    old_exchange(hotel=lenient, age=OLD)
    old_exchange(hotel=default, age=OLD)
    old_exchange(hotel=default, age=timedelta(days=10))
    purge_guest_data()
    left = dict(Message.objects.values_list("hotel_id").annotate(n=Count("pk")).order_by())
    assert left == {lenient.pk: 2, default.pk: 2}


def test_delivery_attempts_of_finished_jobs_go_after_their_own_retention(settings):
    settings.RETENTION_DELIVERY_ATTEMPTS_DAYS = 30
    done = old_exchange(age=timedelta(days=40))
    pending = old_exchange(age=timedelta(days=40), status=ReplyJob.Status.PENDING)
    counts = purge_guest_data()
    assert counts["messaging.deliveryattempt"] == 1
    assert counts["messaging.message"] == 0
    assert not DeliveryAttempt.objects.filter(job=done).exists()
    assert DeliveryAttempt.objects.filter(job=pending).exists()


def test_a_year_of_guest_data_purged_by_the_beat_task_keeps_every_needed_row_and_is_idempotent(settings):
    """Exchanges over a year in three hotels (the default 180 days, their own 30 and 400), in every
    reply state, some about an open dead letter, purged by the beat task in windows of 3 rows (so
    kept rows sit inside and between windows): exactly the rows past their hotel's retention that
    nothing needs go, and a second run deletes nothing."""
    settings.RETENTION_MESSAGES_DAYS = 180
    settings.RETENTION_DELIVERY_ATTEMPTS_DAYS = 30
    settings.RETENTION_BATCH_SIZE = 3
    hotels = {
        180: HotelFactory.create(),
        30: HotelFactory.create(green_api_instance_id="1101000301", guest_data_retention_days=30),
        400: HotelFactory.create(green_api_instance_id="1101000401", guest_data_retention_days=400),
    }
    states = [  # (reply job status, an open dead letter about it)
        (ReplyJob.Status.DONE, False),
        (ReplyJob.Status.DEAD, True),
        (ReplyJob.Status.DEAD, False),
        (ReplyJob.Status.PENDING, False),
        (ReplyJob.Status.IN_PROGRESS, False),
        (ReplyJob.Status.PENDING_PROVIDER_RECOVERY, False),
        (ReplyJob.Status.SUPERSEDED, False),
    ]
    exchanges: list[tuple[ReplyJob, bool, bool]] = []  # job, kept, attempts kept
    open_jobs: set[int] = set()
    # Oldest first, as traffic comes: ids grow with time (the walk's bound relies on it).
    for n, age_days in enumerate((364, 250, 190, 170, 100, 40, 20, 5)):
        for days, hotel in hotels.items():
            for status, open_letter in states[n % 3 :: 3]:
                job = old_exchange(hotel=hotel, status=status, age=timedelta(days=age_days))
                DeadLetter.objects.create(
                    kind=DeadLetter.Kind.REPLY_SEND, subject_type="messaging.replyjob", subject_id=job.pk,
                    reason_code="attempts_exhausted", reason="gave up",
                    status=DeadLetter.Status.PENDING if open_letter else DeadLetter.Status.RESOLVED,
                )  # fmt: skip
                if open_letter:
                    open_jobs.add(job.pk)
                unfinished = status in {
                    ReplyJob.Status.PENDING, ReplyJob.Status.IN_PROGRESS,
                    ReplyJob.Status.PENDING_PROVIDER_RECOVERY,
                }  # fmt: skip
                kept = age_days < days or unfinished or open_letter
                exchanges.append((job, kept, kept and (age_days < 30 or unfinished)))
    kept_jobs = [job for job, kept, _ in exchanges if kept]
    assert 0 < len(kept_jobs) < len(exchanges)

    counts = tasks.purge_old_records()

    assert set(Message.objects.values_list("pk", flat=True)) == {
        pk for job in kept_jobs for pk in (job.inbound_id, job.outbound_id)
    }
    assert set(ReplyJob.objects.values_list("pk", flat=True)) == {job.pk for job in kept_jobs}
    assert set(Conversation.objects.values_list("pk", flat=True)) == {
        job.inbound.conversation_id for job in kept_jobs
    }
    assert set(Guest.objects.values_list("pk", flat=True)) == {
        job.inbound.conversation.guest_id for job in kept_jobs
    }
    assert set(DeliveryAttempt.objects.values_list("job_id", flat=True)) == {
        job.pk for job, _, attempts_kept in exchanges if attempts_kept
    }
    assert counts["messaging.message"] == 2 * (len(exchanges) - len(kept_jobs))
    open_letters = DeadLetter.objects.filter(status=DeadLetter.Status.PENDING)
    assert open_letters.count() == sum(1 for job, _, _ in exchanges if job.pk in open_jobs) > 0
    assert set(open_letters.values_list("subject_id", flat=True)) <= {job.pk for job in kept_jobs}
    assert sum(tasks.purge_old_records().values()) == 0  # idempotent


# --- forget a guest -----------------------------------------------------------------------------------
@pytest.fixture
def guest_with_history() -> tuple[Guest, ReplyJob, ReplyJob, DeadLetter, DeadLetter]:
    hotel = HotelFactory.create()
    guest = GuestFactory.create(hotel=hotel, chat_id="79001234567@c.us", display_name="Maria")
    done = old_exchange(guest=guest, age=timedelta(days=1))
    waiting = old_exchange(
        guest=guest, age=timedelta(minutes=1), status=ReplyJob.Status.PENDING_PROVIDER_RECOVERY
    )
    ReplyJob.objects.filter(pk=done.pk).update(reply_text="Check-out is at 11:00, Maria.")
    letter = DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND, subject_type="messaging.replyjob", subject_id=done.pk,
        tenant=str(hotel.pk), reason_code="refused", reason="gave up",
        payload={"job_id": done.pk, "inbound_message_id": done.inbound_id, "hotel_id": hotel.pk,
                 "guest": {"display_name": "Maria", "chat_id": "***4567@c.us"}},
    )  # fmt: skip
    quarantined = DeadLetter.objects.create(
        kind=DeadLetter.Kind.WEBHOOK_QUARANTINE, tenant=str(hotel.pk), reason_code="too_long", reason="x",
        status=DeadLetter.Status.RESOLVED,
        raw='{"senderData": {"chatId": "79001234567@c.us"}, "text": "room 12"}',
        payload={"senderData": {"chatId": "79001234567@c.us"}},
    )  # fmt: skip
    return guest, done, waiting, letter, quarantined


def test_forget_erases_the_guests_data_in_place_and_audits_with_the_number_masked(guest_with_history):
    guest, done, waiting, letter, quarantined = guest_with_history
    someone_else = old_exchange(hotel=guest.hotel, age=timedelta(days=1))
    out = StringIO()
    call_command(
        "forget_guest", "--hotel", str(guest.hotel_id), "--chat-id", "+7 900 123-45-67", "--reason", "req-1",
        stdout=out,
    )  # fmt: skip
    assert "erased 4 message(s), 2 reply job(s) (1 unfinished, stopped), 2 dead letter(s)" in out.getvalue()
    guest.refresh_from_db()
    assert (guest.chat_id, guest.display_name) == (f"forgotten-{guest.pk}", "")
    assert set(Message.objects.filter(conversation__guest=guest).values_list("text", flat=True)) == {""}
    assert Message.objects.get(pk=someone_else.inbound_id).text == "What time is check-out?"
    done.refresh_from_db()
    waiting.refresh_from_db()
    assert done.reply_text == ""
    assert waiting.status == ReplyJob.Status.DEAD
    assert waiting.lease_token == ""
    letter.refresh_from_db()
    quarantined.refresh_from_db()
    assert letter.payload == {
        "job_id": done.pk,
        "inbound_message_id": done.inbound_id,
        "hotel_id": guest.hotel_id,
    }
    assert letter.status == DeadLetter.Status.DISCARDED
    assert quarantined.raw == ""
    assert quarantined.payload is None
    entry = AuditEntry.objects.get(action="guest.forget")
    assert (entry.tenant, entry.reason) == (str(guest.hotel_id), "req-1")
    assert "79001234567" not in str(entry.details)
    assert entry.details["chat_id"] == "***4567@c.us"


def test_forget_dry_run_counts_and_changes_nothing(guest_with_history):
    guest = guest_with_history[0]
    out = StringIO()
    call_command(
        "forget_guest", "--hotel", guest.hotel.green_api_instance_id, "--chat-id", "79001234567@c.us",
        "--dry-run", stdout=out,
    )  # fmt: skip
    assert "would erase 4 message(s)" in out.getvalue()
    guest.refresh_from_db()
    assert guest.chat_id == "79001234567@c.us"
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--hotel", "999999", "--chat-id", "79001234567"), "No hotel"),
        (("--hotel", "{hotel}", "--chat-id", "12"), "WhatsApp number"),
        (("--hotel", "{hotel}", "--chat-id", "79990000000"), r"no guest \*\*\*0000@c.us"),
    ],
)
def test_forget_bad_input_is_a_command_error(guest_with_history, args, message):
    hotel_id = str(guest_with_history[0].hotel_id)
    with pytest.raises(CommandError, match=message):
        call_command("forget_guest", *[a.replace("{hotel}", hotel_id) for a in args])


def test_forget_admin_action_needs_delete_guest_and_stays_in_the_users_hotels(client, guest_with_history):
    guest = guest_with_history[0]
    other = GuestFactory.create(
        hotel=HotelFactory.create(green_api_instance_id="1101000999"), chat_id="7911@c.us"
    )
    staff = User.objects.create_user("reception", password="pw", is_staff=True)
    guest.hotel.staff.add(staff)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_guest"]))
    client.force_login(staff)
    url = "/admin/messaging/guest/"
    post = {"action": "forget", "_selected_action": [guest.pk, other.pk]}
    client.post(url, post)
    guest.refresh_from_db()
    assert guest.chat_id == "79001234567@c.us"  # no delete_guest: the action is not offered
    staff.user_permissions.add(Permission.objects.get(codename="delete_guest"))
    staff = User.objects.get(pk=staff.pk)
    client.force_login(staff)
    client.post(url, post)
    guest.refresh_from_db()
    other.refresh_from_db()
    assert guest.chat_id == f"forgotten-{guest.pk}"
    assert other.chat_id == "7911@c.us"  # another hotel's guest: outside the user's scope
    assert AuditEntry.objects.get(action="guest.forget").via == AuditEntry.Via.ADMIN
