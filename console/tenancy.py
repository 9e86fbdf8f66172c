"""Who may see what: staff see only their hotels' rows; the operations group sees everything.

A row of the engines (a dead letter, an audit entry) carries a ``tenant`` key, a string: the id of
its hotel. The console asks the domain directly which hotels a user staffs
(``messaging.selectors.hotel_ids_staffed_by``) and what they are called
(``messaging.selectors.hotel_labels``), then hands the engines the tenant keys (``None`` = every
tenant). Querysets are *filtered*, never checked after the fact, so a row of another hotel answers
404 (its id cannot be probed), not 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from messaging import selectors
from messaging.permissions import OPERATIONS_GROUP, is_operations

__all__ = [
    "OPERATIONS_GROUP",
    "is_operations",
    "scope_by_tenant",
    "tenant_choices",
    "tenant_labels",
    "visible_tenants",
]

M = TypeVar("M", bound=Model)


def visible_tenants(user: Any) -> frozenset[str] | None:
    """``None`` = every tenant (operations); otherwise the tenant keys ``user`` may see (maybe none)."""
    if is_operations(user):
        return None
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    return frozenset(str(t) for t in selectors.hotel_ids_staffed_by(user))


def scope_by_tenant(queryset: QuerySet[M], user: Any, *, field: str = "tenant") -> QuerySet[M]:
    """``queryset`` cut to the rows ``user`` may see (``field`` holds the tenant key)."""
    tenants = visible_tenants(user)
    if tenants is None:
        return queryset
    return queryset.filter(**{f"{field}__in": sorted(tenants)})


# --- labels for people (admin filters, dashboard) ----------------------------------------------------
def tenant_labels(keys: Iterable[str]) -> dict[str, str]:
    """{tenant key: hotel name}; a key that names no hotel keeps itself as its label."""
    wanted = [str(k) for k in keys if str(k)]
    names = selectors.hotel_labels(wanted) if wanted else {}
    return {key: names.get(key, key) for key in wanted}


def tenant_choices(user: Any, *, present: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(key, name) of the tenants ``user`` may see, sorted by name: the hotels the user staffs, or
    for operations every tenant in ``present`` (e.g. the keys found in rows)."""
    tenants = visible_tenants(user)
    keys = set(present) if tenants is None else set(tenants)
    labels = tenant_labels(keys)
    return sorted(labels.items(), key=lambda item: (item[1].lower(), item[0]))
