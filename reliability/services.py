"""Writes the reliability adapters call: staff overrides of breakers (persisted, then applied live),
and dead letters (what was accepted but could not be processed)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DataError, transaction
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from reliability.breaker import registry
from reliability.metrics import DLQ_ADDED, DLQ_PROCESSING_SECONDS
from reliability.models import BreakerConfig, DeadLetter

logger = logging.getLogger(__name__)


def _row(name: str) -> BreakerConfig:
    row = BreakerConfig.objects.select_for_update().filter(name=name).first()
    if row is None:
        raise NotFound(f"No breaker named {name!r}.")
    return row


def breaker_set_mode(
    *, name: str, mode: str, reason: str = "", until: datetime | None = None
) -> BreakerConfig:
    """Persist a staff override (forced_open / disabled / metrics_only, or auto to clear it) and
    apply it to the live breaker now; other processes follow via shared state or config refresh."""
    if mode not in BreakerConfig.Mode.values:
        raise ValidationFailed(f"Unknown mode {mode!r}.", details={"mode": BreakerConfig.Mode.values})
    if mode != BreakerConfig.Mode.AUTO and not reason.strip():
        raise ValidationFailed("Say why the breaker is overridden.", details={"reason": "Required."})
    with transaction.atomic():
        row = _row(name)
        row.mode = mode
        row.mode_reason = reason.strip()[:200] if mode != BreakerConfig.Mode.AUTO else ""
        row.mode_until = until if mode != BreakerConfig.Mode.AUTO else None
        row.save()
    registry.apply_now(name)
    return row


def breaker_reset(*, name: str) -> BreakerConfig:
    """Clear any override and close the breaker with fresh counters."""
    row = breaker_set_mode(name=name, mode=BreakerConfig.Mode.AUTO)
    registry.breaker(name).reset()
    return row


# --- dead letters -------------------------------------------------------------------------------
_UNSTORABLE = re.compile("[\\x00\\ud800-\\udfff]")
MASK = "****"


def storable_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Text any database can hold: NUL and lone surrogates escaped (``\\x00``, ``\\ud83d``),
    every non-empty secret replaced by ``****``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    if _UNSTORABLE.search(text):
        text = _UNSTORABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text


def _storable_payload(value: Any, secrets: tuple[str, ...]) -> Any:
    """A JSON value every backend's JSON column accepts: strings escaped and masked, non-finite
    floats as text (``Infinity`` is not JSON)."""
    if isinstance(value, str):
        return storable_text(value, secrets=secrets)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {
            storable_text(str(k), secrets=secrets): _storable_payload(v, secrets) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_storable_payload(v, secrets) for v in value]
    return value


def dead_letter_quarantine(
    *,
    kind: str,
    subject: str,
    raw: bytes | str,
    reason_code: str,
    reason: str,
    payload: Any = None,
    raw_size: int | None = None,
    secrets: Iterable[str] = (),
) -> DeadLetter:
    """Keep something that could not be processed as a pending dead letter, safely and bounded.

    ``raw`` is cut to ``DEAD_LETTER_RAW_MAX_CHARS`` and escaped (undecodable bytes, NUL, lone
    surrogates), ``secrets`` are masked everywhere. Call it outside any failed transaction: it
    writes in its own atomic block. If the payload cannot be stored it is dropped (``raw`` stays).
    """
    secrets = tuple(s for s in secrets if s)
    limit = settings.DEAD_LETTER_RAW_MAX_CHARS
    if isinstance(raw, bytes):
        size = len(raw) if raw_size is None else raw_size
        # Mask on a little more than we keep, so a secret cut by the limit is masked too.
        text = raw[: limit + 1024].decode("utf-8", errors="backslashreplace")
    else:
        size = len(raw.encode("utf-8", errors="backslashreplace")) if raw_size is None else raw_size
        text = raw[: limit + 1024]
    text = storable_text(text, secrets=secrets)
    truncated = len(text) > limit or size > len(raw)
    fields: dict[str, Any] = {
        "kind": kind,
        "subject": storable_text(subject, secrets=secrets)[:200],
        "reason_code": reason_code[:40],
        "reason": storable_text(reason, secrets=secrets),
        "raw": text[:limit],
        "raw_size": size,
        "raw_truncated": truncated,
    }
    try:
        stored_payload = None if payload is None else _storable_payload(payload, secrets)
    except RecursionError:
        stored_payload = None
    try:
        with transaction.atomic():
            letter = DeadLetter.objects.create(payload=stored_payload, **fields)
    except (DataError, ValueError, TypeError, RecursionError):
        # A payload the JSON column refuses (depth, size): keep the raw body, drop the parsed copy.
        with transaction.atomic():
            letter = DeadLetter.objects.create(payload=None, **fields)
    DLQ_ADDED.labels(kind, fields["reason_code"]).inc()
    logger.warning(
        "dead letter %s: kind=%s subject=%s reason=%s",
        letter.pk,
        kind,
        fields["subject"],
        reason_code,
        extra={"dead_letter": letter.pk, "kind": kind, "reason_code": fields["reason_code"]},
    )
    return letter


def dead_letter_set_status(*, ids: Iterable[int], status: str) -> int:
    """Staff: move pending dead letters to ``resolved`` or ``discarded`` (or back to pending).

    Returns how many rows changed. Each row leaving pending observes
    ``dlq_processing_duration_seconds`` (its age), once: a row already out of pending is left alone.
    """
    if status not in DeadLetter.Status.values:
        raise ValidationFailed(f"Unknown status {status!r}.", details={"status": DeadLetter.Status.values})
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            DeadLetter.objects.select_for_update()
            .filter(pk__in=list(ids))
            .exclude(status=status)
            .values_list("pk", "kind", "status", "created_at")
        )
        DeadLetter.objects.filter(pk__in=[pk for pk, *_ in rows]).update(status=status)
    for pk, kind, old, created_at in rows:
        if old == DeadLetter.Status.PENDING:
            DLQ_PROCESSING_SECONDS.labels(kind).observe(max(0.0, (now - created_at).total_seconds()))
        logger.info(
            "dead letter %s: %s -> %s",
            pk,
            old,
            status,
            extra={"dead_letter": pk, "kind": kind, "status": status},
        )
    return len(rows)
