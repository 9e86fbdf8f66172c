from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console import tenancy
from hotelbot.exceptions import HotelbotError
from reliability import maintenance
from reliability.models import DeadLetter

OPEN = [str(s) for s in DeadLetter.OPEN_STATUSES]


class Command(BaseCommand):
    help = (
        "Retry (redrive) open dead letters chosen by filters, oldest first, through the same "
        "pipeline as the first try (so nothing is delivered twice); one audit row for the batch. "
        "Exit codes: 0 every chosen letter was retried or resolved (or none matched); 1 bad input, "
        "an unknown --as user, or at least one letter refused (the first errors are printed); "
        "2 usage error (unknown option or choice)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--kind",
            action="append",
            default=[],
            choices=DeadLetter.Kind.values,
            help="Only this kind (repeatable).",
        )
        parser.add_argument(
            "--category",
            action="append",
            default=[],
            choices=DeadLetter.Category.values,
            help="Only this failure category (repeatable).",
        )
        parser.add_argument(
            "--dependency",
            action="append",
            default=[],
            help="Only this dependency, e.g. green_api (repeatable).",
        )
        parser.add_argument(
            "--status",
            action="append",
            default=[],
            choices=OPEN,
            help="Only this status (repeatable; default pending; manual = parked for a human).",
        )
        parser.add_argument("--hotel", type=int, help="Only letters of this hotel (its id).")
        parser.add_argument(
            "--older-than", help="Only letters recorded longer ago than this, e.g. 30m, 1h, 7d."
        )
        parser.add_argument(
            "--id", dest="ids", action="append", type=int, default=[], help="Only this letter (repeatable)."
        )
        parser.add_argument("--limit", type=int, help="Retry at most this many (oldest first).")
        parser.add_argument(
            "--dry-run", action="store_true", help="List the letters that would be retried; change nothing."
        )
        parser.add_argument("--reason", default="", help="Why (kept in the audit log).")
        parser.add_argument(
            "--as",
            dest="as_user",
            help="Act as this user (audited as them; sees only their hotels). Default: the system.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = None
        if options["as_user"]:
            actor = get_user_model().objects.filter(username=options["as_user"], is_active=True).first()
            if actor is None:
                raise CommandError(f"No active user named {options['as_user']!r}.")
        try:
            older_than = maintenance.parse_age(options["older_than"]) if options["older_than"] else None
            letter_filter = maintenance.LetterFilter(
                kinds=tuple(options["kind"]),
                categories=tuple(options["category"]),
                dependencies=tuple(options["dependency"]),
                statuses=tuple(options["status"]) or (DeadLetter.Status.PENDING,),
                tenant=str(options["hotel"]) if options["hotel"] is not None else "",
                older_than=older_than,
                ids=tuple(options["ids"]),
            )
            outcome = maintenance.dead_letters_retry(
                letter_filter=letter_filter,
                limit=options["limit"],
                dry_run=options["dry_run"],
                actor=actor,
                tenants=tenancy.visible_tenants(actor) if actor is not None else None,
                reason=options["reason"],
            )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        if options["dry_run"]:
            for letter in outcome.letters:
                self.stdout.write(
                    f"{letter.pk:>8} {letter.created_at:%Y-%m-%d %H:%M} {letter.kind:<18} "
                    f"{letter.category:<13} {letter.dependency or '-':<12} {letter.status:<9} "
                    f"{letter.subject or '-'}"
                )
            self.stdout.write(f"dry run: {outcome.matched} dead letter(s) would be retried; nothing changed")
            return
        summary = (
            f"matched {outcome.matched}: retried {outcome.retried}, resolved {outcome.resolved}, "
            f"refused {outcome.refused}"
        )
        for error in outcome.errors:
            self.stderr.write(f"refused {error}")
        if outcome.refused:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
