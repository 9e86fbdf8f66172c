from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.clients.fake_control import FakeControlError, FakeGreenApiControl
from messaging.models import Message
from messaging.selectors import replies_for_chat

_DONE = {Message.Status.DELIVERED, Message.Status.READ}


class Command(BaseCommand):
    help = (
        "Send a guest message through the fake Green API (it posts the webhook to us, like WhatsApp "
        "would) and print the concierge's reply once it is delivered."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("text", help="What the guest writes, e.g. 'What time is check-out?'")
        parser.add_argument("--chat-id", default="79001234567@c.us", help="Guest WhatsApp chat id.")
        parser.add_argument("--sender-name", default="Demo Guest", help="Guest display name.")
        parser.add_argument(
            "--timeout",
            type=float,
            default=30.0,
            help="Seconds to wait for the delivered reply (default 30).",
        )
        parser.add_argument(
            "--green-api-url",
            default=settings.GREEN_API_URL,
            help="Base URL of the fake Green API (default: GREEN_API_URL).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["text"].strip():
            raise CommandError("the guest message must not be empty")
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be positive")
        control = FakeGreenApiControl(base_url=options["green_api_url"])
        try:
            id_message = control.inject_inbound(
                chat_id=options["chat_id"], text=options["text"], sender_name=options["sender_name"]
            )
        except FakeControlError as e:
            raise CommandError(f"{e.message} (is `python manage.py fake_providers` running?)") from e
        self.stdout.write(f"guest> {options['text']}  (idMessage {id_message})")
        deadline = time.monotonic() + options["timeout"]
        last_status = "waiting for the webhook"
        while time.monotonic() < deadline:
            reply = replies_for_chat(chat_id=options["chat_id"], after_inbound_id=id_message).first()
            if reply is not None:
                last_status = reply.status
                if reply.status in _DONE:
                    self.stdout.write(f"hotel> {reply.text}")
                    self.stdout.write(
                        self.style.SUCCESS(f"reply {reply.status} (idMessage {reply.provider_message_id})")
                    )
                    return
                if reply.status == Message.Status.FAILED:
                    raise CommandError(f"the reply failed: {reply.status_detail}")
            time.sleep(0.2)
        raise CommandError(f"no delivered reply within {options['timeout']} s (last state: {last_status})")
