"""Who may post a Green API notification: per-hotel webhook tokens, checked on the hot path.

Each hotel has its own webhook token (``messaging.services.hotels`` issues them); only its SHA-256
digest is stored. A request's token is hashed and looked up in a small per-process cache of
credentials (digest -> hotel), so an accepted notification costs no database round trip. A digest
the cache does not know is looked up in the database at once (a freshly issued token works on its
first request); entries live ``WEBHOOK_CREDENTIAL_CACHE_SECONDS`` (30 s by default), which is how long
a token revoked elsewhere (rotated with no grace, hotel deleted or re-numbered) can still be accepted
by a process that cached it. A rotated-out token's grace deadline is cached with it and checked on
every request, so it ends on time.

Looking a token up by its digest is safe against timing attacks: the attacker controls the token,
not its SHA-256, so how far a dictionary or index comparison gets says nothing about a valid token.

A token is accepted only for its own hotel's instance (the URL's and the body's ``idInstance``):
a valid token of hotel A with hotel B's instance is refused exactly like a wrong token (401), and
recorded for staff as an audit row (``webhook.refused``, tenant = the token's hotel; never the token),
at most one row per (token's hotel, claimed instance) per ``WEBHOOK_REFUSAL_AUDIT_INTERVAL`` per process.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from messaging.models import Hotel
from reliability.audit import audit_record

REFUSED_ACTION = "webhook.refused"
_CACHE_MAX = 20_000  # digests (two per hotel at most); cleared whole beyond it
_AUDIT_KEYS_MAX = 10_000


def webhook_token_digest(token: str) -> str:
    """The stored form of a webhook token: hex SHA-256. A plain fast hash is right for a 256-bit
    random token (no dictionary to guess from, so a slow KDF would only slow the webhook down)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class WebhookCredential:
    """The hotel a valid webhook token belongs to."""

    hotel_id: int
    instance_id: str
    valid_until: float | None = None  # wall-clock deadline of a rotated-out token; None: current


@dataclass(frozen=True, slots=True)
class _Entry:
    credential: WebhookCredential
    loaded_at: float


_cache: dict[str, _Entry] = {}
_lock = threading.Lock()
_refusals_audited: dict[tuple[int, str], float] = {}


def credentials_forget(*, hotel_id: int) -> None:
    """Drop this process's cached credentials of one hotel (after a rotation in this process)."""
    with _lock:
        for digest in [d for d, e in _cache.items() if e.credential.hotel_id == hotel_id]:
            del _cache[digest]


def _load(digest: str, *, now: float) -> WebhookCredential | None:
    """The hotel whose current token, or previous token still in its grace period, has ``digest``."""
    row = (
        Hotel.objects.filter(
            Q(webhook_token_hash=digest)
            | Q(webhook_token_previous_hash=digest, webhook_token_previous_expires_at__gt=timezone.now())
        )
        .order_by()
        .values_list("pk", "green_api_instance_id", "webhook_token_hash", "webhook_token_previous_expires_at")
        .first()
    )
    if row is None:
        return None
    pk, instance_id, current, previous_expires = row
    valid_until = None
    if not hmac.compare_digest(current, digest) and previous_expires is not None:
        valid_until = previous_expires.timestamp()
    credential = WebhookCredential(hotel_id=pk, instance_id=instance_id, valid_until=valid_until)
    with _lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[digest] = _Entry(credential=credential, loaded_at=now)
    return credential


def webhook_credential_find(*, token: str) -> WebhookCredential | None:
    """The hotel ``token`` authenticates (cached per process), or None for an unknown or expired one."""
    if not token:
        return None
    digest = webhook_token_digest(token)
    now = time.monotonic()
    entry = _cache.get(digest)
    if entry is not None and now - entry.loaded_at < settings.WEBHOOK_CREDENTIAL_CACHE_SECONDS:
        credential = entry.credential
        if credential.valid_until is None or time.time() < credential.valid_until:
            return credential
        # A previous token past its grace: refused (re-read in case it was issued again since).
    return _load(digest, now=now)


def global_token_matches(*, token: str) -> bool:
    """The single-hotel opt-in: ``GREEN_API_WEBHOOK_TOKEN`` when set (constant-time)."""
    expected = settings.GREEN_API_WEBHOOK_TOKEN
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def webhook_refusal_record(
    *, credential: WebhookCredential, claimed_instance: str, url_instance: str
) -> None:
    """Record for staff that a valid token of one hotel claimed another instance (never the token);
    at most one row per (hotel, claimed instance) per WEBHOOK_REFUSAL_AUDIT_INTERVAL in a process."""
    key = (credential.hotel_id, claimed_instance[:32])
    now = time.monotonic()
    with _lock:
        last = _refusals_audited.get(key)
        if last is not None and now - last < settings.WEBHOOK_REFUSAL_AUDIT_INTERVAL:
            return
        if len(_refusals_audited) >= _AUDIT_KEYS_MAX:
            _refusals_audited.clear()
        _refusals_audited[key] = now
    audit_record(
        actor=None,
        via="system",
        action=REFUSED_ACTION,
        target_type="messaging.hotel",
        target_id=str(credential.hotel_id),
        tenant=str(credential.hotel_id),
        reason="A valid webhook token of this hotel was sent with another Green API instance; refused (401).",
        details={
            "token_instance": credential.instance_id,
            "claimed_instance": claimed_instance[:32],
            "url_instance": url_instance[:32],
            "previous_token": credential.valid_until is not None,
        },
    )
