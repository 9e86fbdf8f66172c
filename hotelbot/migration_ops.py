"""Migration operations for big tables (issue 18): indexes built without locking writes.

On PostgreSQL an index is built ``CONCURRENTLY`` (the webhook keeps inserting while it builds;
the migration must say ``atomic = False``); on SQLite, the embedded default, plainly. The model
state is the same on both (``AddIndex``), so ``makemigrations`` sees nothing to do.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, migrations

logger = logging.getLogger(__name__)


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """``AddIndex``, built ``CONCURRENTLY`` on PostgreSQL (as ``AddIndexConcurrently``), plainly elsewhere."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)
        return None

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)
        return None


class PostgresOnlySQL(migrations.RunSQL):
    """SQL run on PostgreSQL only (an extension, an expression index); ``optional`` statements that
    fail (e.g. ``CREATE EXTENSION`` without the privilege) are logged and skipped, not fatal."""

    def __init__(self, sql: list[str], reverse_sql: list[str], *, optional: bool = False) -> None:
        super().__init__(list(sql), list(reverse_sql))
        self.statements, self.reverse_statements, self.optional = list(sql), list(reverse_sql), optional

    def _run(self, schema_editor: Any, statements: list[str]) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            try:
                schema_editor.execute(statement, params=None)
            except DatabaseError:
                if not self.optional:
                    raise
                logger.warning("migration: skipped %r (not permitted here)", statement, exc_info=True)
                return

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(schema_editor, self.statements)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(schema_editor, self.reverse_statements)
