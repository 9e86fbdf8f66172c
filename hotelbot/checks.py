"""System checks that make an unsafe deployment refuse to start (issue 16: safe by default).

Without ``DEBUG`` the process must not run with a value anyone can read in this repository or with
a host header that anyone can send. These are *errors* (``manage.py`` refuses every command but
``check``-like ones, and ``startup_checks_or_exit`` stops gunicorn, the Celery worker and beat):

* ``hotelbot.E001`` ``DJANGO_SECRET_KEY`` unset or the public development key (sessions, CSRF and
  password-reset tokens would be forgeable);
* ``hotelbot.E002`` ``GREEN_API_WEBHOOK_TOKEN`` equal to the public ``dev-webhook-token``;
* ``hotelbot.E003`` ``DJANGO_ALLOWED_HOSTS`` containing ``*`` (host-header poisoning of the links in
  staff mails and password resets).

Alerts must reach a person: ``hotelbot.W001`` when ``ADMINS`` is empty (breaker and degradation
alerts go only there), ``hotelbot.W002`` when no mail server is configured or the mail backend
does not deliver (console, locmem, dummy). ``manage.py send_test_alert`` proves the path.

The environment is read as written: ``hotelbot.E010`` when a variable that looks like ours (our
prefixes, or a close match of one of our names) is set but nothing reads it, with the closest known
name; ``hotelbot.W010`` for the old name of a renamed variable (hotelbot/envvars.py).

Each message names the variable to set and nothing of its value.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

#: The DEBUG default of the global webhook token in earlier versions, published in this repository.
DEV_WEBHOOK_TOKEN = "dev-webhook-token"  # noqa: S105 - the public value the check refuses
#: Mail backends that never reach a person.
UNDELIVERED_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend": "prints mails to the process's output",
    "django.core.mail.backends.locmem.EmailBackend": "keeps mails in memory",
    "django.core.mail.backends.dummy.EmailBackend": "drops every mail",
    "django.core.mail.backends.filebased.EmailBackend": "writes mails to files",
}


def _dev_secret_key(key: str) -> bool:
    dev_key = getattr(settings, "DEV_SECRET_KEY", "")
    return not key or key == dev_key or key.startswith("django-insecure-")


def security_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001-E003: refuse to run without DEBUG on a public secret or an open host list."""
    if settings.DEBUG:
        return []
    errors: list[checks.CheckMessage] = []
    try:
        secret_key = str(settings.SECRET_KEY or "")
    except ImproperlyConfigured:  # Django refuses to hand out an empty SECRET_KEY
        secret_key = ""
    if _dev_secret_key(secret_key):
        errors.append(
            checks.Error(
                "DJANGO_SECRET_KEY is not set (or is the public development key) while DJANGO_DEBUG is off.",
                hint="Set DJANGO_SECRET_KEY to a long random value, e.g. the output of python -c "
                "'from django.core.management.utils import get_random_secret_key as k; print(k())'; "
                "or set DJANGO_DEBUG=1 on a development machine.",
                id="hotelbot.E001",
            )
        )
    if getattr(settings, "GREEN_API_WEBHOOK_TOKEN", "") == DEV_WEBHOOK_TOKEN:
        errors.append(
            checks.Error(
                f"GREEN_API_WEBHOOK_TOKEN is the public development value {DEV_WEBHOOK_TOKEN!r} while "
                "DJANGO_DEBUG is off: anyone could post notifications as any hotel.",
                hint="Unset GREEN_API_WEBHOOK_TOKEN (each hotel has its own webhook token: "
                "manage.py hotel_create / hotel_rotate_webhook_token) or set a long random value.",
                id="hotelbot.E002",
            )
        )
    if "*" in settings.ALLOWED_HOSTS:
        errors.append(
            checks.Error(
                "DJANGO_ALLOWED_HOSTS contains '*' while DJANGO_DEBUG is off: any Host header is "
                "accepted (poisoned links in staff mails and password resets).",
                hint="Set DJANGO_ALLOWED_HOSTS to the host names the proxy serves, comma-separated.",
                id="hotelbot.E003",
            )
        )
    return errors


