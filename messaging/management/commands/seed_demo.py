from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from messaging.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo hotel (wired to the configured Green API instance) and an admin user. Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--admin-username",
            default=os.environ.get("HOTELBOT_ADMIN_USERNAME", "admin"),
            help="Admin user to create if missing (env HOTELBOT_ADMIN_USERNAME, default 'admin').",
        )
        parser.add_argument(
            "--admin-password",
            default=os.environ.get("HOTELBOT_ADMIN_PASSWORD", "admin"),
            help="Password for a newly created admin (env HOTELBOT_ADMIN_PASSWORD, default 'admin'; "
            "an existing user's password is never changed).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo_seed(admin_username=options["admin_username"], admin_password=options["admin_password"])
        hotel = result.hotel
        self.stdout.write(
            f"hotel {hotel.name!r} (Green API instance {hotel.green_api_instance_id}): "
            + ("created" if result.hotel_created else "already there")
        )
        if result.admin_created:
            user, password = options["admin_username"], options["admin_password"]
            self.stdout.write(self.style.SUCCESS(f"admin user {user!r} created with password {password!r}"))
        else:
            self.stdout.write(f"admin user {options['admin_username']!r}: already there (password unchanged)")
