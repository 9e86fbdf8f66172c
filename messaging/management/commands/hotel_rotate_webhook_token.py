"""``manage.py hotel_rotate_webhook_token``: issue a hotel a new webhook token (shown once)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from messaging.services.hotels import hotel_get, hotel_webhook_token_rotate


class Command(BaseCommand):
    help = (
        "Issue a new webhook token for a hotel and print it (shown only now). The current token stays "
        "valid for the grace period (WEBHOOK_TOKEN_GRACE_HOURS, default 24) so Green API can be switched "
        "without losing notifications; set the new token in Green API (or use hotel_connect, which "
        "rotates and pushes in one step)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("hotel", help="The hotel's id or Green API instance id.")
        parser.add_argument(
            "--grace-hours",
            type=float,
            default=None,
            help="Hours the current token stays valid (default: WEBHOOK_TOKEN_GRACE_HOURS; 0: revoked now).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--dry-run", action="store_true", help="Name the hotel and change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            hotel = hotel_get(ref=options["hotel"])
            if options["dry_run"]:
                self.stdout.write(
                    f"Would issue hotel {hotel.pk} {hotel.name!r} a new webhook token (dry run)."
                )
                return
            issued = hotel_webhook_token_rotate(
                hotel=hotel, grace_hours=options["grace_hours"], via="command"
            )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        until = issued.previous_valid_until
        if options["json"]:
            out = {
                "id": issued.hotel.pk,
                "webhook_url": issued.webhook_url,
                "webhook_token": issued.webhook_token,
                "previous_valid_until": until.isoformat() if until else None,
            }
            self.stdout.write(json.dumps(out))
            return
        self.stdout.write(
            self.style.SUCCESS(f"New webhook token for hotel {issued.hotel.pk} {issued.hotel.name!r}")
        )
        self.stdout.write(f"webhook URL:   {issued.webhook_url}")
        self.stdout.write(f"webhook token: {issued.webhook_token}")
        self.stdout.write(
            f"The previous token stays valid until {until.isoformat()}."
            if until
            else "No previous token is valid."
        )
