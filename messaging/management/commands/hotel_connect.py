"""``manage.py hotel_connect``: point a hotel's Green API instance at its webhook URL."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from messaging.services.hotels import hotel_connect, hotel_connect_check, hotel_get


class Command(BaseCommand):
    help = (
        "Issue the hotel a fresh webhook token and push it with the hotel's webhook URL to Green API "
        "(setSettings, with incoming/outgoing/state notifications on), then read the settings back "
        "(getSettings) and check them. The previous token stays valid for the grace period. The token "
        "is never printed. --check only reads and compares (changes nothing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("hotel", help="The hotel's id or Green API instance id.")
        parser.add_argument(
            "--grace-hours",
            type=float,
            default=None,
            help="Hours the previous token stays valid (default: WEBHOOK_TOKEN_GRACE_HOURS).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only read Green API's settings and check URL, token and notification flags (no change).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Name the hotel and change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            hotel = hotel_get(ref=options["hotel"])
            if options["dry_run"]:
                self.stdout.write(f"Would connect hotel {hotel.pk} {hotel.name!r} to Green API (dry run).")
                return
            if options["check"]:
                check = hotel_connect_check(hotel=hotel)
            else:
                result = hotel_connect(hotel=hotel, grace_hours=options["grace_hours"], via="command")
        except HotelbotError as e:
            raise CommandError(e.message) from e
        if options["check"]:
            if not check.ok:
                raise CommandError(
                    f"Hotel {hotel.pk}: Green API is not set up: url ok={check.url_matches}, "
                    f"token ok={check.token_matches}, notifications off={check.flags_off or 'none'}."
                )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Hotel {hotel.pk}: Green API posts to {check.webhook_url} with its token."
                )
            )
            return
        until = result.previous_valid_until
        self.stdout.write(
            self.style.SUCCESS(
                f"Hotel {hotel.pk} {hotel.name!r}: Green API now posts to {result.webhook_url}"
            )
        )
        self.stdout.write(
            f"The previous token stays valid until {until.isoformat()}."
            if until
            else "No previous token was set."
        )
