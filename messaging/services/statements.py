"""Pieces of the hand-written SQL of the webhook's hot statements (``inbound_sql``, ``statuses``):
identifiers from the models, and the transaction a single statement runs in."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from django.db import connection, transaction
from django.db.models import Field, Model


def model_field(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def column(model: type[Model], name: str) -> str:
    """The quoted column of ``model``'s field ``name``."""
    field = model_field(model, name)
    assert field.column
    return connection.ops.quote_name(field.column)


def own_transaction() -> AbstractContextManager[object]:
    """Around one statement: in a caller's transaction a savepoint, so a refused statement does not
    break it; alone nothing, the statement is its own transaction (a BEGIN/COMMIT around it would
    cost two round trips)."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()
