"""Upkeep services the management commands and beat call: dead-letter retry by filter, and the
retention purge of old records.

Generic: the purge deletes reliability's own tables (closed dead letters, breaker events, stored
reports, and the audit log only when asked); other apps register a purge hook for their tables at
start-up (``register_purge``; messaging registers one for the delivery attempts of finished reply
jobs), so the toolkit never imports the domain. Deletes run in batches, one short transaction each,
so a large purge never holds locks for long nor builds one huge transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from hotelbot.exceptions import ValidationFailed
from reliability import dead_letters
from reliability.models import AuditEntry, BreakerEvent, DeadLetter, ReliabilityReport

#: ``progress(table, deleted_so_far)`` after each batch (commands print it; beat passes None).
Progress = Callable[[str, int], None]

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """``30m``, ``1h``, ``7d``, ``2w`` (or ``45s``) → a timedelta; anything else is ValidationFailed."""
    match = _AGE.match(text or "")
    if match is None:
        raise ValidationFailed(
            f"{text!r} is not an age: use a number and a unit, e.g. 30m, 1h, 7d or 2w.",
            details={"older_than": "Expected <number><s|m|h|d|w>."},
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])


# --- dead letters: retry by filter ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which dead letters a bulk action takes (empty = any)."""

    kinds: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    statuses: tuple[str, ...] = (DeadLetter.Status.PENDING,)
    tenant: str = ""
    older_than: timedelta | None = None
    ids: tuple[int, ...] = ()

    def validate(self) -> None:
        checks = (
            ("kind", self.kinds, DeadLetter.Kind.values),
            ("category", self.categories, DeadLetter.Category.values),
            ("status", self.statuses, [str(s) for s in DeadLetter.OPEN_STATUSES]),
        )
        for name, given, allowed in checks:
            unknown = sorted(set(given) - set(allowed))
            if unknown:
                raise ValidationFailed(
                    f"Unknown {name} {', '.join(unknown)}; choose from {', '.join(allowed)}.",
                    details={name: allowed},
                )


def dead_letters_matching(
    *, letter_filter: LetterFilter, tenants: frozenset[str] | None = None
) -> QuerySet[DeadLetter]:
    """The open dead letters ``letter_filter`` selects, oldest first; cut to ``tenants`` when given
    (None = every tenant: the system, operations)."""
    letter_filter.validate()
    qs = DeadLetter.objects.filter(status__in=letter_filter.statuses or DeadLetter.OPEN_STATUSES)
    if letter_filter.kinds:
        qs = qs.filter(kind__in=letter_filter.kinds)
    if letter_filter.categories:
        qs = qs.filter(category__in=letter_filter.categories)
    if letter_filter.dependencies:
        qs = qs.filter(dependency__in=letter_filter.dependencies)
    if letter_filter.tenant:
        qs = qs.filter(tenant=letter_filter.tenant)
    if letter_filter.older_than is not None:
        qs = qs.filter(created_at__lt=timezone.now() - letter_filter.older_than)
    if letter_filter.ids:
        qs = qs.filter(pk__in=letter_filter.ids)
    if tenants is not None:
        qs = qs.filter(tenant__in=sorted(tenants))
    return qs.order_by("created_at", "pk")


@dataclass(slots=True)
class RetryOutcome:
    matched: int = 0
    retried: int = 0
    resolved: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)  # filled on a dry run


def dead_letters_retry(
    *,
    letter_filter: LetterFilter,
    limit: int | None = None,
    dry_run: bool = False,
    actor: Any = None,
    tenants: frozenset[str] | None = None,
    via: str = AuditEntry.Via.COMMAND,
    reason: str = "",
) -> RetryOutcome:
    """Redrive the letters ``letter_filter`` selects (at most ``limit``, oldest first) through
    ``dead_letters.redrive_many`` (which audits, with ``actor``: a user, or None = the system).
    A dry run only lists them. ``tenants`` (the actor's, from the console; None = every tenant)
    cuts the selection."""
    if limit is not None and limit < 1:
        raise ValidationFailed("The limit must be at least 1.", details={"limit": "Minimum 1."})
    qs = dead_letters_matching(letter_filter=letter_filter, tenants=tenants)
    ids = list(qs.values_list("pk", flat=True)[:limit] if limit else qs.values_list("pk", flat=True))
    outcome = RetryOutcome(matched=len(ids))
    if dry_run:
        outcome.letters = list(DeadLetter.objects.filter(pk__in=ids).order_by("created_at", "pk"))
        return outcome
    if not ids:
        return outcome
    bulk = dead_letters.redrive_many(
        DeadLetter.objects.filter(pk__in=ids), actor=actor, via=via, reason=reason
    )
    outcome.retried, outcome.resolved, outcome.refused = bulk.retried, bulk.resolved, bulk.refused
    outcome.errors = list(bulk.errors)
    return outcome


