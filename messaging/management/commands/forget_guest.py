"""``manage.py forget_guest``: erase one guest's personal data on request (audited)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from messaging.services import retention
from messaging.services.hotels import hotel_get


class Command(BaseCommand):
    help = (
        "Erase one guest's personal data (a guest's request to be forgotten): their number and name, "
        "their messages' text, their reply jobs' texts (unfinished replies are stopped), and their "
        "number and text in dead letters. The rows stay, emptied, and age out with retention. "
        "Audited (guest.forget; the number masked). Exit codes: 0 done (or dry run); 1 bad input or "
        "no such guest; 2 usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hotel", required=True, help="The hotel's id or Green API instance id.")
        parser.add_argument(
            "--chat-id", required=True, help="The guest's WhatsApp number or chat id (79001234567@c.us)."
        )
        parser.add_argument(
            "--reason", default="", help="Why (kept in the audit log), e.g. the request's reference."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be erased; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            hotel = hotel_get(ref=options["hotel"])
            guest = retention.guest_get(hotel=hotel, chat_id=options["chat_id"])
            outcome = retention.guest_forget(
                guest=guest, reason=options["reason"], dry_run=options["dry_run"], via="command"
            )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        verb = "would erase" if outcome.dry_run else "erased"
        self.stdout.write(
            f"guest {outcome.guest_id} ({outcome.masked_chat_id}) of hotel {outcome.hotel_id}: {verb} "
            f"{outcome.messages} message(s), {outcome.reply_jobs} reply job(s) "
            f"({outcome.cancelled_jobs} unfinished, stopped), {outcome.dead_letters} dead letter(s)"
        )
        tail = "nothing changed (dry run)" if outcome.dry_run else "done; audited as guest.forget"
        self.stdout.write(self.style.SUCCESS(tail))
