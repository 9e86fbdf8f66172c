"""``manage.py fake_providers``: run the fake Green API and DeepSeek servers until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from fakes import FakeDeepSeek, FakeGreenApi


def _setting(name: str, default: Any) -> Any:
    value = getattr(settings, name, default)
    return default if value in (None, "") else value


class Command(BaseCommand):
    help = (
        "Run the fake Green API (WhatsApp) and DeepSeek servers on loopback, with fault injection "
        "under /__fake__/ (see docs/providers.md §3.6-3.8). Runs until Ctrl-C or SIGTERM."
    )
    # The fakes need nothing from the project (no database, no cache): don't let checks block them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="Interface to bind both fakes to (default: 127.0.0.1)."
        )
        parser.add_argument(
            "--green-port",
            type=int,
            default=int(_setting("FAKE_GREEN_API_PORT", 8701)),
            help="Port of the fake Green API (default: settings.FAKE_GREEN_API_PORT, 8701).",
        )
        parser.add_argument(
            "--deepseek-port",
            type=int,
            default=int(_setting("FAKE_DEEPSEEK_PORT", 8702)),
            help="Port of the fake DeepSeek API (default: settings.FAKE_DEEPSEEK_PORT, 8702).",
        )
        parser.add_argument(
            "--webhook-url",
            default=str(_setting("FAKE_GREEN_API_WEBHOOK_URL", "")),
            help="Where the fake Green API pushes notifications; empty means polling via "
            "receiveNotification (default: settings.FAKE_GREEN_API_WEBHOOK_URL).",
        )
        parser.add_argument(
            "--webhook-token",
            default=str(_setting("FAKE_GREEN_API_WEBHOOK_TOKEN", _setting("GREEN_API_WEBHOOK_TOKEN", ""))),
            help="webhookUrlToken: pushes carry 'Authorization: Bearer <token>' when non-empty (default: "
            "settings.FAKE_GREEN_API_WEBHOOK_TOKEN, the demo hotel's token, else GREEN_API_WEBHOOK_TOKEN).",
        )
        parser.add_argument(
            "--redelivery-delay",
            type=float,
            default=60.0,
            help="Seconds before a push that got a non-200 answer is resent (real Green API: 60).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=0,
            help="Seed of the fault engine's random generator (default: 0).",
        )
        parser.add_argument(
            "--no-rate-limits",
            action="store_true",
            help="Disable the fake Green API's per-method rate limiter (429 on excess).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        id_instance = str(_setting("GREEN_API_ID_INSTANCE", "1101000001"))
        if not id_instance.isdigit():
            raise CommandError(f"GREEN_API_ID_INSTANCE must be digits, got {id_instance!r}")
        if options["redelivery_delay"] < 0:
            raise CommandError("--redelivery-delay must be >= 0")
        green = FakeGreenApi(
            id_instance=id_instance,
            api_token=str(_setting("GREEN_API_TOKEN", "test-token")),
            webhook_url=options["webhook_url"],
            webhook_token=options["webhook_token"],
            redelivery_delay=options["redelivery_delay"],
            rate_limits=not options["no_rate_limits"],
            seed=options["seed"],
            host=options["host"],
            port=options["green_port"],
        )
        deepseek = FakeDeepSeek(
            api_keys=(str(_setting("DEEPSEEK_API_KEY", "sk-test")),),
            seed=options["seed"],
            host=options["host"],
            port=options["deepseek_port"],
        )
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                green.start()
                deepseek.start()
            except OSError as exc:
                raise CommandError(f"cannot start the fakes: {exc}") from exc
            mode = f"push to {green.settings()['webhookUrl']}" if options["webhook_url"] else "polling"
            self.stdout.write(
                self.style.SUCCESS(f"Fake Green API: {green.url} (instance {id_instance}, {mode})")
            )
            self.stdout.write(self.style.SUCCESS(f"Fake DeepSeek:  {deepseek.url}"))
            self.stdout.write(f"Control APIs:   {green.url}/__fake__/  {deepseek.url}/__fake__/")
            self.stdout.write("Press Ctrl-C to stop.")
            self.stdout.flush()
            while not stop.wait(0.5):
                pass
        finally:
            deepseek.stop()
            green.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Fakes stopped.")
