from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console import reports
from hotelbot.exceptions import HotelbotError


class Command(BaseCommand):
    help = (
        "Print the reliability report of the last N hours (every hotel): replies by result and "
        "latency, dead letters by category / dependency / kind, breaker transitions and time open, "
        "top failure reasons. Readable tables, or JSON with --json. Exit codes: 0 ok; 1 bad input; "
        "2 usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--hours", type=int, default=24, help="Report period in hours, 1-720 (default 24)."
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON (for scripts).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = reports.reliability_report_last(hours=options["hours"])
        except HotelbotError as e:
            raise CommandError(e.message) from e
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
            return
        self._text(report)

    def _table(self, title: str, headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(title))
        if not rows:
            self.stdout.write("  (none)")
            return
        cells = [tuple(headers)] + [tuple("-" if v is None else str(v) for v in row) for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        for row in cells:
            self.stdout.write(
                "  "
                + "  ".join(
                    cell.ljust(width) if i == 0 else cell.rjust(width)
                    for i, (cell, width) in enumerate(zip(row, widths, strict=True))
                )
            )

    def _text(self, report: dict[str, Any]) -> None:
        period = report["period"]
        self.stdout.write(f"Reliability report {period['since']} → {period['until']}")
        replies = report["replies"]
        self._table("Replies by result", ("result", "count"), sorted(replies["by_result"].items()))
        latency = replies["latency_seconds"]
        self._table(
            "Reply latency (seconds, guest message → reply accepted)",
            ("p50", "p95", "replies"),
            [(latency["p50"], latency["p95"], latency["count"])],
        )
        letters = report["dead_letters"]
        self.stdout.write("")
        self.stdout.write(
            self.style.MIGRATE_HEADING("Dead letters")
            + f"  open now: {letters['open']}, new in period: {letters['created']}"
        )
        for key, label in (("by_category", "category"), ("by_dependency", "dependency"), ("by_kind", "kind")):
            self._table(f"  new by {label}", (label, "count"), list(letters[key].items()))
        self._table(
            "Breakers",
            ("name", "state now", "transitions", "seconds open"),
            [(b["name"], b["state_now"], b["transitions"], b["seconds_open"]) for b in report["breakers"]],
        )
        self._table(
            "Top failure reasons",
            ("reason", "count"),
            [(r["reason_code"], r["count"]) for r in report["top_failure_reasons"]],
        )
