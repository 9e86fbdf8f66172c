"""``manage.py send_test_alert``: prove that alerts reach a person (docs/security.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.services.alerts import alert_test_send


class Command(BaseCommand):
    help = (
        "Send one test alert through the configured mail backend to every recipient alerts can reach "
        "(ADMINS and each hotel's staff_email) and say where it went. Exit status 1 when there is no "
        "recipient or the mail server refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List the recipients and the backend; send nothing."
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        try:
            result = alert_test_send(dry_run=dry_run)
        except Exception as e:  # the backend's own errors: SMTP refusals, timeouts, DNS
            raise CommandError(f"the mail backend failed: {type(e).__name__}: {e}") from e
        self.stdout.write(f"mail backend: {result.backend}")
        self.stdout.write(f"ADMINS: {', '.join(result.admins) or '(none)'}")
        self.stdout.write(f"hotel staff: {', '.join(result.hotel_staff) or '(none)'}")
        if not (result.admins or result.hotel_staff):
            raise CommandError("no recipient: set ADMINS (and hotels' staff_email); nothing was sent")
        if dry_run:
            self.stdout.write("dry run: nothing sent")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"sent {result.sent} mail(s) to {len(result.admins) + len(result.hotel_staff)} recipient(s)"
            )
        )
