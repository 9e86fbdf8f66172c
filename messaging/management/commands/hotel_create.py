"""``manage.py hotel_create``: add a hotel and print its webhook URL and token (shown once)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from messaging.services.hotels import hotel_create


class Command(BaseCommand):
    help = (
        "Create a hotel for a Green API instance and issue its webhook token. Prints the hotel's "
        "webhook URL and token: the token is shown only now (only its hash is stored). Next: "
        "`hotel_connect HOTEL` pushes a fresh token and the URL to Green API (docs/hotels.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="The hotel's name, as staff and guests know it.")
        parser.add_argument("--instance", required=True, help="Green API idInstance (digits) of its number.")
        parser.add_argument(
            "--api-token",
            required=True,
            help="Green API apiTokenInstance of that instance (stored encrypted).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print one JSON object: id, name, instance, webhook_url, webhook_token.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            issued = hotel_create(
                name=options["name"],
                instance_id=options["instance"],
                api_token=options["api_token"],
                via="command",
            )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        hotel = issued.hotel
        if options["json"]:
            out = {
                "id": hotel.pk,
                "name": hotel.name,
                "instance": hotel.green_api_instance_id,
                "webhook_url": issued.webhook_url,
                "webhook_token": issued.webhook_token,
            }
            self.stdout.write(json.dumps(out))
            return
        self.stdout.write(
            self.style.SUCCESS(f"Hotel {hotel.pk} {hotel.name!r} (instance {hotel.green_api_instance_id})")
        )
        self.stdout.write(f"webhook URL:   {issued.webhook_url}")
        self.stdout.write(f"webhook token: {issued.webhook_token}")
        self.stdout.write("The token is shown only now. `manage.py hotel_connect` sets both in Green API.")
