"""Every staff page of one database, timed in process (Django's test client, a superuser).

The pages: every admin changelist of the site (plain; with a search term: a guest number's prefix,
an id, a word; with the first choice of each list filter; a deep page: "show older" from the middle
of the table, or the last page offered), each admin's change page (a row from the middle), the admin
index, the ops dashboard, the answer-by-hand page, the reliability report (the hourly task, the
command, the API endpoint), every ``/api/v1/`` list (first and next cursor page) and detail, every
health URL. The list is built from what the site shows (its registry, each changelist's filters),
so a new admin or filter is timed without a change here; labels never hold ids, so the small and
the large database's pages pair up by name.

For each page: the durations of ``reps`` runs after one warm-up, the status, the number of queries
and the slowest query of one more captured run (its SQL, for the EXPLAIN of the parent).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

#: Statuses a health page may answer on a bench database (no worker, no beat: "degraded"/"failing").
HEALTH_STATUSES = (200, 503)


@dataclass(slots=True)
class Page:
    name: str
    kind: str  # admin-list, admin-change, admin, dashboard, report, api, health
    run: Callable[[], int]  # one request (or call); its status
    url: str = ""
    ok: tuple[int, ...] = (200,)


def _client() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from bench.scale.child import USERNAME

    client = Client()
    client.force_login(get_user_model().objects.get(username=USERNAME))
    return client


#: The body of the last page fetched (:func:`rows_shown` reads it after the captured run).
_last_body: list[bytes] = [b""]


def rows_shown(kind: str) -> int | None:
    """Rows the last page fetched shows: an admin changelist's rows, an
    API list's ``results``; None for other pages. The small and the large database's page compare
    fairly only when both show as many rows (rendering a row costs ~0.3-1 ms)."""
    body = _last_body[0]
    if kind == "admin-list":  # the rows of the result table (its header row aside)
        start = body.find(b'<table id="result_list"')
        if start < 0:
            return 0
        return max(0, body[start : body.find(b"</table>", start)].count(b"<tr") - 1)
    if kind == "api" and body.startswith(b"{"):
        import json

        results = json.loads(body).get("results")
        return len(results) if isinstance(results, list) else None
    return None


def _get(client: Any, url: str, **extra: Any) -> Callable[[], int]:
    def run() -> int:
        response = client.get(url, **extra)
        _last_body[0] = response.content if not getattr(response, "streaming", False) else b""
        if response.status_code == 302 and "e=1" in response.get("Location", ""):
            return 400  # the admin's "invalid lookup" redirect: a broken page, not a fast one
        return int(response.status_code)

    return run


def _mid_pk(model: Any) -> int | None:
    """The id of a row from the middle of the table (ids grow with time)."""
    from django.db.models import Max, Min

    bounds = model._default_manager.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None:
        return None
    middle = model._default_manager.filter(pk__gte=(bounds["low"] + bounds["high"]) // 2)
    return int(middle.order_by("pk").values_list("pk", flat=True)[0])


def _search_terms() -> dict[str, str]:
    """A guest number's prefix (about ten guests), a word of guest messages; the id is per model."""
    from messaging.models import Guest

    guest_pk = _mid_pk(Guest)
    chat = Guest.objects.get(pk=guest_pk).chat_id if guest_pk else "79001234567@c.us"
    digits = chat.split("@")[0][:-1]
    spaced = f"+{digits[0]} {digits[1:4]} {digits[4:7]} {digits[7:]}"  # as staff type it
    return {"number prefix": spaced, "word": "breakfast"}


def _admin_pages(client: Any) -> list[Page]:
    from django.contrib import admin
    from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR
    from django.urls import reverse

    from console.admin.scale import BEFORE_VAR, KeysetChangeList

    terms = _search_terms()
    pages: list[Page] = [Page("admin index", "admin", _get(client, "/admin/"), "/admin/")]
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label):
        label = model._meta.label_lower
        base = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

        def add(what: str, query: dict[str, Any] | str, *, base: str = base, label: str = label) -> None:
            qs = query if isinstance(query, str) else urlencode(query)
            url = f"{base}?{qs}" if qs else base
            name = f"{label} list: {what}" if what else f"{label} list"
            pages.append(Page(name, "admin-list", _get(client, url), url))

        response = client.get(base)
        if response.status_code != 200:
            raise RuntimeError(f"{base} answered {response.status_code}")
        add("", "")
        cl = response.context_data["cl"]
        mid = _mid_pk(model)
        if model_admin.search_fields or type(model_admin).get_search_results is not (
            admin.ModelAdmin.get_search_results
        ):
            for what, term in terms.items():
                add(f"search {what}", {SEARCH_VAR: term})
            if mid is not None:
                add("search an id", {SEARCH_VAR: str(mid)})
        for spec in cl.filter_specs:
            choices = [c for c in spec.choices(cl) if not c.get("selected")]
            if choices:
                query = choices[0]["query_string"].lstrip("?")
                add(f"filter {spec.title}", query)
        if isinstance(cl, KeysetChangeList) and mid is not None:
            add("show older (from the middle)", {BEFORE_VAR: mid})
        # The deepest page offered (the first one when everything fits on it: the same page then).
        add("last page offered", {PAGE_VAR: max(1, cl.paginator.num_pages)})
        if mid is not None:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[mid])
            pages.append(Page(f"{label} change", "admin-change", _get(client, url), url))
    return pages


