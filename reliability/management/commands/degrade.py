"""``manage.py degrade``: show the degradation state, override the level, mark dependency maintenance."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hotelbot.exceptions import HotelbotError
from reliability import degradation
from reliability.models import AuditEntry, DegradationLevel


class Command(BaseCommand):
    help = (
        "Graceful degradation: show | set LEVEL --reason R [--minutes N] [--off SWITCH ...] | clear | "
        "maintenance DEP --reason R [--minutes N] | maintenance-end DEP. Every change is audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("show", help="The level and switches in force, the override and maintenance.")
        show.add_argument("--json", action="store_true", help="Print the state as JSON.")
        levels = [level.label.upper() for level in DegradationLevel]
        set_ = sub.add_parser("set", help="Override the level (with a reason, optionally for N minutes).")
        set_.add_argument("level", type=str.upper, choices=levels)
        set_.add_argument("--reason", required=True, help="Why (kept in the audit log and the event).")
        set_.add_argument("--minutes", type=int, help="The override ends by itself after N minutes.")
        set_.add_argument(
            "--off", nargs="*", default=[], choices=degradation.SWITCHES, help="Switches to turn off."
        )
        clear = sub.add_parser("clear", help="End the override: the rules decide again.")
        clear.add_argument("--reason", default="", help="Why (optional).")
        start = sub.add_parser("maintenance", help="Mark a dependency under maintenance (its work waits).")
        start.add_argument("dependency", help="e.g. green_api")
        start.add_argument("--reason", required=True)
        start.add_argument("--minutes", type=int, help="Maintenance ends by itself after N minutes.")
        end = sub.add_parser("maintenance-end", help="End a dependency's maintenance (its work drains).")
        end.add_argument("dependency")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        via = AuditEntry.Via.COMMAND
        try:
            if action == "set":
                degradation.degradation_override_set(
                    level=options["level"],
                    reason=options["reason"],
                    until=degradation.override_until(options["minutes"]),
                    switches_off=options["off"],
                    actor=None,
                    via=via,
                )
            elif action == "clear":
                degradation.degradation_override_clear(actor=None, via=via, reason=options["reason"])
            elif action == "maintenance":
                degradation.maintenance_start(
                    dependency=options["dependency"],
                    reason=options["reason"],
                    until=degradation.override_until(options["minutes"]),
                    actor=None,
                    via=via,
                )
            elif action == "maintenance-end":
                degradation.maintenance_end(dependency=options["dependency"], actor=None, via=via)
        except HotelbotError as e:
            raise CommandError(e.message) from e
        self._show(as_json=bool(options.get("json")))

    def _show(self, *, as_json: bool) -> None:
        status = degradation.degradation_status()
        if as_json:
            self.stdout.write(json.dumps(status, indent=2))
            return
        off = [name for name, on in status["switches"].items() if not on]
        self.stdout.write(f"level:        {status['level']}{'  (read-only)' if status['read_only'] else ''}")
        self.stdout.write(f"switches off: {', '.join(off) or 'none'}")
        self.stdout.write(f"cause:        {status['cause'] or '-'}")
        self.stdout.write(f"since:        {status['since'] or '-'}")
        rules = status["rules"]
        recovering = f", recovering since {rules['recovering_since']}" if rules["recovering_since"] else ""
        self.stdout.write(f"rules hold:   {rules['level']} ({rules['cause'] or 'no rule holds'}{recovering})")
        override = status["override"]
        if override:
            self.stdout.write(
                f"override:     {override['level']} by {override['actor']} until "
                f"{override['until'] or 'cleared'}: {override['reason']}"
            )
        for row in status["maintenance"]:
            self.stdout.write(
                f"maintenance:  {row['dependency']} until {row['until'] or 'ended'} "
                f"by {row['actor']}: {row['reason']}"
            )
