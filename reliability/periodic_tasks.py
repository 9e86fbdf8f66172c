"""Declare the code's beat schedule (``settings.CELERY_BEAT_SCHEDULE``) as django-celery-beat rows.

django-celery-beat's ``DatabaseScheduler`` also writes these rows, but only when beat starts
(``setup_schedule`` → ``update_from_dict``), and it never disables a task the code no longer
declares. Running this after ``migrate`` (a release step, a Kubernetes Job) makes the rows exist,
right, before beat starts: staff can see and pause them in admin, CI can check them, and
``prune`` disables the tasks that were dropped or renamed in code (beat would keep firing them).

The code is the source of truth for *what* runs and *when*; staff own *whether* (``enabled``):
a task staff disabled stays disabled, except one this module disabled itself with ``prune``,
which is re-enabled when the code declares it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery import schedules
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from hotelbot.exceptions import ValidationFailed

PRUNED_NOTE = "Disabled by setup_periodic_tasks --prune: no longer in CELERY_BEAT_SCHEDULE."
#: Rows of these prefixes are celery's own (beat installs ``celery.backend_cleanup``): never pruned.
SYSTEM_PREFIXES = ("celery.",)
_CRON_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
_OPTION_FIELDS = ("queue", "exchange", "routing_key", "priority", "expire_seconds")


@dataclass(slots=True)
class SyncOutcome:
    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)  # name → changed fields
    unchanged: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    left_disabled: list[str] = field(default_factory=list)  # declared, but disabled by staff
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.pruned)


@dataclass(frozen=True, slots=True)
class _Desired:
    task: str
    interval_seconds: int | None
    crontab: dict[str, str] | None
    args: str
    kwargs: str
    options: dict[str, Any]


def _desired(name: str, entry: Mapping[str, Any]) -> _Desired:
    task = entry.get("task")
    if not task:
        raise ValidationFailed(f"Beat entry {name!r} names no task.", details={name: "task missing"})
    schedule = entry.get("schedule")
    interval: int | None = None
    cron: dict[str, str] | None = None
    if isinstance(schedule, int | float | timedelta) and not isinstance(schedule, bool):
        seconds = schedule.total_seconds() if isinstance(schedule, timedelta) else float(schedule)
        # IntervalSchedule.every is an integer: round, and never below one second.
        interval = max(1, round(seconds))
    elif isinstance(schedule, schedules.crontab):
        # The fields as written (what django-celery-beat's CrontabSchedule.from_schedule stores).
        cron = {key: str(getattr(schedule, f"_orig_{key}")) for key in _CRON_FIELDS}
        cron["timezone"] = str(getattr(schedule, "tz", None) or "UTC")
    else:
        raise ValidationFailed(
            f"Beat entry {name!r}: schedule {schedule!r} is neither seconds nor a crontab.",
            details={name: "unsupported schedule"},
        )
    options = dict(entry.get("options") or {})
    return _Desired(
        task=str(task),
        interval_seconds=interval,
        crontab=cron,
        args=json.dumps(list(entry.get("args") or [])),
        kwargs=json.dumps(dict(entry.get("kwargs") or {})),
        options={k: options.get(k) for k in _OPTION_FIELDS},
    )


def _diff(row: PeriodicTask, want: _Desired) -> list[str]:
    changed = []
    if row.task != want.task:
        changed.append("task")
    if want.interval_seconds is not None:
        interval = row.interval
        same = (
            interval is not None
            and interval.period == IntervalSchedule.SECONDS
            and interval.every == want.interval_seconds
        )
        if not same or row.crontab_id is not None:
            changed.append("schedule")
    else:
        assert want.crontab is not None
        cron = row.crontab
        have = (
            None
            if cron is None
            else {
                "minute": cron.minute,
                "hour": cron.hour,
                "day_of_week": cron.day_of_week,
                "day_of_month": cron.day_of_month,
                "month_of_year": cron.month_of_year,
                "timezone": str(cron.timezone),
            }
        )
        if have != want.crontab or row.interval_id is not None:
            changed.append("schedule")
    if json.loads(row.args or "[]") != json.loads(want.args):
        changed.append("args")
    if json.loads(row.kwargs or "{}") != json.loads(want.kwargs):
        changed.append("kwargs")
    changed += [k for k, v in want.options.items() if getattr(row, k) != v]
    if row.solar_id is not None or row.clocked_id is not None:
        changed.append("schedule")
    return sorted(set(changed))


def _apply(row: PeriodicTask, want: _Desired) -> None:
    row.task = want.task
    row.interval = row.crontab = row.solar = row.clocked = None
    if want.interval_seconds is not None:
        row.interval, _ = IntervalSchedule.objects.get_or_create(
            every=want.interval_seconds, period=IntervalSchedule.SECONDS
        )
    else:
        assert want.crontab is not None
        existing = CrontabSchedule.objects.filter(**want.crontab).first()
        row.crontab = existing or CrontabSchedule.objects.create(**want.crontab)
    row.args, row.kwargs = want.args, want.kwargs
    for key, value in want.options.items():
        setattr(row, key, value)


def periodic_tasks_sync(
    *, schedule: Mapping[str, Mapping[str, Any]], dry_run: bool = False, prune: bool = False
) -> SyncOutcome:
    """Make django-celery-beat's PeriodicTask rows match ``schedule`` (name → Celery beat entry):
    create the missing, update changed task / schedule / args / options, leave the rest alone
    (idempotent), and with ``prune`` disable the enabled rows the schedule no longer declares.
    A dry run computes the same outcome and writes nothing."""
    wanted = {name: _desired(name, entry) for name, entry in schedule.items()}  # validate all first
    outcome = SyncOutcome(dry_run=dry_run)
    with transaction.atomic():
        rows = {row.name: row for row in PeriodicTask.objects.select_for_update().filter(name__in=wanted)}
        for name, want in sorted(wanted.items()):
            row = rows.get(name)
            if row is None:
                outcome.created.append(name)
                if not dry_run:
                    row = PeriodicTask(name=name, enabled=True)
                    _apply(row, want)
                    row.save()
                continue
            changes = _diff(row, want)
            revive = not row.enabled and row.description == PRUNED_NOTE
            if revive:
                changes.append("enabled")
            elif not row.enabled:
                outcome.left_disabled.append(name)
            if not changes:
                outcome.unchanged.append(name)
                continue
            outcome.updated[name] = changes
            if not dry_run:
                _apply(row, want)
                if revive:
                    row.enabled, row.description = True, ""
                row.save()
        if prune:
            stale = PeriodicTask.objects.select_for_update().filter(enabled=True).exclude(name__in=wanted)
            for row in stale.order_by("name"):
                if row.name.startswith(SYSTEM_PREFIXES):
                    continue
                outcome.pruned.append(row.name)
                if not dry_run:
                    row.enabled, row.description = False, PRUNED_NOTE
                    row.save()
    return outcome
