"""Exactly once, for real (issue 6 items 2-7 and 13): every way a reply could be lost, stuck or
sent twice, driven through the fake Green API's fault injection."""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.db import OperationalError, connection, models, transaction
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from fakes.green_api import FakeGreenApi
from messaging.clients import green_api
from messaging.models import DeferredStatus, Message, ReplyJob
from messaging.notifications import OutgoingStatus
from messaging.services import replies, statuses
from reliability.fields import Sealed
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging.payloads import CHAT

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_green_session() -> Iterator[None]:
    """Green API's per-process session, rebuilt so it picks up the test's timeout settings."""
    green_api.default_session.cache_clear()
    yield
    green_api.default_session.cache_clear()


def _make_due(job: ReplyJob) -> None:
    ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())


def _sends(fake: FakeGreenApi) -> list[dict[str, Any]]:
    return fake.journal("sendMessage")


def _replies_total(result: str) -> float:
    return REGISTRY.get_sample_value("hotelbot_replies_total", {"result": result}) or 0.0


# --- item 2: only a proof of "not processed" clears send_started_at -------------------------------
@pytest.mark.parametrize("status", [500, 502, 504, 499])
def test_gateway_error_after_green_api_processed_the_send_is_reconciled_not_resent(job, fake_green, status):
    rule = {"match": {"method_name": "sendMessage"}, "mode": "error", "status": status, "count": 1}
    fake_green.add_fault(rule | {"after_process": True})
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.send_started_at is not None  # outcome unknown: kept for reconciliation
    _make_due(job)
    outcome = replies.reply_job_process(job_id=job.pk)
    assert outcome.result == "done"
    [sent] = fake_green.sent_messages()
    assert outcome.detail == sent["idMessage"]
    assert len(_sends(fake_green)) == 1  # the guest got the reply once


@pytest.mark.parametrize(("mode", "status"), [("rate_limit", 429), ("overloaded", 503)])
def test_refused_before_processing_clears_send_started_at(job, fake_green, mode, status):
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": mode, "count": 1})
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.send_started_at is None
    assert str(status) in job.last_error


def test_instance_starting_is_transient_and_not_sent(job, fake_green):
    fake_green.set_state("starting")
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.send_started_at is None
    assert "starting" in job.last_error
    fake_green.set_state("authorized")
    _make_due(job)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert len(fake_green.sent_messages()) == 1


def test_connection_refused_before_sending_clears_send_started_at(job, fake_green, settings):
    settings.GREEN_API_URL = f"http://127.0.0.1:{_closed_port()}"
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.send_started_at is None


def test_501_is_permanent_for_the_client_as_for_retry_py(job, fake_green):
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "error", "status": 501, "count": 1}
    )
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    assert len(_sends(fake_green)) == 1


# --- item 6: one Retry-After parser, capped at every layer ----------------------------------------
def test_huge_retry_after_is_capped_at_job_level(job, fake_green, settings):
    settings.RETRY_AFTER_CAP = 900
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "rate_limit", "retry_after": 99999999, "count": 1}
    )
    before = timezone.now()
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert before + timedelta(seconds=899) <= job.next_attempt_at <= timezone.now() + timedelta(seconds=901)


def test_http_date_retry_after_is_honoured_at_job_level(job, fake_green):
    when = email.utils.formatdate(time.time() + 600, usegmt=True)
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "overloaded", "retry_after": when, "count": 1}
    )
    before = timezone.now()
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.next_attempt_at >= before + timedelta(seconds=590)


def test_job_backoff_is_retry_py_backoff(job, fake_green, settings, monkeypatch):
    settings.REPLY_RETRY_BASE_DELAY = 8.0
    delays: list[tuple[int, float | None]] = []
    real = replies.retry_delay

    def spy(config, retry_number, *, retry_after=None, rng=None):
        delays.append((retry_number, retry_after))
        assert (config.base_delay, config.jitter) == (8.0, "equal")
        return real(config, retry_number, retry_after=retry_after, rng=rng)

    monkeypatch.setattr(replies, "retry_delay", spy)
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "overloaded", "count": 1})
    before = timezone.now()
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert delays == [(1, None)]
    assert before + timedelta(seconds=4) <= job.next_attempt_at <= timezone.now() + timedelta(seconds=8)


