"""Pieces of the hand-written SQL of the webhook's hot statements (``inbound_sql``, ``statuses``):
identifiers from the models, and the transaction a single statement runs in."""

from __future__ import annotations

import functools
from collections.abc import Sequence
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


@functools.cache
def _insert_statement(model: type[Model], rows: int) -> tuple[str, tuple[Field, ...]]:
    qn = connection.ops.quote_name
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    row = f"({', '.join(['%s'] * len(fields))})"
    columns = ", ".join(qn(f.column) for f in fields)
    # Identifiers from the model, quoted by the backend; every value is a parameter.
    sql = f"INSERT INTO {qn(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"  # noqa: S608
    return sql, fields


def insert_rows(objs: Sequence[Model]) -> None:
    """INSERT unsaved ``objs`` of one model in one statement, each value prepared as the ORM's
    INSERT prepares it (defaults, ``auto_now_add``, ``get_db_prep_save``), without the transaction
    ``bulk_create`` opens around it (BEGIN and COMMIT: two more round trips in autocommit). Their
    primary keys are not read back."""
    if not objs:
        return
    sql, fields = _insert_statement(type(objs[0]), len(objs))
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
