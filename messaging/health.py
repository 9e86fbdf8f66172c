"""The messaging domain's health checks, registered with ``reliability.health`` in ``ready()``.

Each function returns the OK diagnosis or raises a django-health-check exception with one a person
can act on. The provider checks are registered as *cached*: a probe reads the cached answer, the
health monitor task refreshes it; Green API's ``getStateInstance`` is paced per instance and asked
of a bounded slice of hotels per run (the states Green API pushes cover the others).
"""

from __future__ import annotations

import math
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from messaging import selectors
from messaging.clients import deepseek
from messaging.services import instance_states
from reliability.metrics import WHATSAPP_NOT_AUTHORIZED

SWEEPER_HEARTBEAT = "reply_sweeper"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


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


#: Hotels a message names at most per kind of problem ("... and 812 more"): the page stays small.
NAMES_SHOWN = 10


def _named(items: list[str], total: int) -> str:
    more = total - len(items)
    return "; ".join(items) + (f" and {more} more" if more > 0 else "")


def _hotel(name: str, instance_id: str) -> str:
    return f"hotel {name!r} (instance {instance_id})"


def green_api_instances() -> str:
    """Every hotel's WhatsApp instance is ``authorized``, from the states Green API pushed plus this
    run's getStateInstance calls: a bounded slice of hotels, those known longest ago first
    (``instance_states_probe``). Known not authorized or an unreadable token fails; no state known
    within HEALTH_GREEN_API_STATE_MAX_AGE, Green API not answering or the budget running out warn."""
    run = instance_states.instance_states_probe(
        limit=settings.HEALTH_GREEN_API_PROBE_SLICE,
        budget=settings.HEALTH_GREEN_API_PROBE_BUDGET,
        concurrency=settings.HEALTH_GREEN_API_PROBE_CONCURRENCY,
    )
    max_age = settings.HEALTH_GREEN_API_STATE_MAX_AGE
    known = selectors.instance_states(max_age=max_age, names=NAMES_SHOWN)
    WHATSAPP_NOT_AUTHORIZED.set(known.not_authorized_count)  # a hotel whose state is unknown is not counted
    if not known.hotels:
        return "no hotels configured"
    now = timezone.now()
    failures: list[str] = []
    warnings: list[str] = []
    if known.not_authorized_count:
        named = [
            f"{_hotel(h.name, h.instance_id)} is {h.state} (known {_age(_since(h.known_at, now))} ago)"
            for h in known.not_authorized
        ]
        failures.append(
            f"{known.not_authorized_count} of {known.hotels} instance(s) not authorized: "
            f"{_named(named, known.not_authorized_count)}: log the number in again (QR code in the "
            "Green API console); replies to these hotels fail until then"
        )
    if run.undecryptable:
        named = [_hotel(h.name, h.green_api_instance_id) for h in run.undecryptable[:NAMES_SHOWN]]
        failures.append(
            f"{_named(named, len(run.undecryptable))}: Green API token cannot be decrypted "
            "(see encrypted_values)"
        )
    if known.unknown_count:
        named = [_hotel(h.name, h.instance_id) for h in known.unknown]
        rotation = math.ceil(known.hotels / settings.HEALTH_GREEN_API_PROBE_SLICE)
        warnings.append(
            f"{known.unknown_count} hotel(s) with no instance state known within {_age(max_age)}: "
            f"{_named(named, known.unknown_count)}; every hotel is asked within {rotation} run(s) of "
            "the health monitor (raise HEALTH_GREEN_API_PROBE_SLICE if that is longer than the max age)"
        )
    if run.failed:
        names = {h.pk: _hotel(h.name, h.green_api_instance_id) for h in run.asked}
        named = [f"{names[pk]}: {error}" for pk, error in list(run.failed.items())[:NAMES_SHOWN]]
        warnings.append(
            f"Green API did not answer for {len(run.failed)} of {len(run.asked)} hotel(s) asked: "
            f"{_named(named, len(run.failed))}"
        )
    if run.unfinished or run.skipped:
        warnings.append(
            f"the run's budget of {run.budget:g} s ran out (HEALTH_GREEN_API_PROBE_BUDGET): "
            f"{len(run.unfinished)} call(s) unanswered, {len(run.skipped)} not made (asked first next run)"
        )
    if failures:
        raise ServiceUnavailable("; ".join(failures + warnings))
    if warnings:
        raise ServiceWarning("; ".join(warnings))
    return (
        f"{known.hotels} instance(s) authorized ({len(run.states)} asked this run in {run.elapsed:.1f} s, "
        f"the others as last known within {_age(max_age)})"
    )


def _since(moment: datetime | None, now: datetime) -> float:
    return (now - moment).total_seconds() if moment is not None else 0.0


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