# --- item 3: fencing, and a deadline on every Green API call -------------------------------------
def _steal_lease_during(monkeypatch, target: Any, name: str) -> list[str]:
    """While worker A is inside ``target.name``, its lease expires and worker B runs the job."""
    real: Callable[..., Any] = getattr(target, name)
    second: list[str] = []

    def interposed(*args: Any, **kwargs: Any) -> Any:
        if not second:
            second.append("running")
            job_id = ReplyJob.objects.get().pk
            ReplyJob.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
            second[0] = replies.reply_job_process(job_id=job_id).result  # worker B
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, interposed)
    return second


def test_worker_that_lost_its_lease_while_generating_does_not_send(job, fake_green, monkeypatch):
    worker_b = _steal_lease_during(monkeypatch, replies, "_generate")
    outcome = replies.reply_job_process(job_id=job.pk)  # worker A
    assert worker_b == ["done"]
    assert outcome.result == "lease_lost"
    assert len(_sends(fake_green)) == 1
    assert Message.objects.filter(direction=Message.Direction.OUTBOUND).count() == 1
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.DONE


def test_worker_that_lost_its_lease_just_before_the_send_stops(job, fake_green, monkeypatch):
    worker_b = _steal_lease_during(monkeypatch, green_api, "client_for")
    outcome = replies.reply_job_process(job_id=job.pk)  # worker A
    assert worker_b == ["done"]
    assert outcome.result == "lease_lost"
    assert len(_sends(fake_green)) == 1
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.DONE
    assert job.last_error == ""  # A wrote nothing after B's claim


def test_trickling_send_is_cut_by_the_green_api_deadline(job, fake_green, settings, fresh_green_session):
    settings.GREEN_API_READ_TIMEOUT = 0.5
    settings.GREEN_API_DEADLINE = 1.5
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "trickle", "chunk_delay_ms": 300, "count": 1}
    )
    started = time.monotonic()
    outcome = replies.reply_job_process(job_id=job.pk)
    elapsed = time.monotonic() - started
    assert outcome.result == "retry"
    assert elapsed < 4.0  # the whole answer would take over 10 s at one byte per 0.3 s
    job.refresh_from_db()
    assert job.send_started_at is not None  # cut after it left: reconcile, don't resend
    assert "deadline" in job.last_error
    _make_due(job)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert len(fake_green.sent_messages()) == 1


# --- item 4: errors never forget a send ----------------------------------------------------------
def test_failed_confirm_write_keeps_the_send_and_reconciles(job, fake_green):
    failed: list[str] = []

    def fail_done_write_once(execute, sql, params, many, context):
        is_job_update = sql.lstrip().upper().startswith("UPDATE") and "replyjob" in sql.lower()
        if not failed and is_job_update and params is not None and ReplyJob.Status.DONE in list(params):
            failed.append(sql)
            raise OperationalError("deadlock detected")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_done_write_once), pytest.raises(OperationalError):
        replies.reply_job_process(job_id=job.pk)
    assert failed
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.PENDING
    assert job.send_started_at is not None
    _make_due(job)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert len(_sends(fake_green)) == 1


# --- item 5: reconciliation adopts only an unclaimed idMessage -----------------------------------
def test_two_identical_replies_to_one_guest_are_each_delivered_once(fake_green, fake_deepseek, settings):
    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)
    first, second = (
        ReplyJobFactory.create(
            inbound=MessageFactory.create(conversation=conversation, text="What time is check-out?")
        )
        for _ in range(2)
    )
    assert replies.reply_job_process(job_id=first.pk).result == "done"
    # The second question's send is lost before Green API processed it (its outcome is unknown).
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "reset", "count": 1})
    assert replies.reply_job_process(job_id=second.pk).result == "retry"
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.reply_text == second.reply_text  # the same answer to the same question
    _make_due(second)
    outcome = replies.reply_job_process(job_id=second.pk)  # the journal holds only the first's id
    assert outcome.result == "retry"
    assert "waiting for Green API's journal" in outcome.detail
    ReplyJob.objects.filter(pk=second.pk).update(
        send_started_at=timezone.now() - timedelta(seconds=settings.REPLY_RECONCILE_GRACE + 1),
        next_attempt_at=timezone.now(),
    )
    assert replies.reply_job_process(job_id=second.pk).result == "done"
    ids = {m["idMessage"] for m in fake_green.sent_messages()}
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.outbound is not None
    assert second.outbound is not None
    assert {first.outbound.provider_message_id, second.outbound.provider_message_id} == ids
    assert len(ids) == 2


