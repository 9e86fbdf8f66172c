"""The retention engine: every table's old rows deleted in keyset batches (beat and ``manage.py purge``).

A :class:`Rule` names a table, the rows of it that may go now (a queryset: old *and* no longer
needed) and, when it has one, an indexed time column that every deletable row is older than the
rule's horizon in (it bounds the scan). reliability's own tables (closed dead letters, breaker
events, stored reports, the audit log) are declared here; other apps register theirs at start-up
(:func:`register`; messaging: delivery attempts, guests' messages with their reply jobs,
conversations, guests without messages, deferred statuses), so the toolkit never imports the domain.

How a table is walked (the same on PostgreSQL and SQLite):

1. ``hi``: the newest row older than the horizon (``ORDER BY <time> DESC LIMIT 1`` on the time
   column's index), or the largest id when the rule has no time column. Rows younger than that
   are never scanned. This relies on ids growing with time (rows are inserted as things happen):
   an old row inserted after younger ones, past ``hi``, waits for a later run.
2. Windows of ``batch_size`` ids: ``SELECT id WHERE id > last AND id <= hi ORDER BY id LIMIT n``
   (an index-only range read; never an OFFSET, never a restart from the table's start), then one
   short transaction deletes ``rows WHERE id > last AND id <= window_end``: the rule's conditions
   are checked again in the DELETE itself, so a row that became needed meanwhile stays. On
   PostgreSQL the transaction turns JIT off (``SET LOCAL jit = off``): see :func:`_without_jit`. A rule's
   ``before_delete`` removes dependent rows first with the same bounded subquery (its own FK
   cascades: the engine deletes with one statement, never with Django's collector).
3. ``last`` moves to the window's end whether anything went or not, so rows kept (still needed)
   are passed once per run, never rescanned.

A dry run walks the same windows and counts. Each batch records ``hotelbot_retention_purged_rows_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Max, Model, Q, QuerySet
from django.utils import timezone

from hotelbot.exceptions import ValidationFailed
from reliability.metrics import RETENTION_PURGED
from reliability.models import AuditEntry, BreakerEvent, DeadLetter, ReliabilityReport

#: ``progress(table, rows_so_far)`` after each batch (the command prints it; beat passes None).
Progress = Callable[[str, int], None]
#: The largest batch a caller may ask for (a bigger one makes one long transaction again).
MAX_BATCH_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class Scope:
    """What a rule deletes as of a moment: the deletable rows and the horizon every one is older than."""

    rows: QuerySet[Any]
    horizon: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    table: str  # app_label.model
    kept: str  # for people: how long, e.g. "RETENTION_AUDIT_DAYS (365 d)"
    scope: Callable[[datetime], Scope]
    #: An indexed time column, older than the horizon on every deletable row (bounds the scan).
    time_field: str = ""
    #: Deletes (or detaches) the dependent rows of a window's deletable rows, in its transaction.
    before_delete: Callable[[QuerySet[Any]], None] | None = None


_rules: dict[str, Rule] = {}


def register(rule: Rule) -> None:
    """Called from an app's ``ready()``: its table goes with the purge, after those registered before."""
    _rules[rule.table] = rule


def rules() -> list[Rule]:
    return list(_rules.values())


def older_than(
    days_setting: str, model: type[Model], time_field: str, **extra: Any
) -> Callable[[datetime], Scope]:
    """The rows of ``model`` whose ``time_field`` is older than ``settings.<days_setting>`` days
    (and that match ``extra`` filters)."""

    def scope(now: datetime) -> Scope:
        horizon = now - timedelta(days=getattr(settings, days_setting))
        rows = model._default_manager.filter(**{f"{time_field}__lt": horizon}, **extra)
        return Scope(rows=rows, horizon=horizon)

    return scope


def kept(days_setting: str) -> str:
    return f"{days_setting} ({getattr(settings, days_setting)} d)"


# --- reliability's own tables ------------------------------------------------------------------------
def _closed_letters(now: datetime) -> Scope:
    """Resolved or discarded letters closed before the horizon; open letters never (a letter is
    created before it closes, so ``created_at`` bounds the scan)."""
    horizon = now - timedelta(days=settings.RETENTION_DEAD_LETTERS_DAYS)
    closed = DeadLetter.objects.exclude(status__in=DeadLetter.OPEN_STATUSES).filter(created_at__lt=horizon)
    rows = closed.filter(Q(resolved_at__lt=horizon) | Q(resolved_at__isnull=True, updated_at__lt=horizon))
    return Scope(rows=rows, horizon=horizon)