# --- retention purge --------------------------------------------------------------------------------
class Purger(Protocol):
    def __call__(self, *, before: datetime, dry_run: bool, batch_size: int, progress: Progress | None) -> int:
        """Delete (or, on a dry run, count) the rows older than ``before``; return how many."""
        ...


_purgers: dict[str, Purger] = {}


def register_purge(table: str, purger: Purger) -> None:
    """Called from another app's ``ready()``: its old rows go with the retention purge too."""
    _purgers[table] = purger


def delete_in_batches(
    queryset: QuerySet[Any],
    *,
    table: str,
    dry_run: bool,
    batch_size: int,
    progress: Progress | None = None,
) -> int:
    """Delete ``queryset`` ``batch_size`` rows per transaction (by primary key, so each batch is a
    short indexed DELETE on every backend); on a dry run only count. Returns the rows (to be) deleted."""
    if dry_run:
        return queryset.count()
    model: type[Model] = queryset.model
    deleted = 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            model._default_manager.filter(pk__in=ids).delete()
        deleted += len(ids)
        if progress is not None:
            progress(table, deleted)


def _closed_letters(before: datetime) -> QuerySet[DeadLetter]:
    closed = DeadLetter.objects.exclude(status__in=DeadLetter.OPEN_STATUSES)
    return closed.filter(Q(resolved_at__lt=before) | Q(resolved_at__isnull=True, updated_at__lt=before))


@dataclass(slots=True)
class PurgeOutcome:
    before: datetime
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def records_purge(
    *,
    older_than: timedelta,
    include_audit: bool = False,
    dry_run: bool = False,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> PurgeOutcome:
    """Delete records older than ``older_than``: closed dead letters (resolved / discarded; open
    letters never), breaker events, stored reliability reports, every registered app's rows (e.g.
    delivery attempts of finished reply jobs) and, only with ``include_audit``, audit entries.
    A dry run counts per table and deletes nothing."""
    if older_than < timedelta(hours=1):
        raise ValidationFailed(
            "Refusing to purge records younger than one hour.", details={"older_than": "Minimum 1h."}
        )
    if batch_size < 1:
        raise ValidationFailed("The batch size must be at least 1.", details={"batch_size": "Minimum 1."})
    before = timezone.now() - older_than
    outcome = PurgeOutcome(before=before, dry_run=dry_run)
    own: list[tuple[str, QuerySet[Any]]] = [
        ("reliability.deadletter", _closed_letters(before)),
        ("reliability.breakerevent", BreakerEvent.objects.filter(at__lt=before)),
        ("reliability.reliabilityreport", ReliabilityReport.objects.filter(created_at__lt=before)),
    ]
    if include_audit:
        own.append(("reliability.auditentry", AuditEntry.objects.filter(created_at__lt=before)))
    for table, qs in own:
        outcome.counts[table] = delete_in_batches(
            qs, table=table, dry_run=dry_run, batch_size=batch_size, progress=progress
        )
    for table, purger in sorted(_purgers.items()):
        outcome.counts[table] = purger(
            before=before, dry_run=dry_run, batch_size=batch_size, progress=progress
        )
    return outcome


def records_purge_retention(*, progress: Progress | None = None) -> PurgeOutcome:
    """Beat: purge what is older than ``RETENTION_DAYS`` (the audit log is kept: purge it by hand)."""
    return records_purge(older_than=timedelta(days=settings.RETENTION_DAYS), progress=progress)


def registered_purges() -> Iterable[str]:
    return sorted(_purgers)
