"""Core: debug, secret key, hosts, apps, middleware, templates, static files, i18n."""

from __future__ import annotations

import os
from pathlib import Path

from .env import env_bool, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("HOTELBOT_VAR_DIR", BASE_DIR / "var"))

# Off unless the environment turns it on: make run, deploy/Procfile.dev, the tests (pyproject's
# pytest env) and the drill/bench stacks set DJANGO_DEBUG=1 themselves (docs/security.md).
DEBUG = env_bool("DJANGO_DEBUG", False)
# The public development key stands in when none is set, so the settings still load and the system
# check (hotelbot/checks.py, hotelbot.E001) refuses to start without DEBUG, naming DJANGO_SECRET_KEY.
DEV_SECRET_KEY = "django-insecure-dev-only-key-do-not-use-in-production-0123456789abcdef"  # noqa: S105
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or DEV_SECRET_KEY
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "console.apps.OpsAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "health_check",
    "django_prometheus",
    "django_celery_beat",
    "reliability",
    "messaging",
    "console",  # the staff console (admin, dashboard, API): the top floor, imports both apps
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "hotelbot.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, the API docs' Swagger UI) straight from the apps: no collectstatic step
    # and no proxy rule needed, also under gunicorn with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # The `database` breaker: while the database is down, requests that need it are answered 503
    # (JSON envelope, or a maintenance page for admin) before anything touches it.
    "reliability.middleware.DatabaseBreakerMiddleware",
    # Before sessions and CSRF: a refused request (switch off, read-only) touches nothing else.
    "reliability.middleware.DegradationMiddleware",
    # Django's sessions, user and messages, except on the webhook (hotelbot/middleware.py).
    "hotelbot.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "hotelbot.middleware.AuthenticationMiddleware",
    "hotelbot.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "hotelbot.urls"
WSGI_APPLICATION = "hotelbot.wsgi.application"
ASGI_APPLICATION = "hotelbot.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise indexes it at start (collectstatic fills it)
WHITENOISE_USE_FINDERS = True  # serve from the apps' static dirs (collectstatic optional)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
