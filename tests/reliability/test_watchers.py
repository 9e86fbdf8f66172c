"""The beat process's watch thread (reliability/watchers.py): quick checks every few seconds with
no broker round trip, sleeping in between (no busy loop), surviving a failing check."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator

import pytest
from celery.signals import beat_init

from reliability import watchers


@pytest.fixture
def only_these_watches(monkeypatch) -> Iterator[dict[str, watchers.Watch]]:
    registered: dict[str, watchers.Watch] = {}
    monkeypatch.setattr(watchers, "_watches", registered)
    yield registered
    watchers.stop()
    monkeypatch.setattr(watchers, "_thread", None)


def _recorder(runs: list[str], name: str, *, acted: int = 0) -> Callable[[], int]:
    def run() -> int:
        runs.append(name)
        return acted

    return run


def test_each_watch_runs_when_due_and_the_pause_is_until_the_next(only_these_watches):
    runs: list[str] = []
    watchers.register_watch("fast", _recorder(runs, "fast"), interval=lambda: 2.0)
    watchers.register_watch("slow", _recorder(runs, "slow", acted=1), interval=lambda: 10.0)
    watchers.register_watch("off", _recorder(runs, "off"), interval=lambda: 0.0)

    pause = watchers.run_due(now=100.0)
    assert runs == ["fast", "slow"]
    assert 0 < pause <= 2.0
    watchers.run_due(now=101.0)
    assert runs == ["fast", "slow"]  # nothing due
    watchers.run_due(now=102.0)
    assert runs == ["fast", "slow", "fast"]
    watchers.run_due(now=110.0)
    assert runs == ["fast", "slow", "fast", "fast", "slow"]


@pytest.mark.django_db  # a failed run drops the thread's database connection
def test_a_failing_watch_is_logged_and_the_others_still_run(only_these_watches, caplog):
    runs: list[str] = []

    def broken() -> int:
        raise RuntimeError("database away")

    watchers.register_watch("broken", broken, interval=lambda: 1.0)
    watchers.register_watch("fine", _recorder(runs, "fine"), interval=lambda: 1.0)
    watchers.run_due(now=5.0)
    assert runs == ["fine"]
    assert "watch broken failed: RuntimeError: database away" in caplog.text


def test_with_no_watch_enabled_the_thread_sleeps_long(only_these_watches):
    watchers.register_watch("off", lambda: 0, interval=lambda: 0.0)
    assert watchers.run_due(now=1.0) == watchers.IDLE_PAUSE


def test_the_thread_starts_once_runs_its_watches_and_stops(only_these_watches):
    ran = threading.Event()

    def probe() -> int:
        ran.set()
        return 0

    watchers.register_watch("probe", probe, interval=lambda: 0.05)
    assert watchers.start() is True
    assert watchers.start() is False  # one thread per process
    assert ran.wait(5)
    watchers.stop()
    assert watchers._thread is not None
    assert not watchers._thread.is_alive()


def test_no_thread_without_watches(only_these_watches):
    assert watchers.start() is False


def test_beat_starts_the_thread():
    receivers = [ref() if isinstance(ref, weakref.ref) else ref for _, ref in beat_init.receivers]
    assert watchers.start in receivers
