"""Beat's scheduler (reliability/scheduler.py): django-celery-beat's, with the schedule-change check
paced and due entries skipped while their idle check finds nothing to do."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery import current_app
from django_celery_beat.schedulers import DatabaseScheduler

from reliability import scheduler


class _Entry:
    def __init__(self, task: str) -> None:
        self.name, self.task = f"entry of {task}", task


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """The tasks the scheduler publishes (django-celery-beat's apply_entry, recorded)."""
    published: list[str] = []

    def apply_entry(self: Any, entry: Any, producer: Any = None) -> None:
        published.append(entry.task)

    monkeypatch.setattr(DatabaseScheduler, "apply_entry", apply_entry)
    monkeypatch.setattr(scheduler, "_idle_checks", {})
    return published


def _scheduler() -> scheduler.Scheduler:
    beat = scheduler.Scheduler(app=current_app, lazy=True)
    beat._finalize.cancel()  # no sync of its entries at exit, after the test database is gone
    return beat


def test_a_due_entry_whose_idle_check_finds_nothing_is_not_published(sent):
    work = {"parked": 0}
    scheduler.register_idle_check("app.drain", lambda: work["parked"] > 0)
    beat = _scheduler()

    beat.apply_entry(_Entry("app.drain"))
    beat.apply_entry(_Entry("app.sweep"))  # no idle check: published as always
    assert sent == ["app.sweep"]

    work["parked"] = 3  # work appears: the next due run publishes
    beat.apply_entry(_Entry("app.drain"))
    assert sent == ["app.sweep", "app.drain"]


@pytest.mark.django_db  # a failed check drops the beat process's database connection
def test_a_failing_idle_check_publishes_as_without_one(sent, caplog):
    def broken() -> bool:
        raise RuntimeError("database away")

    scheduler.register_idle_check("app.drain", broken)
    _scheduler().apply_entry(_Entry("app.drain"))
    assert sent == ["app.drain"]
    assert "idle check of app.drain failed" in caplog.text


def test_schedule_changes_are_looked_for_at_most_every_interval(monkeypatch, settings):
    looked: list[float] = []
    clock = {"now": 1000.0}

    def schedule_changed(self: Any) -> bool:
        looked.append(clock["now"])
        return False

    monkeypatch.setattr(DatabaseScheduler, "schedule_changed", schedule_changed)
    monkeypatch.setattr(scheduler.time, "monotonic", lambda: clock["now"])
    settings.BEAT_SCHEDULE_CHECK_INTERVAL = 5.0
    beat = _scheduler()

    for step in range(12):  # beat ticks every second
        clock["now"] = 1000.0 + step
        beat.schedule_changed()
    assert looked == [1000.0, 1005.0, 1010.0]  # a change in admin reaches beat within 5 s, as before


@pytest.mark.django_db(transaction=True)  # the scheduler commits and recycles its connection
def test_beat_sleeps_until_the_next_run_instead_of_spinning_before_it(sent):
    # Given an entry due every 0.25 s (beat's loop: tick, sleep what it says, tick again)
    beat = _scheduler()
    beat.update_from_dict({"test.every_quarter": {"task": "app.quarter", "schedule": 0.25}})
    ticks, started = 0, time.monotonic()
    while time.monotonic() - started < 1.2:
        pause = beat.tick()
        ticks += 1
        if pause and pause > 0:
            time.sleep(pause)
    # Then each run costs a couple of ticks: Celery's 10 ms early wake-up used to re-file a not yet
    # due entry in the past and tick again at once, about 40 times before every run.
    assert 3 <= len(sent) <= 6
    assert ticks <= 3 * len(sent) + 3, ticks
