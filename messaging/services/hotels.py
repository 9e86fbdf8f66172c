"""Onboarding hotels: create one, issue and rotate its webhook token, connect it to Green API.

A webhook token is 32 random bytes (``secrets``), shown once to whoever issued it and stored only as
its SHA-256 digest (``webhook_auth.webhook_token_digest``). Rotation keeps the replaced token valid
for a grace period (``WEBHOOK_TOKEN_GRACE_HOURS``) so notifications Green API sends with it while the
new one is being configured are still accepted. ``hotel_connect`` issues a fresh token itself and
pushes it with the hotel's webhook URL (``setSettings``), then reads the settings back
(``getSettings``) and checks them, so the token never has to pass through a person.

Every action is an audit row (``hotel.create``, ``hotel.webhook_token_rotate``, ``hotel.connect``);
no token, old or new, is ever logged, audited or put in an error.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from hotelbot.exceptions import NotFound, ProviderError, ValidationFailed
from messaging.clients import green_api
from messaging.models import Hotel
from messaging.services.webhook_auth import credentials_forget, webhook_token_digest
from reliability.audit import audit_record

TOKEN_BYTES = 32
#: Longest grace period a rotation accepts (Green API keeps undelivered notifications 24 h).
MAX_GRACE_HOURS = 24.0 * 30
#: What hotel_connect sets besides the URL and token: the notifications the bot consumes.
WEBHOOK_FLAGS: dict[str, str] = {
    "incomingWebhook": "yes",  # guests' messages
    "outgoingWebhook": "yes",  # statuses of our replies
    "outgoingAPIMessageWebhook": "yes",  # the journal of our sends (reconciliation)
    "stateWebhook": "yes",  # the instance's state
}


class HotelNotFound(NotFound):
    code = "hotel_not_found"


class HotelInvalid(ValidationFailed):
    code = "hotel_invalid"


class HotelConnectFailed(ProviderError):
    code = "hotel_connect_failed"


@dataclass(frozen=True, slots=True)
class IssuedWebhookToken:
    """A freshly issued webhook token: ``webhook_token`` exists only here, show it once."""

    hotel: Hotel
    webhook_url: str
    webhook_token: str
    previous_valid_until: datetime | None  # the replaced token's grace deadline, if one remains valid


@dataclass(frozen=True, slots=True)
class ConnectResult:
    hotel: Hotel
    webhook_url: str
    previous_valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class ConnectCheck:
    hotel: Hotel
    webhook_url: str
    url_matches: bool
    token_matches: bool
    flags_off: list[str]

    @property
    def ok(self) -> bool:
        return self.url_matches and self.token_matches and not self.flags_off


def webhook_token_new() -> str:
    """A new webhook token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hotel_webhook_url(*, hotel: Hotel) -> str:
    """The hotel's own webhook URL: ``HOTELBOT_PUBLIC_URL`` + ``/webhooks/green-api/<idInstance>/``."""
    base = settings.HOTELBOT_PUBLIC_URL.rstrip("/")
    if not base:
        raise HotelInvalid("HOTELBOT_PUBLIC_URL is not set: the URL Green API reaches this deployment at.")
    return base + _webhook_path(hotel)


def _webhook_path(hotel: Hotel) -> str:
    return reverse("green-api-webhook-hotel", kwargs={"instance": hotel.green_api_instance_id})


def hotel_get(*, ref: str) -> Hotel:
    """A hotel by its id or its Green API instance id."""
    ref = str(ref).strip()
    query = Q(green_api_instance_id=ref)
    if ref.isdigit() and len(ref) <= 18:
        query |= Q(pk=int(ref))
    hotels = list(Hotel.objects.filter(query)[:2])
    if not hotels:
        raise HotelNotFound(f"No hotel has id or Green API instance {ref!r}.")
    if len(hotels) > 1:
        raise HotelInvalid(f"{ref!r} is one hotel's id and another's instance; use the other key.")
    return hotels[0]


def _grace(grace_hours: float | None) -> timedelta:
    hours = settings.WEBHOOK_TOKEN_GRACE_HOURS if grace_hours is None else grace_hours
    if not 0 <= hours <= MAX_GRACE_HOURS:
        raise HotelInvalid(
            f"The grace period must be between 0 and {MAX_GRACE_HOURS:g} hours (got {hours:g})."
        )
    return timedelta(hours=hours)


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in e.message_dict.items())


