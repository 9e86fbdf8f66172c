"""Every write of dead letters, in one module: created (:func:`record_failure` for work that failed
for good, :func:`dead_letter_quarantine` for input that could not even be processed), redriven
(:func:`redrive`, :func:`redrive_due` by beat), resolved (:func:`subject_resolved`, :func:`resolve`),
discarded or parked, annotated (:func:`dead_letter_set_notes`) and bulk-retried (:func:`redrive_many`).
The category is derived from ``reliability.retry``'s failure vocabulary (:func:`classify_category`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import DataError, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone

from hotelbot.exceptions import ValidationFailed
from reliability import retry
from reliability.audit import audit_record
from reliability.breaker import State, registry
from reliability.crypto import FieldEncryptionError
from reliability.masking import storable_text
from reliability.metrics import DLQ_ADDED, DLQ_PROCESSING_SECONDS
from reliability.models import DeadLetter

logger = logging.getLogger(__name__)

Category = DeadLetter.Category
Status = DeadLetter.Status

#: What the redrive task does with each category: "auto" (when the breaker admits calls),
#: "later" (after a backoff, whatever the breaker says), "manual" (a human must act).
STRATEGY: dict[str, str] = {
    Category.RATE_LIMITED: "later",
    Category.PROVIDER_5XX: "auto",
    Category.TIMEOUT: "auto",
    Category.UNKNOWN: "auto",
    Category.AUTH: "manual",
    Category.VALIDATION: "manual",
    Category.QUOTA: "manual",
}


# --- classification (derived from the one failure vocabulary, reliability.retry) --------------------
#: Statuses that say the account cannot pay (Green API's 466, DeepSeek's 402 "Insufficient Balance").
QUOTA_STATUSES = frozenset({402, 466})
#: Statuses that say our credentials are refused.
AUTH_STATUSES = frozenset({401, 403})


def classify_category(error: object = None, *, http_status: int | None = None, text: str = "") -> str:
    """The failure category of an exception, an HTTP status or an error text.

    Quota (Green API's 466, DeepSeek's 402 "Insufficient Balance", or a text saying quota) and auth
    (401, 403) first, then rate limiting (429), validation (other 4xx), provider 5xx, and
    timeouts / connection failures (no status, transient transport errors). A secret that cannot
    be decrypted (``reliability.crypto``) is auth: no retry opens it, a person fixes the keys."""
    if isinstance(error, FieldEncryptionError):
        return Category.AUTH
    status = http_status if http_status is not None else retry.http_status(error)
    lowered = f"{text} {error if error is not None else ''}".lower()
    if status in QUOTA_STATUSES or "quota" in lowered or "insufficient balance" in lowered:
        return Category.QUOTA
    if status in AUTH_STATUSES:
        return Category.AUTH
    if status == 429:
        return Category.RATE_LIMITED
    if status is not None and 400 <= status <= 499 and status not in retry.UNKNOWN_OUTCOME_4XX:
        return Category.VALIDATION
    if status is not None and 500 <= status <= 599:
        return Category.PROVIDER_5XX
    if status in retry.UNKNOWN_OUTCOME_4XX or any(w in lowered for w in ("timeout", "timed out", "deadline")):
        return Category.TIMEOUT
    if isinstance(error, BaseException) and retry.classify_failure(error).transient:
        return Category.TIMEOUT  # a connection failure or reset: transient, no status
    return Category.UNKNOWN


# --- handlers ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RedriveResult:
    """What a handler did with a letter: ``resolved`` (nothing left to do: e.g. already delivered),
    ``handed_back`` (the work is back in its pipeline; the letter waits as retrying), or neither
    (refused: ``detail`` says why; the letter stays as it was)."""

    handed_back: bool = False
    resolved: bool = False
    detail: str = ""


class Handler(Protocol):
    """Registered per kind by the domain app."""

    def redrive(self, letter: DeadLetter, *, actor: Any = None) -> RedriveResult:
        """Hand the failed work back to its pipeline (idempotently: the same claim, fencing and
        reconciliation as the first try, so nothing is done twice)."""
        ...

    def alert(self, letter: DeadLetter) -> None:
        """Tell people (mail) that this letter needs a human."""
        ...


_handlers: dict[str, Handler] = {}


def register_handler(kind: str, handler: Handler) -> None:
    _handlers[kind] = handler


def handler_for(kind: str) -> Handler | None:
    return _handlers.get(kind)


# --- recording ----------------------------------------------------------------------------------------
def _backoff(redrives: int) -> float:
    base, cap = settings.DLQ_REDRIVE_BASE_DELAY, settings.DLQ_REDRIVE_MAX_DELAY
    return float(min(cap, base * 2 ** min(redrives, 30)))


def _open_letter(subject_type: str, subject_id: int | None, kinds: Iterable[str]) -> DeadLetter | None:
    if not subject_type or subject_id is None:
        return None
    return (
        DeadLetter.objects.select_for_update()
        .filter(subject_type=subject_type, subject_id=subject_id, kind__in=list(kinds))
        .filter(status__in=DeadLetter.OPEN_STATUSES)
        .order_by("-created_at")
        .first()
    )


@dataclass(slots=True)
class Failure:
    """One failure for good, as the domain reports it."""

    kind: str
    reason_code: str
    reason: str
    subject: str = ""
    subject_type: str = ""
    subject_id: int | None = None
    tenant: str = ""
    dependency: str = ""
    category: str = ""  # classified from ``error`` / ``http_status`` when empty
    error: BaseException | None = None
    http_status: int | None = None
    attempts: int = 0
    first_failed_at: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


def record_failure(failure: Failure, *, same_kinds: Iterable[str] = ()) -> DeadLetter:
    """Record a failure for good, in the caller's transaction (so it commits or rolls back with the
    status change that caused it). An open letter of the same subject (of ``same_kinds``, default
    its own kind) is updated instead of adding another. Sets the strategy: pending with a redrive
    time, or manual (staff alerted after commit) when the category or the redrive count says so."""
    now = timezone.now()
    secrets = tuple(s for s in failure.secrets if s)
    category = failure.category or classify_category(failure.error, http_status=failure.http_status)
    error_message = storable_text(str(failure.error) if failure.error is not None else "", secrets=secrets)
    kinds = list(same_kinds) or [failure.kind]
    with transaction.atomic():
        letter = _open_letter(failure.subject_type, failure.subject_id, kinds)
        added = letter is None
        if letter is None:
            letter = DeadLetter(
                kind=failure.kind,
                subject_type=failure.subject_type,
                subject_id=failure.subject_id,
                tenant=failure.tenant,
                first_failed_at=failure.first_failed_at or now,
            )
        letter.kind = failure.kind
        letter.subject = storable_text(failure.subject, secrets=secrets)[:200]
        letter.dependency = failure.dependency
        letter.category = category
        letter.reason_code = failure.reason_code[:40]
        letter.reason = storable_text(failure.reason, secrets=secrets)
        letter.error_class = type(failure.error).__name__ if failure.error is not None else ""
        letter.error_message = error_message[:4000]
        letter.attempts = max(letter.attempts, failure.attempts)
        letter.last_failed_at = now
        letter.payload = {**(letter.payload or {}), **failure.payload}
        manual = STRATEGY.get(category, "auto") == "manual" or (
            letter.redrive_count >= settings.DLQ_MAX_REDRIVES
        )
        if manual:
            letter.status = Status.MANUAL
            letter.next_redrive_at = None
        else:
            letter.status = Status.PENDING
            letter.next_redrive_at = now + timedelta(seconds=_backoff(letter.redrive_count))
        letter.save()
        if added:
            DLQ_ADDED.labels(failure.kind, letter.reason_code).inc()
        if manual or letter.alerted_at is None:
            transaction.on_commit(lambda: _alert(letter.pk), robust=True)
    logger.error(
        "dead letter %s: kind=%s category=%s status=%s subject=%s reason=%s",
        letter.pk,
        letter.kind,
        category,
        letter.status,
        letter.subject,
        letter.reason_code,
    )
    return letter


def _alert(letter_id: int) -> None:
    """Mail staff (through the kind's handler) once per letter, and again when it goes manual."""
    letter = DeadLetter.objects.filter(pk=letter_id).first()
    if letter is None:
        return
    handler = handler_for(letter.kind)
    if handler is None:
        return
    try:
        handler.alert(letter)
    except Exception:
        logger.exception("dead letter %s: alert failed", letter_id)
        return
    DeadLetter.objects.filter(pk=letter_id).update(alerted_at=timezone.now())


def subject_resolved(*, subject: Model, resolution: str) -> int:
    """The domain reports that the subject's work succeeded (e.g. the redriven reply was delivered):
    its open letters are resolved. Returns how many."""
    now = timezone.now()
    letters = DeadLetter.objects.filter(
        subject_type=_subject_type(subject), subject_id=subject.pk, status__in=DeadLetter.OPEN_STATUSES
    )
    closing = list(letters.values_list("kind", "created_at"))
    if not closing:
        return 0
    changed = letters.update(
        status=Status.RESOLVED,
        resolved_at=now,
        resolution=resolution[:200],
        next_redrive_at=None,
        updated_at=now,
    )
    for kind, created_at in closing:
        _observe_closed(kind, created_at, now)
    return changed


def scrub(letters: QuerySet[DeadLetter], *, keep_payload: Iterable[str] = (), note: str) -> int:
    """Erase the personal data of ``letters`` (a guest asked to be forgotten): the raw body, the
    payload but its ``keep_payload`` keys (ids a redrive needs), the staff notes; open letters are
    discarded (resolution ``note``). Returns how many letters were scrubbed. The caller audits."""
    now = timezone.now()
    keep = tuple(keep_payload)
    scrubbed = 0
    for letter in letters.select_for_update():
        payload = letter.payload if isinstance(letter.payload, dict) else {}
        letter.payload = {key: payload[key] for key in keep if key in payload} or None
        letter.raw, letter.raw_truncated, letter.staff_notes = "", False, ""
        fields = ["payload", "raw", "raw_truncated", "staff_notes", "updated_at"]
        if letter.status in DeadLetter.OPEN_STATUSES:
            letter.status, letter.resolved_at, letter.next_redrive_at = Status.DISCARDED, now, None
            letter.resolution = note[:200]
            fields += ["status", "resolved_at", "next_redrive_at", "resolution"]
            _observe_closed(letter.kind, letter.created_at, now)
        letter.save(update_fields=fields)
        scrubbed += 1
    return scrubbed


def _observe_closed(kind: str, created_at: datetime, now: datetime) -> None:
    """``dlq_processing_duration_seconds``: a letter's life from recorded to resolved or discarded."""
    DLQ_PROCESSING_SECONDS.labels(kind).observe(max(0.0, (now - created_at).total_seconds()))


def _subject_type(subject: Model) -> str:
    return f"{subject._meta.app_label}.{subject._meta.model_name}"


# --- staff and beat actions -------------------------------------------------------------------------
class CannotRedrive(ValidationFailed):
    code = "cannot_redrive"


def redrive(letter: DeadLetter, *, actor: Any = None, via: str = "system", reason: str = "") -> RedriveResult:
    """Hand one letter back to its pipeline. Staff may redrive any open letter (even manual ones);
    the beat task only pending ones that are due."""
    if letter.status not in DeadLetter.OPEN_STATUSES:
        raise CannotRedrive(f"Dead letter {letter.pk} is {letter.status}; only open letters can be retried.")
    handler = handler_for(letter.kind)
    if handler is None:
        raise CannotRedrive(
            f"Nothing can redrive a {letter.get_kind_display()} letter; resolve or discard it."
        )
    # One transaction: the handler's hand-back (e.g. a requeued job, published on commit) and the
    # letter's new status commit together, so a fast worker's outcome (resolved, or died again)
    # can never be overwritten by this "retrying".
    with transaction.atomic():
        return _redrive_in_transaction(letter, handler, actor=actor, via=via, reason=reason)


def _redrive_in_transaction(
    letter: DeadLetter, handler: Handler, *, actor: Any, via: str, reason: str
) -> RedriveResult:
    result = handler.redrive(letter, actor=actor)
    now = timezone.now()
    if result.resolved:
        fields: dict[str, Any] = {"status": Status.RESOLVED, "resolved_at": now, "next_redrive_at": None}
        fields["resolution"] = (result.detail or "nothing left to do")[:200]
        if actor is not None and getattr(actor, "is_authenticated", False):
            fields["resolved_by"] = actor
    elif result.handed_back:
        fields = {"status": Status.RETRYING, "next_redrive_at": None}
    else:
        raise CannotRedrive(result.detail or f"Dead letter {letter.pk} could not be redriven.")
    fields["redrive_count"] = letter.redrive_count + 1
    fields["updated_at"] = now
    DeadLetter.objects.filter(pk=letter.pk).update(**fields)
    for name, value in fields.items():
        setattr(letter, name, value)
    if result.resolved:
        _observe_closed(letter.kind, letter.created_at, now)
    if actor is not None:
        audit_record(
            actor=actor,
            via=via,
            action="dead_letter.retry",
            target=letter,
            tenant=letter.tenant,
            reason=reason,
            details={"result": letter.status, "detail": result.detail},
        )
    return result


def _close(letter: DeadLetter, *, status: str, actor: Any, via: str, reason: str, action: str) -> DeadLetter:
    if letter.status not in DeadLetter.OPEN_STATUSES:
        raise ValidationFailed(f"Dead letter {letter.pk} is already {letter.status}.")
    now = timezone.now()
    letter.status = status
    letter.next_redrive_at = None
    if status in (Status.RESOLVED, Status.DISCARDED):
        letter.resolved_at = now
        letter.resolved_by = actor if getattr(actor, "is_authenticated", False) else None
        letter.resolution = reason[:200]
    if reason:
        stamp = f"{now:%Y-%m-%d %H:%M} {getattr(actor, 'username', 'system')}: {reason}"
        letter.staff_notes = f"{letter.staff_notes}\n{stamp}".strip()
    letter.save()
    if status in (Status.RESOLVED, Status.DISCARDED):
        _observe_closed(letter.kind, letter.created_at, now)
    audit_record(actor=actor, via=via, action=action, target=letter, tenant=letter.tenant, reason=reason)
    return letter


def discard(letter: DeadLetter, *, actor: Any, via: str, reason: str) -> DeadLetter:
    """Staff decided nothing more is to be done (say why)."""
    if not reason.strip():
        raise ValidationFailed("Say why the dead letter is discarded.", details={"reason": "Required."})
    return _close(
        letter, status=Status.DISCARDED, actor=actor, via=via, reason=reason, action="dead_letter.discard"
    )


def park(letter: DeadLetter, *, actor: Any, via: str, reason: str = "") -> DeadLetter:
    """Staff take it over: no automatic redrive any more."""
    return _close(
        letter, status=Status.MANUAL, actor=actor, via=via, reason=reason, action="dead_letter.park"
    )


def resolve(letter: DeadLetter, *, actor: Any, via: str, reason: str) -> DeadLetter:
    """Staff solved it outside the system (say how)."""
    if not reason.strip():
        raise ValidationFailed("Say how it was resolved.", details={"reason": "Required."})
    return _close(
        letter, status=Status.RESOLVED, actor=actor, via=via, reason=reason, action="dead_letter.resolve"
    )


@dataclass(slots=True)
class BulkOutcome:
    retried: int = 0
    resolved: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


def redrive_many(letters: QuerySet[DeadLetter], *, actor: Any, via: str, reason: str = "") -> BulkOutcome:
    """Redrive every open letter of ``letters`` (a filtered, tenant-scoped set). One audit row per
    tenant touched (each hotel's staff see their share in their audit log), or one if none matched."""
    outcome = BulkOutcome()
    per_tenant: dict[str, BulkOutcome] = {}
    for letter in letters.filter(status__in=DeadLetter.OPEN_STATUSES).order_by("created_at", "pk").iterator():
        share = per_tenant.setdefault(letter.tenant, BulkOutcome())
        try:
            result = redrive(letter, via=via)
        except ValidationFailed as e:
            outcome.refused += 1
            share.refused += 1
            if len(outcome.errors) < 10:
                outcome.errors.append(f"{letter.pk}: {e.message}")
            continue
        if result.resolved:
            outcome.resolved += 1
            share.resolved += 1
        else:
            outcome.retried += 1
            share.retried += 1
    for tenant, share in sorted(per_tenant.items()) or [("", outcome)]:
        audit_record(
            actor=actor,
            via=via,
            action="dead_letter.retry_bulk",
            target_type="reliability.deadletter",
            tenant=tenant,
            reason=reason,
            details={"retried": share.retried, "resolved": share.resolved, "refused": share.refused},
        )
    return outcome


def _admits(dependency: str) -> bool:
    """The dependency's breaker admits calls now (or there is no dependency to wait for)."""
    if not dependency:
        return True
    snap = registry.breaker(dependency).snapshot()
    if snap.state in (State.CLOSED, State.HALF_OPEN, State.DISABLED, State.METRICS_ONLY):
        return True
    return snap.retry_after <= 0 and snap.state == State.OPEN


def redrive_due(*, now: datetime | None = None, limit: int = 200) -> BulkOutcome:
    """Beat task: redrive pending letters whose time has come, by their category's strategy.
    ``auto`` ones wait while their dependency's breaker rejects calls (no point sending into an
    open breaker; they go as soon as it admits calls)."""
    now = now or timezone.now()
    outcome = BulkOutcome()
    due = DeadLetter.objects.filter(status=Status.PENDING, next_redrive_at__lte=now).order_by(
        "next_redrive_at", "pk"
    )
    admits: dict[str, bool] = {}
    for letter in due[:limit]:
        if STRATEGY.get(letter.category, "auto") == "auto":
            if letter.dependency not in admits:
                admits[letter.dependency] = _admits(letter.dependency)
            if not admits[letter.dependency]:
                continue
        if letter.redrive_count >= settings.DLQ_MAX_REDRIVES:
            DeadLetter.objects.filter(pk=letter.pk, status=Status.PENDING).update(
                status=Status.MANUAL, next_redrive_at=None, updated_at=now
            )
            _alert(letter.pk)
            outcome.refused += 1
            continue
        try:
            result = redrive(letter)
        except ValidationFailed as e:
            # Try again later rather than every minute.
            DeadLetter.objects.filter(pk=letter.pk, status=Status.PENDING).update(
                next_redrive_at=now + timedelta(seconds=_backoff(letter.redrive_count + 1)), updated_at=now
            )
            outcome.refused += 1
            if len(outcome.errors) < 10:
                outcome.errors.append(f"{letter.pk}: {e.message}")
            continue
        if result.resolved:
            outcome.resolved += 1
        else:
            outcome.retried += 1
    return outcome


# --- quarantine: what could not even be processed (a webhook's body, ...) ---------------------------
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
    tenant: str = "",
    resolution: str = "",
) -> DeadLetter:
    """Keep something that could not be processed as a pending dead letter, safely and bounded.
    ``tenant``: whose data it is, when known (staff of that tenant see it; empty = operations only).
    ``resolution``: it was dealt with after all (e.g. cleaned and processed): the letter is kept
    for staff already resolved, with this note, and not counted as a new dead letter.

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
        "tenant": tenant[:64],
    }
    if resolution:
        fields.update(
            status=DeadLetter.Status.RESOLVED, resolved_at=timezone.now(), resolution=resolution[:200]
        )
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
    if not resolution:
        DLQ_ADDED.labels(kind, fields["reason_code"]).inc()
    logger.log(
        logging.INFO if resolution else logging.WARNING,
        "dead letter %s: kind=%s subject=%s reason=%s",
        letter.pk,
        kind,
        fields["subject"],
        reason_code,
        extra={"dead_letter": letter.pk, "kind": kind, "reason_code": fields["reason_code"]},
    )
    return letter


# --- staff notes ------------------------------------------------------------------------------------
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
