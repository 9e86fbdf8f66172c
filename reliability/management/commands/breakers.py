from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from reliability import services
from reliability.breaker import registry
from reliability.models import BreakerConfig

_MODES = {
    "force-open": BreakerConfig.Mode.FORCED_OPEN,
    "disable": BreakerConfig.Mode.DISABLED,
    "metrics-only": BreakerConfig.Mode.METRICS_ONLY,
    "close": BreakerConfig.Mode.AUTO,
}


class Command(BaseCommand):
    help = (
        "Show the circuit breakers, or override one: force-open / disable / metrics-only (with a "
        "reason, optionally for N minutes), close (clear the override) or reset (close and clear counters)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action",
            nargs="?",
            default="list",
            choices=["list", *_MODES, "reset"],
            help="What to do (default: list).",
        )
        parser.add_argument("name", nargs="?", help="Breaker name, e.g. green_api (not for list).")
        parser.add_argument(
            "--reason", default="", help="Why (required for force-open, disable, metrics-only)."
        )
        parser.add_argument(
            "--minutes", type=int, help="The override ends by itself after this many minutes."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action, name = options["action"], options["name"]
        if action == "list":
            self._list()
            return
        if not name:
            raise CommandError(f"'{action}' needs a breaker name")
        try:
            until = services.override_until(options["minutes"])
        except HotelbotError as e:
            raise CommandError(f"--minutes: {e.message}") from e
        try:
            if action == "reset":
                services.breaker_reset(name=name)
            else:
                services.breaker_set_mode(
                    name=name, mode=_MODES[action], reason=options["reason"], until=until
                )
        except HotelbotError as e:
            raise CommandError(e.message) from e
        self.stdout.write(self.style.SUCCESS(f"{name}: {registry.breaker(name).state.value}"))

    def _list(self) -> None:
        rows = list(BreakerConfig.objects.all())
        if not rows:
            self.stdout.write("no breakers configured")
            return
        width = max(len("name"), *(len(row.name) for row in rows))
        self.stdout.write(
            f"{'name':<{width}} {'state':<13} {'mode':<13} {'failures':>8} {'rate':>6} {'calls':>6}  until"
        )
        for row in rows:
            snap = registry.breaker(row.name).snapshot()
            until = row.mode_until.isoformat(timespec="seconds") if row.mode_until else ""
            self.stdout.write(
                f"{row.name:<{width}} {snap.state.value:<13} {row.mode:<13} {row.failure_threshold:>8} "
                f"{snap.failure_rate:>5.0f}% {snap.calls:>6}  {until}"
            )
