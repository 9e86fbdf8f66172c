"""``manage.py purge``: every table's rows past retention, in keyset batches (reliability.retention)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from reliability import retention


class Command(BaseCommand):
    help = (
        "Delete the rows kept past their retention (settings/retention.py; a hotel may set its guests' "
        "own): guests' messages with their reply jobs, conversations and guests left without messages, "
        "delivery attempts of finished jobs, deferred statuses, closed dead letters, breaker events, "
        "stored reports, audit entries. Rows still needed (a reply on its way, an open dead letter's "
        "job and messages) are never deleted. Keyset batches, one short transaction each, with "
        "progress. Beat runs the same daily. Exit codes: 0 done (or dry run); 1 bad input; 2 usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Print how many rows per table would go; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help=f"Rows per transaction (default RETENTION_BATCH_SIZE = {settings.RETENTION_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--table",
            action="append",
            default=[],
            metavar="APP.MODEL",
            help="Only this table (repeatable), e.g. messaging.message. Default: every table, in order: "
            + ", ".join(rule.table for rule in retention.rules())
            + ".",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            outcome = retention.purge(
                tables=options["table"],
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
                progress=None if options["dry_run"] else self._progress,
            )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        verb = "would delete" if outcome.dry_run else "deleted"
        self.stdout.write(f"retention as of {outcome.now.isoformat(timespec='seconds')} ({verb}):")
        width = max((len(t.table) for t in outcome.tables), default=0)
        for table in outcome.tables:
            self.stdout.write(f"  {table.table:<{width}} {table.rows:>9}   kept {table.kept}")
        line = f"{verb} {outcome.total} row(s)" + ("; nothing changed (dry run)" if outcome.dry_run else "")
        self.stdout.write(self.style.SUCCESS(line))

    def _progress(self, table: str, deleted: int) -> None:
        self.stdout.write(f"  {table}: {deleted} deleted so far")
