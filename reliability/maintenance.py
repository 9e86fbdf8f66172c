"""Upkeep services the management commands call: dead-letter retry by filter (the retention purge
of old records is ``reliability.retention``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from hotelbot.exceptions import ValidationFailed
from reliability import dead_letters
from reliability.models import AuditEntry, DeadLetter

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
