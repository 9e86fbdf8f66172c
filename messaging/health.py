"""The messaging domain's health checks, registered with ``reliability.health`` in ``ready()``.

Each function returns the OK diagnosis or raises a django-health-check exception with one a person
can act on. The provider checks are registered as *cached*: a probe reads the cached answer, the
health monitor task refreshes it; Green API's ``getStateInstance`` is paced per instance.
"""

from __future__ import annotations

from django.conf import settings
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from messaging import selectors
from messaging.clients import deepseek, green_api
from reliability.crypto import FieldEncryptionError
from reliability.metrics import WHATSAPP_NOT_AUTHORIZED

SWEEPER_HEARTBEAT = "reply_sweeper"


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def reply_backlog() -> str:
    """Reply jobs due for longer than HEALTH_REPLY_BACKLOG_SECONDS: some is a warning, many fail."""
    older_than = settings.HEALTH_REPLY_BACKLOG_SECONDS
    count, oldest = selectors.reply_jobs_overdue(older_than=older_than)
    if not count:
        return f"no reply job overdue by more than {older_than:g} s"
    text = (
        f"{count} reply job(s) due for more than {older_than:g} s and not taken (oldest {_age(oldest or 0)})"
        ": check that workers run (/health/ celery_workers) and the broker answers; the sweeper "
        "re-publishes lost tasks; admin Messaging > Reply jobs shows last_error"
    )
    if count > settings.HEALTH_REPLY_BACKLOG_MAX:
        raise ServiceUnavailable(text)
    raise ServiceWarning(text)


def green_api_instances() -> str:
    """Every hotel's WhatsApp instance is ``authorized`` (one paced getStateInstance each)."""
    hotels = selectors.hotels_for_health()
    if not hotels:
        return "no hotels configured"
    problems: list[str] = []
    not_authorized = 0
    for hotel in hotels:
        where = f"hotel {hotel.name!r} (instance {hotel.green_api_instance_id})"
        try:
            api_token = hotel.green_api_token
        except FieldEncryptionError:  # counted by the encrypted_values check; never sent encrypted
            problems.append(f"{where}: its Green API token cannot be decrypted (see encrypted_values)")
            continue
        client = green_api.client_for(id_instance=hotel.green_api_instance_id, api_token=api_token)
        try:
            state = client.get_state_instance()
        except green_api.GreenApiError as e:  # messages are masked by the client
            problems.append(f"{where}: Green API did not answer ({e})")
            continue
        if state != "authorized":
            not_authorized += 1
            problems.append(
                f"{where} is {state or 'in an unknown state'}: log the number in again (QR code in the "
                "Green API console); replies to this hotel fail until then"
            )
    WHATSAPP_NOT_AUTHORIZED.set(not_authorized)  # an instance Green API did not answer for is unknown
    if problems:
        raise ServiceUnavailable("; ".join(problems))
    return f"{len(hotels)} instance(s) authorized"


def deepseek_reachable() -> str:
    """DeepSeek answers ``GET /models`` with our key and offers the configured model."""
    try:
        models = deepseek.default_client().models()
    except deepseek.DeepSeekRejected as e:
        raise ServiceUnavailable(
            f"{e}: check DEEPSEEK_API_KEY and the account balance; guests get canned answers meanwhile"
        ) from e
    except deepseek.DeepSeekError as e:
        raise ServiceUnavailable(f"{e}: guests get canned answers until DeepSeek answers again") from e
    if settings.DEEPSEEK_MODEL not in models:
        raise ServiceWarning(
            f"DeepSeek does not offer the model {settings.DEEPSEEK_MODEL!r} "
            f"(offers: {', '.join(models)[:200]}): set DEEPSEEK_MODEL to one of them"
        )
    return f"DeepSeek answered, model {settings.DEEPSEEK_MODEL} offered"