def hotel_create(
    *, name: str, instance_id: str, api_token: str, actor: Any = None, via: str
) -> IssuedWebhookToken:
    """Create a hotel with its Green API instance and token, and issue its webhook token."""
    instance_id = instance_id.strip()
    if not instance_id.isdigit():
        raise HotelInvalid(f"The Green API instance id must be digits (got {instance_id!r}).")
    token = webhook_token_new()
    hotel = Hotel(
        name=name.strip(),
        green_api_instance_id=instance_id,
        green_api_token=api_token.strip(),
        webhook_token_hash=webhook_token_digest(token),
        webhook_token_issued_at=timezone.now(),
    )
    webhook_url = hotel_webhook_url(hotel=hotel)
    try:
        hotel.full_clean(exclude=["staff"])
    except ValidationError as e:
        raise HotelInvalid(f"The hotel is not valid: {_errors(e)}") from e
    try:
        with transaction.atomic():
            hotel.save()
            audit_record(actor=actor, via=via, action="hotel.create", target=hotel, tenant=str(hotel.pk))
    except IntegrityError as e:  # a concurrent create of the same instance
        raise HotelInvalid(f"A hotel with Green API instance {instance_id} already exists.") from e
    return IssuedWebhookToken(
        hotel=hotel, webhook_url=webhook_url, webhook_token=token, previous_valid_until=None
    )


def _token_store(*, hotel: Hotel, token: str, grace: timedelta) -> datetime | None:
    """Make ``token`` the hotel's current webhook token; the replaced one stays valid for ``grace``.
    Runs inside the caller's transaction; returns the replaced token's deadline (None: none kept)."""
    locked = Hotel.objects.select_for_update().get(pk=hotel.pk)
    now = timezone.now()
    keep_previous = bool(locked.webhook_token_hash) and grace > timedelta(0)
    previous_until = now + grace if keep_previous else None
    Hotel.objects.filter(pk=hotel.pk).update(
        webhook_token_hash=webhook_token_digest(token),
        webhook_token_issued_at=now,
        webhook_token_previous_hash=locked.webhook_token_hash if keep_previous else "",
        webhook_token_previous_expires_at=previous_until,
        updated_at=now,
    )
    hotel.refresh_from_db()
    transaction.on_commit(lambda: credentials_forget(hotel_id=hotel.pk))
    return previous_until


def hotel_webhook_token_rotate(
    *, hotel: Hotel, grace_hours: float | None = None, actor: Any = None, via: str
) -> IssuedWebhookToken:
    """Issue a new webhook token; the current one stays valid for ``grace_hours`` (default
    ``WEBHOOK_TOKEN_GRACE_HOURS``; 0 revokes it at once, within WEBHOOK_CREDENTIAL_CACHE_SECONDS)."""
    grace = _grace(grace_hours)
    # The URL is shown with the token; without HOTELBOT_PUBLIC_URL, only its path.
    webhook_url = hotel_webhook_url(hotel=hotel) if settings.HOTELBOT_PUBLIC_URL else _webhook_path(hotel)
    token = webhook_token_new()
    with transaction.atomic():
        previous_until = _token_store(hotel=hotel, token=token, grace=grace)
        audit_record(
            actor=actor,
            via=via,
            action="hotel.webhook_token_rotate",
            target=hotel,
            tenant=str(hotel.pk),
            details={"grace_hours": grace.total_seconds() / 3600},
        )
    return IssuedWebhookToken(
        hotel=hotel, webhook_url=webhook_url, webhook_token=token, previous_valid_until=previous_until
    )


def hotels_webhook_tokens_rotate(
    *, hotels: Iterable[Hotel], grace_hours: float | None = None, actor: Any = None, via: str
) -> list[IssuedWebhookToken]:
    """Rotate several hotels' tokens (admin action): one new token each, shown once by the caller."""
    return [
        hotel_webhook_token_rotate(hotel=h, grace_hours=grace_hours, actor=actor, via=via) for h in hotels
    ]


def hotels_connect(
    *, hotels: Iterable[Hotel], actor: Any = None, via: str
) -> tuple[list[ConnectResult], dict[Hotel, str]]:
    """Connect several hotels (admin action); returns the connected ones and each failure's message."""
    done: list[ConnectResult] = []
    failed: dict[Hotel, str] = {}
    for hotel in hotels:
        try:
            done.append(hotel_connect(hotel=hotel, actor=actor, via=via))
        except (HotelConnectFailed, HotelInvalid) as e:
            failed[hotel] = e.message
    return done, failed


