"""Fixtures of the messaging tests (services and the webhook API)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection

from messaging.services import inbound_sql
from messaging.tasks import process_reply_job


@pytest.fixture(params=["statement", "orm"])
def intake_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each intake path: PostgreSQL's one statement, and the ORM path (SQLite's; forced on PostgreSQL)."""
    if request.param == "statement":
        if connection.vendor != "postgresql":
            pytest.skip("the one-statement path is PostgreSQL's")
        assert inbound_sql.available()
    else:
        monkeypatch.setattr(inbound_sql, "available", lambda: False)
    return str(request.param)


@pytest.fixture
def recording_broker(monkeypatch) -> SimpleNamespace:
    """Records publishes of process_reply_job; ``down = True`` makes publishing fail."""
    state = SimpleNamespace(down=False, published=[])

    def apply_async(args: tuple[int], countdown: float = 0.0, **_: Any) -> SimpleNamespace:
        if state.down:
            raise ConnectionRefusedError("broker down")
        state.published.append(args[0])
        return SimpleNamespace(id=f"task-{len(state.published)}")

    monkeypatch.setattr(process_reply_job, "apply_async", apply_async)
    return state
