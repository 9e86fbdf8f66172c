"""The generic dead letter queue: classification, one letter per subject, strategies, staff actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.utils import timezone

from hotelbot.exceptions import ValidationFailed
from reliability import dead_letters
from reliability.breaker import registry
from reliability.dead_letters import Failure, RedriveResult, classify_category
from reliability.models import AuditEntry, DeadLetter
from tests.console.admin_world import handler_registered

pytestmark = pytest.mark.django_db

KIND = DeadLetter.Kind.REPLY_SEND


class _Err(Exception):
    def __init__(self, text: str, status: int | None = None) -> None:
        super().__init__(text)
        self.status = status


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        (_Err("Too Many Requests", 429), None, "rate_limited"),
        (_Err("Unauthorized", 401), None, "auth"),
        (None, 403, "auth"),
        (_Err("quota exceeded", 466), None, "quota"),
        (_Err("Insufficient Balance", 402), None, "quota"),
        (_Err("bad chatId", 400), None, "validation"),
        (_Err("Bad gateway", 502), None, "provider_5xx"),
        (_Err("server error", 500), None, "provider_5xx"),
        (requests.ConnectionError("refused"), None, "timeout"),
        (_Err("deadline exceeded after 15 s"), None, "timeout"),
        (_Err("something odd"), None, "unknown"),
    ],
)
def test_every_failure_gets_a_category(error: Any, status: int | None, expected: str) -> None:
    assert classify_category(error, http_status=status) == expected


class _Handler:
    def __init__(self, result: RedriveResult) -> None:
        self.result = result
        self.redriven: list[int] = []
        self.alerted: list[int] = []

    def redrive(self, letter: DeadLetter, *, actor: Any = None) -> RedriveResult:
        self.redriven.append(letter.pk)
        return self.result

    def alert(self, letter: DeadLetter) -> None:
        self.alerted.append(letter.pk)


@pytest.fixture
def kind_handler() -> Any:
    with handler_registered(KIND, _Handler(RedriveResult(handed_back=True, detail="requeued"))) as h:
        yield h


def _fail(status: int | None = 503, subject_id: int = 7, **kw: Any) -> DeadLetter:
    return dead_letters.record_failure(
        Failure(
            kind=KIND,
            reason_code="attempts_exhausted",
            reason="gave up",
            subject="reply job 7",
            subject_type="messaging.replyjob",
            subject_id=subject_id,
            tenant="3",
            dependency="green_api",
            error=_Err("Green API sendMessage: 503 token-abc", status),
            attempts=6,
            secrets=("token-abc",),
            **kw,
        )
    )


def test_a_transient_failure_waits_for_redrive_and_masks_secrets(
    kind_handler: _Handler, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        letter = _fail(503)
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.PENDING
    assert letter.category == "provider_5xx"
    assert letter.next_redrive_at is not None
    assert letter.next_redrive_at > timezone.now()
    assert "token-abc" not in letter.error_message
    assert "sendMessage: 503 ***" in letter.error_message  # masking.MASK
    assert letter.error_class == "_Err"
    assert kind_handler.alerted == [letter.pk]
    assert letter.alerted_at is not None


def test_auth_failures_are_parked_for_a_human(
    kind_handler: _Handler, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        letter = _fail(401)
    assert letter.status == DeadLetter.Status.MANUAL
    assert letter.next_redrive_at is None
    assert kind_handler.alerted == [letter.pk]


def test_a_subject_that_dies_again_updates_its_open_letter(kind_handler: _Handler) -> None:
    first = _fail(503)
    dead_letters.redrive(first)
    again = _fail(502)
    assert again.pk == first.pk
    assert DeadLetter.objects.count() == 1
    again.refresh_from_db()
    assert again.status == DeadLetter.Status.PENDING
    assert again.redrive_count == 1
    assert again.category == "provider_5xx"


def test_after_the_maximum_redrives_a_letter_goes_manual(kind_handler: _Handler, settings) -> None:
    settings.DLQ_MAX_REDRIVES = 2
    letter = _fail(503)
    for _ in range(2):
        dead_letters.redrive(letter)
        letter = _fail(503)
    assert letter.status == DeadLetter.Status.MANUAL


def test_redrive_due_waits_while_the_breaker_rejects_and_goes_when_it_admits(kind_handler: _Handler) -> None:
    letter = _fail(503)
    later = timezone.now() + timedelta(hours=2)
    registry.breaker("green_api").force_open("test", until=later)
    outcome = dead_letters.redrive_due(now=later - timedelta(minutes=1))
    assert outcome.retried == 0
    assert kind_handler.redriven == []
    registry.breaker("green_api").reset()
    outcome = dead_letters.redrive_due(now=later)
    assert outcome.retried == 1
    assert kind_handler.redriven == [letter.pk]
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RETRYING
    assert letter.redrive_count == 1


def test_rate_limited_letters_go_later_whatever_the_breaker_says(kind_handler: _Handler) -> None:
    letter = _fail(429)
    registry.breaker("green_api").force_open("test")
    assert dead_letters.redrive_due(now=timezone.now() + timedelta(hours=1)).retried == 1
    assert kind_handler.redriven == [letter.pk]


def test_subject_resolved_closes_its_open_letters(kind_handler: _Handler) -> None:
    letter = _fail(503)
    dead_letters.redrive(letter)

    class _Subject:
        pk = 7

        class _meta:
            app_label = "messaging"
            model_name = "replyjob"

    assert dead_letters.subject_resolved(subject=_Subject(), resolution="delivered after redrive") == 1  # type: ignore[arg-type]
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RESOLVED
    assert letter.resolution == "delivered after redrive"


def test_staff_actions_are_audited_and_discard_needs_a_reason(kind_handler: _Handler) -> None:
    staff = User.objects.create_user("ana", is_staff=True)
    letter = _fail(503)
    with pytest.raises(ValidationFailed):
        dead_letters.discard(letter, actor=staff, via="admin", reason=" ")
    dead_letters.redrive(letter, actor=staff, via="admin", reason="provider is back")
    dead_letters.discard(letter, actor=staff, via="api", reason="guest checked out")
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.DISCARDED
    assert letter.resolved_by == staff
    actions = list(AuditEntry.objects.order_by("pk").values_list("action", "via", "actor_name", "tenant"))
    assert actions == [
        ("dead_letter.retry", "admin", "ana", "3"),
        ("dead_letter.discard", "api", "ana", "3"),
    ]
    with pytest.raises(ValidationFailed):
        dead_letters.redrive(letter)  # closed letters stay closed


def test_bulk_retry_counts_and_writes_one_audit_row(kind_handler: _Handler) -> None:
    staff = User.objects.create_user("bo", is_staff=True)
    for i in range(3):
        _fail(503, subject_id=100 + i)
    outcome = dead_letters.redrive_many(DeadLetter.objects.all(), actor=staff, via="admin")
    assert (outcome.retried, outcome.resolved, outcome.refused) == (3, 0, 0)
    assert AuditEntry.objects.get().details == {"retried": 3, "resolved": 0, "refused": 0}


def test_a_kind_without_a_handler_cannot_be_redriven() -> None:
    letter = DeadLetter.objects.create(
        kind=DeadLetter.Kind.WEBHOOK_QUARANTINE, reason_code="not_json", reason="x"
    )
    with pytest.raises(ValidationFailed, match="resolve or discard"):
        dead_letters.redrive(letter)


def test_bulk_retry_writes_one_audit_row_per_hotel_so_each_hotel_sees_its_share(
    kind_handler: _Handler,
) -> None:
    staff = User.objects.create_user("cy", is_staff=True)
    _fail(503, subject_id=200)  # tenant "3"
    dead_letters.record_failure(
        Failure(
            kind=KIND,
            reason_code="attempts_exhausted",
            reason="gave up",
            subject_type="messaging.replyjob",
            subject_id=201,
            tenant="4",
            http_status=503,
        )
    )
    dead_letters.redrive_many(DeadLetter.objects.all(), actor=staff, via="api")
    rows = dict(AuditEntry.objects.values_list("tenant", "details"))
    assert rows == {
        "3": {"retried": 1, "resolved": 0, "refused": 0},
        "4": {"retried": 1, "resolved": 0, "refused": 0},
    }
