"""Changelists that stay fast on a million rows (issue 18; docs/scale.md).

What Django admin does by default costs a full scan of the table on every load: the total
``COUNT(*)``, ``date_hierarchy`` (DISTINCT years, MIN/MAX), a related-field filter's ``DISTINCT``
over the rows, ``icontains`` search over every column and deep ``OFFSET`` pages. The pieces here
replace each with something an index answers:

* :class:`EstimatedCountPaginator`: the planner's row estimate for an unfiltered list on
  PostgreSQL, a capped count (``LIMIT n+1``) when filtered; pages stop at ``MAX_PAGES``.
* :func:`hotel_filter`: the user's hotels from the ``Hotel`` table (no DISTINCT over the rows).
* :func:`recent_filter`: a bounded date range (last hour / day / 7 days / 30 days).
* :func:`recent_values_filter`: a column's values among the newest rows (no DISTINCT over the table).
* :class:`KeysetChangeList` + :class:`ScaleAdminMixin`: keyset "show older" (``?before=<id>``).
* :func:`search_terms`: what the search box accepts (numbers and ids by prefix; text only where
  an index serves it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from messaging import selectors

#: Pages offered past the first: deeper rows are reached with "show older" (keyset, no OFFSET).
MAX_PAGES = 20
#: A filtered list counts at most this many rows (shown as "10000" = "at least").
COUNT_CAP = MAX_PAGES * 100


class EstimatedCountPaginator(Paginator):
    """``count`` without a full scan: on PostgreSQL an unfiltered list answers the planner's
    estimate (``pg_class.reltuples``), a filtered one a capped count (``LIMIT COUNT_CAP+1``); SQLite
    (the embedded default, small by nature) counts exactly. Pages past ``MAX_PAGES`` are not offered."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return queryset.count()
        if not queryset.query.where and not queryset.query.combinator:
            estimate = _estimated_rows(queryset)
            if estimate is not None:
                return estimate
        return queryset.order_by()[: COUNT_CAP + 1].count()

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, MAX_PAGES)


def _estimated_rows(queryset: QuerySet[Any]) -> int | None:
    """The planner's row count of the model's table (``None``: never analysed)."""
    table = queryset.model._meta.db_table
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


HotelRows = Callable[[QuerySet[Any], int], QuerySet[Any]]


def hotel_filter(path: str | HotelRows) -> type[admin.SimpleListFilter]:
    """A "hotel" filter whose choices are the hotels the user may see, read from the ``Hotel`` table
    (never a DISTINCT over the rows). ``path`` is the hotel's id on the rows (e.g. ``hotel_id``), or
    a function that cuts the rows to one hotel's (where the hotel is a join away: see
    :func:`of_hotel_newest`)."""

    class HotelFilter(admin.SimpleListFilter):
        title = "hotel"
        parameter_name = "hotel"

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            hotels = selectors.hotels_visible_to(user=request.user)
            return [
                (str(pk), name) for pk, name in hotels.order_by("name", "pk").values_list("pk", "name")[:500]
            ]

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            value = self.value()
            if not value:
                return queryset
            if not value.isdigit():
                raise IncorrectLookupParameters(f"hotel={value!r}: not a hotel id")
            if callable(path):
                return path(queryset, int(value))
            return queryset.filter(**{path: int(value)})

    return HotelFilter


def of_hotel_newest(*, through_jobs: bool = False) -> HotelRows:
    """Reply jobs (``through_jobs``: their delivery attempts) of one hotel: those of the hotel's
    newest ``COUNT_CAP`` guest messages, by ids. A join filter on the hotel (``inbound__hotel_id``)
    walks the whole table newest first to find one hotel's rows among a thousand hotels'; the ids
    come from one range of the message index that leads with the hotel, then the jobs' and attempts'
    own indexes (``inbound_id``, ``job_id``)."""

    def rows(queryset: QuerySet[Any], hotel_id: int) -> QuerySet[Any]:
        from messaging.models import Message, ReplyJob

        newest = Message.objects.filter(hotel_id=hotel_id, direction=Message.Direction.INBOUND)
        ids = list(newest.order_by("-pk").values_list("pk", flat=True)[:COUNT_CAP])
        if not through_jobs:
            return queryset.filter(inbound_id__in=ids)
        jobs = ReplyJob.objects.filter(inbound_id__in=ids).values_list("pk", flat=True)
        return queryset.filter(job_id__in=list(jobs))

    return rows