def _console_pages(client: Any) -> list[Page]:
    from django.core.management import call_command

    from console import tasks
    from messaging.models import ReplyJob
    from reliability.models import DeadLetter

    job = _mid_pk(ReplyJob)
    letter = DeadLetter.objects.filter(pk__gte=_mid_pk(DeadLetter) or 0).order_by("pk").first()
    pages = [
        Page(
            "ops dashboard",
            "dashboard",
            _get(client, "/admin/reliability/dashboard/"),
            "/admin/reliability/dashboard/",
        ),
        Page(
            "answer by hand",
            "admin",
            _get(client, f"/admin/messaging/replyjob/{job}/answer/"),
            "/admin/messaging/replyjob/<id>/answer/",
        ),
    ]

    def task() -> int:
        tasks.reliability_report_hourly()
        return 200

    def command() -> int:
        call_command("reliability_report", "--hours", "24", stdout=io.StringIO())
        return 200

    pages += [
        Page("reliability report: hourly task", "report", task),
        Page("reliability report: command (24 h)", "report", command),
    ]
    api = [
        ("reliability report: API (24 h)", "/api/v1/reports/reliability/?hours=24"),
        ("api breakers", "/api/v1/breakers/"),
        ("api breaker", "/api/v1/breakers/green_api/"),
        ("api dead letters", "/api/v1/dead-letters/"),
        ("api dead letters: open", "/api/v1/dead-letters/?status=pending"),
        ("api dead letters: one hotel", "/api/v1/dead-letters/?tenant=1"),
        ("api dead letters: a category", "/api/v1/dead-letters/?category=provider_5xx"),
        ("api quarantined notifications", "/api/v1/quarantined-notifications/"),
        ("api degradation", "/api/v1/degradation/"),
    ]
    if letter is not None:
        api.append(("api dead letter", f"/api/v1/dead-letters/{letter.pk}/"))
    for name, url in api:
        pages.append(Page(name, "report" if "report" in name else "api", _get(client, url), url))
        if url.endswith("/dead-letters/") or url.endswith("/quarantined-notifications/"):
            following = client.get(url).json().get("next") or url  # one page only: that one again
            pages.append(Page(f"{name}: next page", "api", _get(client, following), following))
    health = [
        "/health/live/",
        "/health/ready/",
        "/health/",
        "/health/detailed/?format=json",
        "/health/circuit-breakers/",
        "/health/degradation/",
        "/health/dlq/",
    ]
    for url in health:
        pages.append(Page(f"health {url}", "health", _get(client, url), url, ok=HEALTH_STATUSES))
    return pages


def all_pages() -> list[Page]:
    client = _client()
    return _admin_pages(client) + _console_pages(client)


def measure(*, reps: int, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Time each page: a warm-up, ``reps`` timed runs, one captured run (queries)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    results = []
    pages = all_pages()
    log(f"  {len(pages)} pages")
    for number, page in enumerate(pages, 1):
        status = page.run()
        if status not in page.ok:
            raise RuntimeError(f"{page.name} ({page.url}) answered {status}")
        durations = []
        for _ in range(reps):
            started = time.perf_counter()
            page.run()
            durations.append((time.perf_counter() - started) * 1000)
        with CaptureQueriesContext(connection) as captured:
            page.run()
        queries = captured.captured_queries
        rows = rows_shown(page.kind)
        _last_body[0] = b""
        slowest = max(queries, key=lambda q: float(q["time"]), default=None)
        results.append(
            {
                "name": page.name,
                "kind": page.kind,
                "url": page.url,
                "status": status,
                "durations_ms": [round(d, 2) for d in durations],
                "queries": len(queries),
                "query_ms": round(sum(float(q["time"]) for q in queries) * 1000, 2),
                "rows": rows,
                "slowest_query_ms": round(float(slowest["time"]) * 1000, 2) if slowest else None,
                "slowest_query": slowest["sql"] if slowest else None,
            }
        )
        if number % 25 == 0:
            log(f"  {number}/{len(pages)} pages timed")
    return results
