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

from hotelbot.exceptions import NotFound, ValidationFailed
from reliability.audit import audit_record
from reliability.breaker import registry
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


_PHONE = re.compile(r"\d{5,}")


def mask_phone(text: str) -> str:
    """``text`` with every run of 5+ digits (phone numbers, WhatsApp chat ids) cut to its last 4:
    ``79001234567@c.us`` → ``•••4567@c.us``. For pages that show guests to people."""
    return _PHONE.sub(lambda m: "•••" + m.group()[-4:], text)


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
    logger.warning(
        "dead letter %s: kind=%s subject=%s reason=%s", letter.pk, kind, fields["subject"], reason_code
    )
    return letter


def dead_letter_set_notes(*, letter: DeadLetter, notes: str, actor: Any, via: str) -> DeadLetter:
    """Staff edit a dead letter's notes for colleagues (audited with the previous text)."""
    previous = DeadLetter.objects.filter(pk=letter.pk).values_list("staff_notes", flat=True).first() or ""
    if previous == notes:
        return letter
    DeadLetter.objects.filter(pk=letter.pk).update(staff_notes=notes)
    letter.staff_notes = notes
    audit_record(
        actor=actor,
        via=via,
        action="dead_letter.notes",
        target=letter,
        tenant=letter.tenant,
        details={"previous": previous[-500:]},
    )
    return letter