def test_reconciliation_prefers_the_earliest_unowned_entry_after_the_send(job, fake_green):
    def entry(id_message: str, seconds: float) -> green_api.OutgoingJournalEntry:
        return green_api.OutgoingJournalEntry(
            id_message, CHAT, "same text", started + timedelta(seconds=seconds)
        )

    started = timezone.now().replace(microsecond=0)
    owner = MessageFactory.create(
        conversation=job.inbound.conversation,
        direction=Message.Direction.OUTBOUND,
        provider_message_id="OWNED",
    )
    outbound = MessageFactory.create(
        conversation=job.inbound.conversation, direction=Message.Direction.OUTBOUND, provider_message_id=None
    )
    job.outbound, job.reply_text, job.send_started_at = outbound, "same text", started
    journal = [
        entry("LATER", 3),
        entry("OWNED", 1),
        entry("BEFORE", -2),
        entry("FIRST", 2),
        entry("OLD", -60),
    ]
    assert owner.provider_message_id == "OWNED"
    assert replies._adoptable(job, journal, CHAT) == "FIRST"
    assert replies._adoptable(job, [entry("OWNED", 1), entry("BEFORE", -2)], CHAT) == "BEFORE"
    assert replies._adoptable(job, [entry("OWNED", 1), entry("OLD", -60)], CHAT) is None


def test_one_journal_window_reaches_back_to_the_send_less_the_slack(job, monkeypatch):
    """Both readers of the journal (a reconciliation, a manual answer replacing a send in doubt)
    go through replies._journal_find: the window covers send_started_at - RECONCILE_SLACK."""

    class Journal:
        asked: list[int] = []

        def last_outgoing_messages(self, *, minutes: int) -> list[green_api.OutgoingJournalEntry]:
            self.asked.append(minutes)
            return [green_api.OutgoingJournalEntry("EDGE", CHAT, "same text", since)]

    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)
    outbound = MessageFactory.create(
        conversation=job.inbound.conversation, direction=Message.Direction.OUTBOUND, provider_message_id=None
    )
    job.outbound, job.reply_text = outbound, "same text"
    job.send_started_at = (now - timedelta(seconds=179)).replace(microsecond=0)
    since = job.send_started_at - timedelta(seconds=replies.RECONCILE_SLACK)
    journal = Journal()

    assert replies._journal_find(job, journal, CHAT) == "EDGE"  # type: ignore[arg-type]
    assert journal.asked == [3 + 2]  # 184 s back: 3 whole minutes, plus 2


# --- item 7: deferred statuses can't be orphaned -------------------------------------------------
def test_status_deferred_while_confirm_is_open_is_applied_after_commit(
    job, fake_green, monkeypatch, django_capture_on_commit_callbacks
):
    # The confirm's in-transaction look is the outbound UPDATE's (statuses.outbound_accepted).
    real = statuses.outbound_accepted
    raced: list[str] = []

    def lookup_then_status_arrives(*, message_id: int, hotel_id: int, id_message: str, at: Any) -> bool:
        applied = real(message_id=message_id, hotel_id=hotel_id, id_message=id_message, at=at)
        if not raced:
            # A concurrent webhook's transaction could not see the uncommitted id: it stored the
            # status deferred, after the lookup above and before this transaction commits.
            raced.append(id_message)
            DeferredStatus.objects.create(
                hotel_id=hotel_id,
                id_message=id_message,
                status="delivered",
                description="",
                provider_timestamp=timezone.now(),
            )
        return applied

    monkeypatch.setattr(statuses, "outbound_accepted", lookup_then_status_arrives)
    with django_capture_on_commit_callbacks(execute=True):
        assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert raced
    job.refresh_from_db()
    assert job.outbound is not None
    assert job.outbound.status == Message.Status.DELIVERED
    assert not DeferredStatus.objects.exists()


