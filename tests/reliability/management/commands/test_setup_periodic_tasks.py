"""manage.py setup_periodic_tasks: every beat entry declared, idempotent, updates, dry run, prune."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from celery.schedules import crontab
from django.core.management import CommandError, call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from reliability.periodic_tasks import PRUNED_NOTE

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("setup_periodic_tasks", *args, stdout=out)
    return out.getvalue()


def snapshot() -> list[tuple]:
    return list(
        PeriodicTask.objects.order_by("name").values_list(
            "name", "task", "interval__every", "crontab__minute", "crontab__hour", "enabled", "date_changed"
        )
    )


def test_declares_every_beat_entry_then_changes_nothing(settings):
    out = run()
    declared = settings.CELERY_BEAT_SCHEDULE
    assert set(PeriodicTask.objects.values_list("name", flat=True)) == set(declared)
    assert f"{len(declared)} created" in out
    for name, entry in declared.items():
        row = PeriodicTask.objects.get(name=name)
        assert row.task == entry["task"]
        assert row.enabled
        if isinstance(entry["schedule"], crontab):
            assert row.crontab is not None
            assert row.interval is None
        else:
            assert row.interval is not None
            assert (row.interval.every, row.interval.period) == (round(entry["schedule"]), "seconds")
    hourly = PeriodicTask.objects.get(name="reliability.reliability_report_hourly").crontab
    assert (hourly.minute, hourly.hour) == ("5", "*")
    daily = PeriodicTask.objects.get(name="reliability.purge_old_records").crontab
    assert (daily.minute, daily.hour) == ("30", "3")
    # when run again
    before = snapshot()
    schedules_before = (IntervalSchedule.objects.count(), CrontabSchedule.objects.count())
    again = run()
    assert snapshot() == before
    assert (IntervalSchedule.objects.count(), CrontabSchedule.objects.count()) == schedules_before
    assert f"0 created, 0 updated, {len(declared)} unchanged, 0 pruned" in again
    assert "reliability.redrive_dead_letters: unchanged" in again


def test_a_changed_interval_or_crontab_is_updated(settings):
    run()
    schedule = copy.deepcopy(settings.CELERY_BEAT_SCHEDULE)
    schedule["reliability.redrive_dead_letters"]["schedule"] = 120.0
    schedule["reliability.purge_old_records"]["schedule"] = crontab(minute="0", hour="4")
    settings.CELERY_BEAT_SCHEDULE = schedule
    out = run()
    assert "reliability.redrive_dead_letters: updated (schedule)" in out
    assert "reliability.purge_old_records: updated (schedule)" in out
    assert PeriodicTask.objects.get(name="reliability.redrive_dead_letters").interval.every == 120
    assert PeriodicTask.objects.get(name="reliability.purge_old_records").crontab.hour == "4"
    assert "0 updated" in run()


def test_dry_run_writes_nothing():
    out = run("--dry-run")
    assert "messaging.sweep_reply_jobs: would be created" in out
    assert "dry run: nothing written" in out
    assert not PeriodicTask.objects.exists()
    assert not IntervalSchedule.objects.exists()
    assert not CrontabSchedule.objects.exists()


def test_prune_disables_undeclared_tasks_and_redeclaring_enables_them(settings):
    run()
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.create(name="old.renamed_task", task="reliability.tasks.gone", interval=every_minute)
    PeriodicTask.objects.create(
        name="celery.backend_cleanup", task="celery.backend_cleanup", interval=every_minute
    )
    assert "old.renamed_task" not in run()  # without --prune nothing else is touched
    assert "old.renamed_task: would be disabled" in run("--prune", "--dry-run")
    assert PeriodicTask.objects.get(name="old.renamed_task").enabled
    out = run("--prune")
    assert "old.renamed_task: disabled (no longer declared)" in out
    gone = PeriodicTask.objects.get(name="old.renamed_task")
    assert (gone.enabled, gone.description) == (False, PRUNED_NOTE)
    assert PeriodicTask.objects.get(name="celery.backend_cleanup").enabled  # celery's own row
    # the code declares it again: enabled again
    settings.CELERY_BEAT_SCHEDULE = {
        **settings.CELERY_BEAT_SCHEDULE,
        "old.renamed_task": {"task": "reliability.tasks.gone", "schedule": 60.0},
    }
    assert "old.renamed_task: updated (enabled)" in run()
    assert PeriodicTask.objects.get(name="old.renamed_task").enabled


def test_a_task_staff_disabled_stays_disabled():
    run()
    PeriodicTask.objects.filter(name="messaging.purge_deferred_statuses").update(enabled=False)
    out = run("--prune")
    assert "messaging.purge_deferred_statuses: disabled in admin (left disabled)" in out
    assert not PeriodicTask.objects.get(name="messaging.purge_deferred_statuses").enabled


def test_an_entry_that_cannot_be_declared_is_a_command_error_and_writes_nothing(settings):
    settings.CELERY_BEAT_SCHEDULE = {
        **settings.CELERY_BEAT_SCHEDULE,
        "broken": {"task": "x.y", "schedule": "banana"},
    }
    with pytest.raises(CommandError, match="neither seconds nor a crontab"):
        run()
    assert not PeriodicTask.objects.exists()
