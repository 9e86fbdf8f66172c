"""Settings of the naive bot (``DJANGO_SETTINGS_MODULE=bench.cost.naive.settings``): the database,
broker and providers of the environment ``bench.cost`` gives it, Django's defaults otherwise."""

import os
from urllib.parse import urlsplit

_db = urlsplit(os.environ["NAIVE_DATABASE_URL"])
SECRET_KEY = "naive-bench-only"  # noqa: S105 - a throwaway benchmark process
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.cost.naive.views"
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": _db.port or 5432,
        # A naive bot still keeps the web's connections (Django's persistent connections); Celery's
        # Django fixup closes the worker's after each task, as it does for any Django project.
        "CONN_MAX_AGE": 600,
    }
}
CELERY_BROKER_URL = os.environ["NAIVE_BROKER_URL"]
WEBHOOK_TOKEN = os.environ["FAKE_GREEN_API_WEBHOOK_TOKEN"]
GREEN_API_URL = os.environ["GREEN_API_URL"]
GREEN_API_ID_INSTANCE = os.environ.get("GREEN_API_ID_INSTANCE", "1101000001")
GREEN_API_TOKEN = os.environ.get("GREEN_API_TOKEN", "test-token")
DEEPSEEK_URL = os.environ["DEEPSEEK_URL"]
DEEPSEEK_API_KEY = os.environ.get("DEEPSEEK_API_KEY", "sk-test")
