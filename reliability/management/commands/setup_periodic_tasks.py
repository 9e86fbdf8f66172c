from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from reliability import periodic_tasks


class Command(BaseCommand):
    help = (
        "Declare every entry of settings.CELERY_BEAT_SCHEDULE as a django-celery-beat periodic task "
        "(interval in seconds, or crontab): create the missing, update changed schedules, leave the "
        "rest unchanged (idempotent; run it after migrate). A task staff disabled in admin stays "
        "disabled. Exit codes: 0 ok; 1 an entry cannot be declared; 2 usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; write nothing.")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Also disable enabled periodic tasks that CELERY_BEAT_SCHEDULE no longer declares "
            "(celery.* rows excepted); re-declaring one enables it again.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            outcome = periodic_tasks.periodic_tasks_sync(
                schedule=settings.CELERY_BEAT_SCHEDULE, dry_run=options["dry_run"], prune=options["prune"]
            )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        prefix = "would be " if outcome.dry_run else ""
        for name in outcome.created:
            self.stdout.write(f"{name}: {prefix}created")
        for name, fields in outcome.updated.items():
            self.stdout.write(f"{name}: {prefix}updated ({', '.join(fields)})")
        for name in outcome.unchanged:
            self.stdout.write(f"{name}: unchanged")
        for name in outcome.left_disabled:
            self.stdout.write(f"{name}: disabled in admin (left disabled)")
        for name in outcome.pruned:
            self.stdout.write(f"{name}: {prefix}disabled (no longer declared)")
        summary = (
            f"{len(outcome.created)} created, {len(outcome.updated)} updated, "
            f"{len(outcome.unchanged)} unchanged, {len(outcome.pruned)} pruned"
        )
        if outcome.dry_run:
            summary += " (dry run: nothing written)"
        self.stdout.write(self.style.SUCCESS(summary))
