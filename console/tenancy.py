"""Who may see what: staff see only their tenants' rows; the operations group sees everything.

Generic: the toolkit knows a row's ``tenant`` key (a string) and asks the domain, through a
resolver registered at start-up, which tenant keys a user may see. ``messaging`` registers one
that answers with the ids of the hotels the user staffs. Querysets are *filtered*, never checked
after the fact, so a row of another tenant answers 404 (its id cannot be probed), not 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.db.models import Model, QuerySet

#: Members of this Django group (and superusers) see every tenant and alone may touch breakers
#: and degradation.
OPERATIONS_GROUP = "operations"

M = TypeVar("M", bound=Model)

_resolver: Callable[[Any], Iterable[object]] | None = None


def register_tenant_resolver(resolver: Callable[[Any], Iterable[object]]) -> None:
    """Called once from the domain app's ``ready()``: ``resolver(user)`` → tenant keys it may see."""
    global _resolver
    _resolver = resolver


def is_operations(user: Any) -> bool:
    """Superusers and members of the operations group: every tenant, breakers and degradation."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name=OPERATIONS_GROUP).exists())


def visible_tenants(user: Any) -> frozenset[str] | None:
    """``None`` = every tenant (operations); otherwise the tenant keys ``user`` may see (maybe none)."""
    if is_operations(user):
        return None
    if not getattr(user, "is_authenticated", False) or _resolver is None:
        return frozenset()
    return frozenset(str(t) for t in _resolver(user))


def scope_by_tenant(queryset: QuerySet[M], user: Any, *, field: str = "tenant") -> QuerySet[M]:
    """``queryset`` cut to the rows ``user`` may see (``field`` holds the tenant key)."""
    tenants = visible_tenants(user)
    if tenants is None:
        return queryset
    return queryset.filter(**{f"{field}__in": sorted(tenants)})


# --- labels for people (admin filters, dashboard) ----------------------------------------------------
_labeller: Callable[[Iterable[str]], dict[str, str]] | None = None


def register_tenant_labels(labeller: Callable[[Iterable[str]], dict[str, str]]) -> None:
    """Called once from the domain app's ``ready()``: ``labeller(keys)`` → {key: name for people}
    (messaging answers with hotel names)."""
    global _labeller
    _labeller = labeller


def tenant_labels(keys: Iterable[str]) -> dict[str, str]:
    """{tenant key: name}; a key the domain does not name keeps itself as its label."""
    wanted = [str(k) for k in keys if str(k)]
    names = _labeller(wanted) if _labeller is not None and wanted else {}
    return {key: names.get(key, key) for key in wanted}


def tenant_choices(user: Any, *, present: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(key, name) of the tenants ``user`` may see, sorted by name: the tenants the domain says
    the user staffs, or for operations every tenant in ``present`` (e.g. the keys found in rows)."""
    tenants = visible_tenants(user)
    keys = set(present) if tenants is None else set(tenants)
    labels = tenant_labels(keys)
    return sorted(labels.items(), key=lambda item: (item[1].lower(), item[0]))
