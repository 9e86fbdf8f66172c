"""The Celery application; configuration comes from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os

from celery import Celery

from hotelbot import fsbroker  # noqa: F401  registers the embedded broker's transport alias

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")

app = Celery("hotelbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
