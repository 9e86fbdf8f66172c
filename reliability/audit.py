"""The audit log: every mutating staff or integration action is a row staff can read in admin."""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from reliability.models import AuditEntry


def audit_record(
    *,
    actor: Any,
    via: str,
    action: str,
    target: Model | None = None,
    target_type: str = "",
    target_id: str = "",
    tenant: str = "",
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Write one audit row. ``actor`` is a user or None (the system); ``target`` a model instance,
    or ``target_type``/``target_id`` for something that is not a row (a breaker by name, a bulk set)."""
    if target is not None:
        target_type = target_type or f"{target._meta.app_label}.{target._meta.model_name}"
        target_id = target_id or str(target.pk)
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_name=(actor.get_username() if authenticated else "system")[:150],
        via=via,
        action=action[:60],
        target_type=target_type[:100],
        target_id=str(target_id)[:64],
        tenant=str(tenant)[:64],
        reason=reason,
        details=details or {},
    )