def test_status_deferred_while_its_id_is_being_committed_is_applied_after_its_own_commit(
    job, django_capture_on_commit_callbacks
):
    outbound = MessageFactory.create(
        conversation=job.inbound.conversation,
        direction=Message.Direction.OUTBOUND,
        provider_message_id=None,
        status=Message.Status.ACCEPTED,
    )
    status = OutgoingStatus("1101000001", "3EB0RACE", "delivered", "", timezone.now())
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        assert statuses.outbound_status_apply(hotel_id=job.inbound.hotel_id, status=status) == (
            "status_deferred",
            None,
        )
        # The reply job's commit (and its own look for deferred rows) landed meanwhile.
        Message.objects.filter(pk=outbound.pk).update(provider_message_id="3EB0RACE")
    outbound.refresh_from_db()
    assert outbound.status == Message.Status.DELIVERED
    assert not DeferredStatus.objects.exists()


# --- item 13: secrets never leave ----------------------------------------------------------------
TOKEN = "s3cr3tTOKENf00dfeed1234"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _text_values() -> Iterator[tuple[str, str]]:
    for app in ("messaging", "reliability"):
        for model in apps.get_app_config(app).get_models():
            text_fields = [
                f.attname
                for f in model._meta.concrete_fields
                if isinstance(f, models.CharField | models.TextField | models.JSONField)
            ]
            for row in model._default_manager.values(*text_fields):
                for name, value in row.items():  # an encrypted column as stored (its ciphertext)
                    stored = value.ciphertext if isinstance(value, Sealed) else str(value)
                    yield f"{model.__name__}.{name}", stored


def test_green_api_token_never_reaches_logs_errors_rows_or_admin(
    fake_deepseek, settings, caplog, admin_client, fresh_green_session
):
    caplog.set_level(logging.DEBUG)
    settings.REPLY_MAX_ATTEMPTS = 2
    with FakeGreenApi(api_token=TOKEN, status_delays=(0.05, 0.1, 0.15), rate_limits=False) as fake:
        hotel = HotelFactory.create(green_api_token=TOKEN)
        conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=CHAT)
        job = ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation))
        # Attempt 1: a 5xx (outcome unknown). Attempt 2: connection refused on the journal -> dead.
        settings.GREEN_API_URL = fake.url
        fake.add_fault({"match": {"method_name": "sendMessage"}, "mode": "error", "status": 500, "count": 1})
        assert replies.reply_job_process(job_id=job.pk).result == "retry"
        settings.GREEN_API_URL = f"http://127.0.0.1:{_closed_port()}"
        _make_due(job)
        assert replies.reply_job_process(job_id=job.pk).result == "dead"
    job.refresh_from_db()
    assert "ConnectionError" in job.last_error  # the texts are there, only the token is masked
    assert "/lastOutgoingMessages/***" in job.last_error
    assert job.outbound is not None
    assert "***" in job.outbound.status_detail
    leaks = [where for where, value in _text_values() if TOKEN in value]
    assert leaks == []
    logged = [  # ours and our libraries' (the fake's own access log is the provider's side)
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
        if not r.name.startswith("fakes")
    ]
    assert any("waInstance" in line for line in logged)  # URL-bearing lines were captured
    assert [line for line in logged if TOKEN in line] == []
    for page in (
        reverse("admin:messaging_replyjob_change", args=[job.pk]),
        reverse("admin:messaging_replyjob_changelist"),
        reverse("admin:messaging_message_change", args=[job.outbound.pk]),
    ):
        response = admin_client.get(page)
        assert response.status_code == 200
        assert TOKEN not in response.content.decode()


# --- metric: replies by result -------------------------------------------------------------------
def test_replies_total_counts_done_degraded_and_dead(fake_green, fake_deepseek):
    before = {r: _replies_total(r) for r in ("done", "degraded", "dead")}

    def new_job(chat: str) -> ReplyJob:
        conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=chat)
        return ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation))

    assert replies.reply_job_process(job_id=new_job("79001110001@c.us").pk).result == "done"
    fake_deepseek.add_fault({"mode": "overloaded"})
    assert replies.reply_job_process(job_id=new_job("79001110002@c.us").pk).result == "done"
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "error", "status": 400, "count": 1}
    )
    assert replies.reply_job_process(job_id=new_job("79001110003@c.us").pk).result == "dead"
    after = {r: _replies_total(r) for r in ("done", "degraded", "dead")}
    assert {r: after[r] - before[r] for r in after} == {"done": 1, "degraded": 1, "dead": 1}