def recent_values_filter(field: str, title: str) -> type[admin.SimpleListFilter]:
    """A filter on ``field`` whose choices are the values of the newest ``COUNT_CAP`` rows the user
    sees (the choices of ``list_filter = ("field",)`` are a DISTINCT over the whole table)."""

    class RecentValuesFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            newest = model_admin.get_queryset(request).order_by("-pk").values_list(field, flat=True)
            return [(value, value) for value in sorted(set(newest[:COUNT_CAP])) if value]

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            value = self.value()
            return queryset if value is None else queryset.filter(**{field: value})

    RecentValuesFilter.title = title
    return RecentValuesFilter


RECENT = {"1h": ("last hour", timedelta(hours=1)), "24h": ("last 24 hours", timedelta(days=1))} | {
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}


def recent_filter(field: str, title: str = "when") -> type[admin.SimpleListFilter]:
    """A bounded date range on the indexed ``field`` (replaces ``date_hierarchy``, whose year list is a
    DISTINCT over the whole table)."""

    class RecentFilter(admin.SimpleListFilter):
        parameter_name = "recent"

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [(key, label) for key, (label, _) in RECENT.items()]

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            value = self.value()
            if not value:
                return queryset
            if value not in RECENT:
                raise IncorrectLookupParameters(f"recent={value!r}: one of {', '.join(RECENT)}")
            return queryset.filter(**{f"{field}__gte": timezone.now() - RECENT[value][1]})

    RecentFilter.title = title
    return RecentFilter


BEFORE_VAR = "before"


class KeysetChangeList(ChangeList):
    """``?before=<id>``: the rows older than that id (keyset navigation: an index range, never a
    deep OFFSET); :attr:`older_url` is the "show older" link after the last row shown."""

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.before = request.GET.get(BEFORE_VAR, "")
        super().__init__(request, *args, **kwargs)

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(BEFORE_VAR, None)
        return lookup_params

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        if not self.before:
            return queryset
        if not self.before.isdigit():
            raise IncorrectLookupParameters(f"before={self.before!r}: not an id")
        return queryset.filter(pk__lt=int(self.before))

    @property
    def older_url(self) -> str | None:
        """The "show older" link: the rows after the last one shown (only in the default order)."""
        if ORDER_VAR in self.params or self.show_all:
            return None
        rows = list(self.result_list)
        if len(rows) < self.list_per_page:
            return None
        return self.get_query_string({BEFORE_VAR: rows[-1].pk}, [PAGE_VAR])


def digits(term: str) -> str:
    """A phone number as staff type it (``+7 900 123-45-67``) as its digits; "" when it is not one."""
    stripped = re.sub(r"[\s+()\-.]", "", term)
    return stripped if stripped.isdigit() else ""


def chat_prefix(term: str) -> str | None:
    """The chat-id prefix of a typed phone number (at least 4 digits), else ``None``."""
    number = digits(term)
    return number if len(number) >= 4 else None


def words_among_newest(model: Any, fields: tuple[str, ...], term: str) -> Q:
    """Words of free text (``icontains`` on ``fields``) searched among the newest ``COUNT_CAP`` rows
    only: an index range by id, then a bounded scan (a whole-table ``icontains`` reads every row)."""
    bound = model._default_manager.order_by("-pk").values_list("pk", flat=True)[COUNT_CAP : COUNT_CAP + 1]
    oldest = next(iter(bound), 0)
    words = Q()
    for field in fields:
        words |= Q(**{f"{field}__icontains": term})
    return Q(pk__gt=oldest) & words


SearchBuilder = Callable[[str], Q | None]


class ScaleAdminMixin(admin.ModelAdmin):
    """For a big table's admin: estimated counts, bounded pages, "show older", no full counts, and
    search built by :meth:`search_q` (each term: a ``Q`` an index answers) instead of ``icontains``
    over every column. Put it first among the bases."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    change_list_template = "admin/scale_change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return KeysetChangeList

    def search_q(self, term: str) -> Q | None:  # pragma: no cover - each admin defines it
        raise NotImplementedError

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        q = self.search_q(term)
        return (queryset.filter(q) if q is not None else queryset.none()), False