def _client(hotel: Hotel) -> green_api.GreenApiClient:
    try:
        return green_api.client_for(id_instance=hotel.green_api_instance_id, api_token=hotel.green_api_token)
    except ValueError as e:
        raise HotelInvalid(str(e)) from e


def hotel_connect(
    *, hotel: Hotel, grace_hours: float | None = None, actor: Any = None, via: str
) -> ConnectResult:
    """Point the hotel's Green API instance at its webhook URL with a fresh token (``setSettings``),
    store the token (the replaced one stays valid for the grace period: Green API applies new settings
    within minutes) and read the settings back (``getSettings``) to check them.

    The token is stored as soon as Green API saved it, or may have (an unknown outcome), never when
    it surely refused: then nothing changed. A failed read-back leaves the new token in place."""
    grace = _grace(grace_hours)
    webhook_url = hotel_webhook_url(hotel=hotel)
    client = _client(hotel)
    token = webhook_token_new()
    try:
        client.set_settings(webhookUrl=webhook_url, webhookUrlToken=token, **WEBHOOK_FLAGS)
    except green_api.GreenApiOutcomeUnknown as e:
        previous_until = _connect_store(hotel=hotel, token=token, grace=grace, actor=actor, via=via, ok=False)
        raise HotelConnectFailed(
            f"Green API setSettings may or may not have applied ({e}); the new token is stored and the "
            f"previous one stays valid until {previous_until}. Run hotel_connect again."
        ) from e
    except green_api.GreenApiError as e:
        raise HotelConnectFailed(f"Green API refused setSettings: {e}. Nothing was changed.") from e
    previous_until = _connect_store(hotel=hotel, token=token, grace=grace, actor=actor, via=via, ok=True)
    check = hotel_connect_check(hotel=hotel)
    if not check.ok:
        raise HotelConnectFailed(
            f"Green API saved the settings but reads back {_check_problems(check)} (it applies new "
            "settings within minutes: check again with hotel_connect --check)."
        )
    return ConnectResult(hotel=hotel, webhook_url=webhook_url, previous_valid_until=previous_until)


def _connect_store(
    *, hotel: Hotel, token: str, grace: timedelta, actor: Any, via: str, ok: bool
) -> datetime | None:
    with transaction.atomic():
        previous_until = _token_store(hotel=hotel, token=token, grace=grace)
        audit_record(
            actor=actor,
            via=via,
            action="hotel.connect",
            target=hotel,
            tenant=str(hotel.pk),
            reason="" if ok else "setSettings outcome unknown",
            details={"grace_hours": grace.total_seconds() / 3600, "settings_saved": ok},
        )
    return previous_until


def _check_problems(check: ConnectCheck) -> str:
    problems = []
    if not check.url_matches:
        problems.append("another webhookUrl")
    if not check.token_matches:
        problems.append("a webhookUrlToken that is not this hotel's")
    if check.flags_off:
        problems.append("notifications off: " + ", ".join(check.flags_off))
    return "; ".join(problems)


def hotel_connect_check(*, hotel: Hotel) -> ConnectCheck:
    """Read the instance's settings (``getSettings``): is it pointed at the hotel's URL, with one of
    the hotel's valid tokens (compared by digest), with the notifications the bot needs on?"""
    webhook_url = hotel_webhook_url(hotel=hotel)
    try:
        current = _client(hotel).get_settings()
    except green_api.GreenApiError as e:
        raise HotelConnectFailed(f"Green API getSettings failed: {e}") from e
    hotel.refresh_from_db()
    digest = webhook_token_digest(str(current.get("webhookUrlToken") or ""))
    valid = {hotel.webhook_token_hash} - {""}
    expires = hotel.webhook_token_previous_expires_at
    if hotel.webhook_token_previous_hash and expires is not None and expires > timezone.now():
        valid.add(hotel.webhook_token_previous_hash)
    return ConnectCheck(
        hotel=hotel,
        webhook_url=webhook_url,
        url_matches=current.get("webhookUrl") == webhook_url,
        token_matches=digest in valid,
        flags_off=[name for name, value in WEBHOOK_FLAGS.items() if current.get(name) != value],
    )