for _rule in (
    Rule("reliability.deadletter", kept("RETENTION_DEAD_LETTERS_DAYS"), _closed_letters, "created_at"),
    Rule(
        "reliability.breakerevent",
        kept("RETENTION_BREAKER_EVENTS_DAYS"),
        older_than("RETENTION_BREAKER_EVENTS_DAYS", BreakerEvent, "at"),
        "at",
    ),
    Rule(
        "reliability.reliabilityreport",
        kept("RETENTION_REPORTS_DAYS"),
        older_than("RETENTION_REPORTS_DAYS", ReliabilityReport, "created_at"),
        "created_at",
    ),
    Rule(
        "reliability.auditentry",
        kept("RETENTION_AUDIT_DAYS"),
        older_than("RETENTION_AUDIT_DAYS", AuditEntry, "created_at"),
        "created_at",
    ),
):
    register(_rule)


# --- the walk ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class TableOutcome:
    table: str
    kept: str
    rows: int = 0  # deleted (or, on a dry run, that would be)
    batches: int = 0


@dataclass(slots=True)
class PurgeOutcome:
    now: datetime
    dry_run: bool
    tables: list[TableOutcome] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {t.table: t.rows for t in self.tables}

    @property
    def total(self) -> int:
        return sum(t.rows for t in self.tables)


def _upper_id(rule: Rule, scope: Scope) -> int | None:
    model = scope.rows.model
    if rule.time_field and scope.horizon is not None:
        newest_old = model._default_manager.filter(**{f"{rule.time_field}__lt": scope.horizon})
        # The newest old row, the highest id among rows of that time (rows may share a timestamp).
        value = newest_old.order_by(f"-{rule.time_field}", "-pk").values_list("pk", flat=True).first()
    else:
        value = model._default_manager.aggregate(top=Max("pk"))["top"]
    return None if value is None else int(value)


def _without_jit(alias: str) -> None:
    """No JIT compilation for the rest of this transaction (PostgreSQL). A window's statements read
    and delete at most ``batch_size`` rows, but the planner costs their anti joins on the table's
    statistics (which also lag behind a purge) and compiled them: measured on bench-scale's year of
    1,000 hotels, a window's statement spent 1.0-1.4 s compiling what then ran in 60-90 ms."""
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


def _walk(
    rule: Rule, *, now: datetime, dry_run: bool, batch_size: int, progress: Progress | None
) -> TableOutcome:
    outcome = TableOutcome(table=rule.table, kept=rule.kept)
    scope = rule.scope(now)
    hi = _upper_id(rule, scope)
    if hi is None:
        return outcome
    model = scope.rows.model
    ids = model._default_manager.order_by("pk").values_list("pk", flat=True)
    last = 0
    while True:
        window_ids = list(ids.filter(pk__gt=last, pk__lte=hi)[:batch_size])
        if not window_ids:
            return outcome
        end = window_ids[-1]
        window = scope.rows.filter(pk__gt=last, pk__lte=end)
        alias = router.db_for_write(model)
        with transaction.atomic(using=alias):
            _without_jit(alias)
            if dry_run:
                count = window.count()
            else:
                if rule.before_delete is not None:
                    rule.before_delete(window)
                count = window._raw_delete(window.db)
        if count and not dry_run:
            RETENTION_PURGED.labels(table=rule.table).inc(count)
        outcome.rows += count
        outcome.batches += 1
        if progress is not None and count:
            progress(rule.table, outcome.rows)
        if len(window_ids) < batch_size:
            return outcome
        last = end


def purge(
    *,
    tables: Sequence[str] = (),
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> PurgeOutcome:
    """Delete (or, on a dry run, count) every registered table's rows past retention, in keyset
    batches of ``batch_size`` (default ``RETENTION_BATCH_SIZE``), one short transaction each.
    ``tables`` narrows it (app_label.model names; unknown ones are a ValidationFailed)."""
    size = settings.RETENTION_BATCH_SIZE if batch_size is None else batch_size
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise ValidationFailed(
            f"The batch size must be between 1 and {MAX_BATCH_SIZE} (got {size}).",
            details={"batch_size": f"1-{MAX_BATCH_SIZE}"},
        )
    chosen = _chosen(tables)
    outcome = PurgeOutcome(now=now or timezone.now(), dry_run=dry_run)
    for rule in chosen:
        outcome.tables.append(
            _walk(rule, now=outcome.now, dry_run=dry_run, batch_size=size, progress=progress)
        )
    return outcome


def _chosen(tables: Iterable[str]) -> list[Rule]:
    wanted = {t.strip().lower() for t in tables if t.strip()}
    unknown = sorted(wanted - set(_rules))
    if unknown:
        raise ValidationFailed(
            f"Unknown table {', '.join(unknown)}; choose from {', '.join(_rules)}.",
            details={"table": list(_rules)},
        )
    return [rule for table, rule in _rules.items() if not wanted or table in wanted]
