"""Fixtures of the messaging tests (services and the webhook API)."""

from __future__ import annotations

import pytest
from django.db import connection

from messaging.services import inbound_sql


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
