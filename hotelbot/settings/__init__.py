"""hotelbot settings, driven by environment variables, composed from one module per concern.

``DJANGO_SETTINGS_MODULE`` stays ``hotelbot.settings``: this package's ``__init__`` imports each
module in order (a later module may use an earlier one's values). With no environment at all the
project runs on the *embedded default*: SQLite in WAL mode, Django's local-memory cache, a filesystem
Celery broker and the fake providers on loopback; ``DATABASE_URL``, ``REDIS_URL`` and
``CELERY_BROKER_URL`` switch to PostgreSQL, django-redis and a Redis broker. Every variable read is
listed by ``hotelbot.envvars`` and documented in ``.env.example`` and docs/configuration.md;
``manage.py check`` names a set variable that none of them reads (hotelbot.E010).
"""

# The order is the composition: a module may use an earlier one's values.
# isort: off
from .env import *  # noqa: F403
from .base import *  # noqa: F403  (INSTALLED_APPS, MIDDLEWARE, templates, static files)
from .database import *  # noqa: F403
from .cache_redis import *  # noqa: F403
from .celery import *  # noqa: F403
from .beat import *  # noqa: F403
from .providers import *  # noqa: F403
from .replies import *  # noqa: F403
from .api import *  # noqa: F403
from .security import *  # noqa: F403
from .logs import *  # noqa: F403
from .health_metrics import *  # noqa: F403
from .breakers import *  # noqa: F403
from .webhook import *  # noqa: F403
from .dead_letters import *  # noqa: F403
from .retention import *  # noqa: F403
from .mail import *  # noqa: F403
from .degradation import *  # noqa: F403
# isort: on
