"""Pieces of the hand-written SQL of the hot statements (the webhook's ``inbound_sql``, ``statuses``;
the reply job's): identifiers from the models, the transaction a single statement runs in, and
reads the ORM builds and compiles once per process (``prepared_read``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import Field, Model, QuerySet
from django.db.models import query as orm_query
from django.db.models.query import ModelIterable, ValuesListIterable
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.subqueries import UpdateQuery


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


def insert_row(obj: Model) -> None:
    """``obj.save(force_insert=True)`` for a new row of a model without save hooks or signals of
    its own: one INSERT written once per model (``RETURNING`` its primary key), without the save
    machinery and the compilation of the ORM's INSERT. ``obj`` gets its primary key and is no
    longer "adding", as after a save."""
    sql, fields = _insert_statement(type(obj), 1)
    meta = type(obj)._meta
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(meta.pk.column)}", params)
        row = cursor.fetchone()
    assert row is not None
    setattr(obj, meta.pk.attname, meta.pk.to_python(row[0]))
    obj._state.adding = False
    obj._state.db = DEFAULT_DB_ALIAS


@functools.cache
def _update_statement(model: type[Model], names: tuple[str, ...], conditions: tuple[str, ...]) -> str:
    qn = connection.ops.quote_name
    sets = ", ".join(f"{column(model, name)} = %s" for name in names)
    where = " AND ".join(f"{column(model, name)} = %s" for name in (model._meta.pk.name, *conditions))
    # Identifiers from the model, quoted by the backend; every value is a parameter.
    return f"UPDATE {qn(model._meta.db_table)} SET {sets} WHERE {where}"  # noqa: S608


def update_row(
    model: type[Model], pk: int, values: dict[str, Any], *, where: dict[str, Any] | None = None
) -> int:
    """``model.objects.filter(pk=pk, **where).update(**values)`` for plain values (no expressions;
    a model instance stands for its key) and equality conditions, the statement written once per
    model, fields and conditions; returns the number of rows updated."""
    where = where or {}

    def prepared(name: str, value: Any) -> Any:
        value = value.pk if isinstance(value, Model) else value
        return model_field(model, name).get_db_prep_save(value, connection)

    sql = _update_statement(model, tuple(values), tuple(where))
    params = [prepared(name, v) for name, v in values.items()]
    params += [pk, *(prepared(name, v) for name, v in where.items())]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# --- statements compiled once per process --------------------------------------------------------
#: Stand-ins for the arguments of a prepared statement while the ORM compiles it: values no query of
#: ours holds as a constant, found again among the compiled parameters.
_INT_STAND_IN = -987_654_321
_STR_STAND_IN = "\x00prepared-argument-"
_DATETIME_STAND_IN = datetime(1901, 2, 3, 4, 5, 6, tzinfo=UTC)

Row = TypeVar("Row")
Argument = int | str | datetime
#: How an argument reaches the SQL: as given (None), or through the conversion the ORM applied to
#: its stand-in (a datetime column's adaptation: SQLite's backend passes text; psycopg's ``Int8``
#: that Django wraps a big integer key's lookup value in on PostgreSQL).
Convert = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    #: (parameter index, argument index, conversion) of every argument's place among the parameters.
    slots: tuple[tuple[int, int, Convert], ...]
    compiler: SQLCompiler
    #: For a model queryset: the model, its fields' attnames, where its columns start and end, and
    #: the ``select_related`` populators; None for ``values_list`` (rows as tuples) and UPDATEs.
    model: type[Model] | None = None
    init_list: tuple[str, ...] = ()
    model_span: tuple[int, int] = (0, 0)
    related: tuple[Any, ...] = ()


def _stand_in(index: int, kind: type) -> Argument:
    if kind is int:
        return _INT_STAND_IN - index
    if kind is datetime:
        return _DATETIME_STAND_IN + timedelta(microseconds=index)
    return f"{_STR_STAND_IN}{index}"


def _slots(
    sql: str, params: Sequence[Any], stand_ins: list[Argument]
) -> tuple[tuple[int, int, Convert], ...]:
    adapt = connection.ops.adapt_datetimefield_value
    slots: list[tuple[int, int, Convert]] = []
    for p, param in enumerate(params):
        for a, stand_in in enumerate(stand_ins):
            if type(param) is type(stand_in) and param == stand_in:
                slots.append((p, a, None))
            elif isinstance(stand_in, int) and isinstance(param, int) and param == stand_in:
                slots.append((p, a, type(param)))  # an int subclass: the driver's typed integer
            elif isinstance(stand_in, datetime) and param == adapt(stand_in):
                slots.append((p, a, adapt))
    missing = set(range(len(stand_ins))) - {a for _, a, _how in slots}
    if missing:  # an argument the ORM transformed (a str to a number, a value to a LIKE pattern)
        raise ValueError(f"prepared statement: arguments {sorted(missing)} are not plain parameters of {sql}")
    return tuple(slots)


def _params(compiled: _Compiled, args: Sequence[Argument]) -> list[Any]:
    params = list(compiled.params)
    for p, a, convert in compiled.slots:
        params[p] = args[a] if convert is None else convert(args[a])
    return params


@functools.cache
def _compile(build: Callable[..., QuerySet[Any]], kinds: tuple[type, ...], alias: str) -> _Compiled:
    stand_ins = [_stand_in(i, kind) for i, kind in enumerate(kinds)]
    queryset = build(*stand_ins).using(alias)
    iterable = queryset._iterable_class
    if (
        getattr(queryset, "_known_related_objects", None)
        or queryset.query.annotations
        or queryset.query.extra
    ):
        raise ValueError("a prepared read supports filters, orderings, slices and select_related only")
    if iterable is not ModelIterable and iterable is not ValuesListIterable:
        raise ValueError(f"a prepared read yields models or values_list tuples, not {iterable.__name__}")
    compiler = queryset.query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    slots = _slots(sql, params, stand_ins)
    if iterable is not ModelIterable:
        return _Compiled(sql, tuple(params), slots, compiler)
    select, klass_info = compiler.select, compiler.klass_info
    assert klass_info is not None
    fields = klass_info["select_fields"]
    span = (fields[0], fields[-1] + 1)
    init_list = tuple(f[0].target.attname for f in select[span[0] : span[1]])
    related = tuple(orm_query.get_related_populators(klass_info, select, alias))  # type: ignore[attr-defined]
    return _Compiled(sql, tuple(params), slots, compiler, klass_info["model"], init_list, span, related)


@functools.cache
def _compile_update(
    build: Callable[..., tuple[QuerySet[Any], dict[str, Any]]], kinds: tuple[type, ...], alias: str
) -> _Compiled:
    stand_ins = [_stand_in(i, kind) for i, kind in enumerate(kinds)]
    queryset, values = build(*stand_ins)
    query = cast(UpdateQuery, queryset.using(alias).query.chain(UpdateQuery))
    query.add_update_values(values)
    query.annotations = {}
    if query.related_updates or query.order_by or query.is_sliced:
        raise ValueError("a prepared update writes the fields of one model, unordered, unsliced")
    compiler = query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    return _Compiled(sql, tuple(params), _slots(sql, params, stand_ins), compiler)


def prepared_update(build: Callable[..., tuple[QuerySet[Any], dict[str, Any]]], *args: Argument) -> int:
    """``queryset.update(**values)`` of ``(queryset, values) = build(*args)``, with the UPDATE
    built and compiled by the ORM once per process (per ``build`` and argument types); returns the
    number of rows updated. The rules of :func:`prepared_read` apply to ``build``."""
    compiled = _compile_update(build, tuple(type(a) for a in args), DEFAULT_DB_ALIAS)
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, _params(compiled, args))
        return cursor.rowcount


def prepared_read(build: Callable[..., QuerySet[Any, Row]], *args: Argument) -> list[Row]:
    """``list(build(*args))``, with the query built and compiled by the ORM once per process (per
    ``build`` and argument types) instead of on every call: on a hot path that is most of a read's
    CPU (a five-table ``select_related`` costs ~1 ms to compile, ~0.1 ms to run).

    ``build`` must be a function made once (the cache's key: a module-level one, or one cached
    per shape) whose arguments (ints, strings, aware datetimes) each reach the SQL as plain
    parameters (``pk=arg``, ``pk__lt=arg``, ``field=arg``; a datetime as its column's value),
    never transformed or inlined (a slice's bounds are inlined: make them part of ``build``, e.g.
    one function per limit; an unused argument is refused, as a transformed one). Rows become model
    instances exactly as the ORM makes them (``from_db``, the fields' converters, ``select_related``
    caches), or tuples for a ``values_list`` queryset."""
    compiled = _compile(build, tuple(type(a) for a in args), DEFAULT_DB_ALIAS)
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, _params(compiled, args))
        rows = cursor.fetchall()
    if not rows:
        return []
    results = compiled.compiler.results_iter(results=[rows], tuple_expected=compiled.model is None)
    if compiled.model is None:
        return cast(list[Row], list(results))
    start, end = compiled.model_span
    objs: list[Any] = []
    for row in results:
        obj = compiled.model.from_db(DEFAULT_DB_ALIAS, list(compiled.init_list), row[start:end])
        for populator in compiled.related:
            populator.populate(row, obj)
        objs.append(obj)
    return objs
