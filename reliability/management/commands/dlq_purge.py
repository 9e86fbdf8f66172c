from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from reliability import maintenance


class Command(BaseCommand):
    help = (
        "Delete old records: closed dead letters (resolved or discarded; never open ones), breaker "
        "events, stored reliability reports, delivery attempts of finished reply jobs, and the audit "
        "log only with --include-audit. Deletes in batches (one short transaction each) with "
        "progress. Exit codes: 0 done (or dry run); 1 bad input or refused (younger than 1h); "
        "2 usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            help="Delete records older than this, e.g. 7d, 12h, 2w (minimum 1h; default RETENTION_DAYS "
            f"= {settings.RETENTION_DAYS}d).",
        )
        parser.add_argument(
            "--include-audit", action="store_true", help="Also delete audit entries older than that."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print how many rows per table would go; delete nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Rows deleted per transaction (default 1000)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            older_than = (
                maintenance.parse_age(options["older_than"])
                if options["older_than"]
                else timedelta(days=settings.RETENTION_DAYS)
            )
            outcome = maintenance.records_purge(
                older_than=older_than,
                include_audit=options["include_audit"],
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
                progress=self._progress,
            )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        verb = "would delete" if outcome.dry_run else "deleted"
        self.stdout.write(f"records older than {outcome.before.isoformat(timespec='seconds')}:")
        width = max(len(table) for table in outcome.counts)
        for table, count in outcome.counts.items():
            self.stdout.write(f"  {table:<{width}} {count:>9}")
        line = f"{verb} {outcome.total} row(s)" + ("; nothing changed (dry run)" if outcome.dry_run else "")
        self.stdout.write(self.style.SUCCESS(line))

    def _progress(self, table: str, deleted: int) -> None:
        self.stdout.write(f"  {table}: {deleted} deleted so far")