def alert_recipients(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001-W002: without DEBUG, alerts (dead replies, breakers open, degradation) reach a person."""
    if settings.DEBUG:
        return []
    warnings: list[checks.CheckMessage] = []
    if not settings.ADMINS:
        warnings.append(
            checks.Warning(
                "ADMINS is empty: breaker, degradation and dead-reply alerts reach nobody (a hotel's "
                "staff_email only gets that hotel's guest alerts).",
                hint="Set ADMINS='Ops <ops@example.com>' (comma-separated), then run "
                "manage.py send_test_alert.",
                id="hotelbot.W001",
            )
        )
    backend = str(settings.EMAIL_BACKEND)
    if backend in UNDELIVERED_BACKENDS:
        warnings.append(
            checks.Warning(
                f"The mail backend {backend.rsplit('.', 2)[-2]} {UNDELIVERED_BACKENDS[backend]}: "
                "alerts reach nobody.",
                hint="Set EMAIL_URL=smtp+tls://user:password@host:587 (or EMAIL_HOST and EMAIL_*), then "
                "run manage.py send_test_alert.",
                id="hotelbot.W002",
            )
        )
    elif backend.endswith("smtp.EmailBackend") and not _mail_server_configured():
        warnings.append(
            checks.Warning(
                "No mail server is configured (EMAIL_URL and EMAIL_HOST unset): alerts go to "
                f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}, where no server usually listens.",
                hint="Set EMAIL_URL=smtp+tls://user:password@host:587 (or EMAIL_HOST and EMAIL_*), then "
                "run manage.py send_test_alert.",
                id="hotelbot.W002",
            )
        )
    return warnings


def _mail_server_configured() -> bool:
    import os

    return bool(os.environ.get("EMAIL_URL") or os.environ.get("EMAIL_HOST"))


def environment_variables(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E010: a set variable that looks like ours but nothing reads (a typo is an error, not silence);
    W010: the old name of a renamed variable (still read while the new one is unset)."""
    import os

    from hotelbot import envvars

    messages: list[checks.CheckMessage] = []
    for name, suggestion in envvars.unknown_variables(os.environ, envvars.known_variables()):
        messages.append(
            checks.Error(
                f"The environment variable {name} is set, but hotelbot reads no variable of that name.",
                hint=(f"Did you mean {suggestion}? " if suggestion else "")
                + "Every variable is listed in .env.example and docs/configuration.md; unset it if it "
                "is not meant for hotelbot.",
                id="hotelbot.E010",
            )
        )
    for old, new in envvars.RENAMED.items():
        if old in os.environ:
            ignored = " (ignored: the new name is set too)" if new in os.environ else ""
            messages.append(
                checks.Warning(
                    f"The environment variable {old} is deprecated: it was renamed {new}{ignored}.",
                    hint=f"Set {new} instead of {old}; the old name will stop working in a later release.",
                    id="hotelbot.W010",
                )
            )
    return messages


def register() -> None:
    """Called from ``ReliabilityConfig.ready()`` (``hotelbot`` is not an app of its own)."""
    checks.register(security_settings, checks.Tags.security)
    checks.register(alert_recipients, "alerts")
    checks.register(environment_variables, "environment")


def startup_checks_or_exit(process: str) -> None:
    """Run the system checks the way ``manage.py`` does and exit with status 1 on any error.

    gunicorn (``deploy/gunicorn.conf.py``: ``on_starting``), the Celery worker (``worker_init``) and
    beat (``beat_init``) call it: unlike ``manage.py`` they never run the checks themselves (Celery's
    Django fixup runs them and ignores the result). Warnings are printed and the process goes on.
    """
    import django
    from django.core.management.base import BaseCommand, SystemCheckError

    django.setup()
    try:
        BaseCommand(stdout=sys.stderr, stderr=sys.stderr).check(display_num_errors=True)
    except SystemCheckError as e:
        # sys.__stderr__: Celery may have redirected sys.stderr to its logger by then.
        print(f"{process}: refusing to start.\n{e}", file=sys.__stderr__ or sys.stderr, flush=True)
        raise SystemExit(1) from None
