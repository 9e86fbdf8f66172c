from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from rest_framework.test import APIClient

if TYPE_CHECKING:
    from django.test import Client

    from fakes.deepseek import FakeDeepSeek
    from fakes.green_api import FakeGreenApi
    from messaging.models import Hotel, ReplyJob

WORKER_ENV_PLUGIN = "tests.xdist_worker_env"


def pytest_configure(config: pytest.Config) -> None:
    """Starting xdist workers (``-n``): each imports tests/xdist_worker_env.py before its settings load
    (own Redis databases and var dir). Workers get the interpreter's startup ``sys.path``: run
    ``python -m pytest`` from the project folder (as the Makefile does) so that they can import it."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        plugins = [p for p in os.environ.get("PYTEST_PLUGINS", "").split(",") if p]
        if WORKER_ENV_PLUGIN not in plugins:
            os.environ["PYTEST_PLUGINS"] = ",".join([*plugins, WORKER_ENV_PLUGIN])
    config.pluginmanager.register(_LongGroupsFirst(), "hotelbot-long-groups-first")


#: The groups that take one worker for minutes, longest first (see ``deployment_reason`` below).
LONG_GROUPS = ("drill", "stack")


class _LongGroupsFirst:
    """The drill and the stacks start first, each on a worker of its own, while the other tests fill
    every worker's gaps; scheduled last (xdist hands out work units largest first, and a group of one
    test is the smallest), the drill ran alone at the end of each run with the other cores idle.
    Needs ``--no-loadscope-reorder`` (the Makefile's XDIST): xdist then takes the units in this order.
    Runs after every other plugin's reordering (pytest-django puts database tests first)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        def rank(item: pytest.Item) -> int:
            marker = item.get_closest_marker("xdist_group")
            name = (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None
            return LONG_GROUPS.index(name) if name in LONG_GROUPS else len(LONG_GROUPS)

        items.sort(key=rank)  # stable: the order within each part is kept


def pytest_report_header() -> list[str]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return [
        f"hotelbot: database={db['ENGINE'].rsplit('.', 1)[-1]} cache={settings.CACHES['default']['BACKEND']} "
        f"broker={settings.CELERY_BROKER_URL.split('://')[0]} "
        f"require_services={os.environ.get('REQUIRE_SERVICES', '0')}"
    ]


# Which tests depend on the deployment (SQLite + filesystem broker, or PostgreSQL + Redis), decided
# from what each test asks for: the database (pytest-django's marker or fixtures; a test without them
# cannot reach it), a folder whose tests start the whole stack, or the ``deployment`` marker by hand
# (a test that reaches the cache or broker of the settings without the database). The services run
# runs every test; the embedded run only these (``-m deployment``): the rest behave the same on both.
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
)
STACK_FOLDERS = ("tests/e2e/",)
_DEPLOYMENT_LINE = pytest.StashKey[str]()


def deployment_reason(item: pytest.Item) -> str | None:
    """Why ``item`` depends on the deployment ("database", "stack", "marked"), or None. A stack that
    brings its own servers whatever the run (``own_servers``) does not: it runs once."""
    if item.get_closest_marker("own_servers"):
        return None
    if item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "database"
    if item.nodeid.startswith(STACK_FOLDERS):
        return "stack"
    if item.get_closest_marker("deployment"):
        return "marked"
    return None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by the marker added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: Counter[str] = Counter()
    for item in items:
        reason = deployment_reason(item)
        if item.get_closest_marker("own_servers"):
            # Its own PostgreSQL, Redis or RabbitMQ, yet run after the stacks on their worker: beside
            # them, its servers' CPU made the stacks' timing-bound tests (hand-off publishes) fail.
            item.add_marker(pytest.mark.xdist_group("stack"))
        if reason:
            reasons[reason] += 1
            item.add_marker(pytest.mark.deployment)
            if reason == "stack":
                # One worker runs the stacks one after another (they share Redis DB 14); the drill
                # boots its own servers (or none, embedded) and is the longest test by far (~4.5 min),
                # so it gets a group of its own: another worker runs it beside the stacks.
                group = "drill" if item.get_closest_marker("drill") else "stack"
                item.add_marker(pytest.mark.xdist_group(group))
    depends = sum(reasons.values())
    config.stash[_DEPLOYMENT_LINE] = (
        f"hotelbot: {len(items)} tests; {depends} depend on the deployment (database {reasons['database']}, "
        f"stack {reasons['stack']}, marked {reasons['marked']}) and run in both runs; "
        f"{len(items) - depends} do not and run in the services run only"
    )
    _serialized_rollback(items)


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    line = config.stash.get(_DEPLOYMENT_LINE, "")
    return [line] if line else []


def pytest_collection_finish(session: pytest.Session) -> None:
    """An xdist worker under ``--dist loadgroup``: every grouped test must carry its group in its node
    id (``…@stack``), or xdist spreads the group over workers without a word and the stacks, which
    share Redis databases 14 and 15, run side by side and break each other (pytest 9.2 stopped
    honouring xdist 3.8's node-id suffix: pytest-dev/pytest-xdist#1386; pytest is pinned below it)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(
            f"--dist loadgroup does not group {len(lost)} tests (e.g. {lost[0]}): this pytest and "
            "pytest-xdist do not work together (pytest-dev/pytest-xdist#1386); see requirements-dev.txt"
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)  # an xdist worker: tell the controller
    if workeroutput is not None and _DEPLOYMENT_LINE in session.config.stash:
        workeroutput["hotelbot_deployment"] = session.config.stash[_DEPLOYMENT_LINE]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any) -> None:  # xdist controller (workers collect; it does not)
    line = getattr(node, "workeroutput", {}).get("hotelbot_deployment")
    if line:
        node.config.stash[_DEPLOYMENT_LINE] = line


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or _DEPLOYMENT_LINE not in config.stash:
        return
    terminalreporter.write_line(config.stash[_DEPLOYMENT_LINE])


def _serialized_rollback(items: list[pytest.Item]) -> None:
    """Every transactional test (``transaction=True``, ``live_server``) restores the migrations'
    rows when it ends (serialized rollback). Without it, its flush re-creates content types under
    new ids and drops the seeded breakers, and the next serialized test fails to restore them."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        transactional = (marker is not None and marker.kwargs.get("transaction")) or any(
            name in getattr(item, "fixturenames", ()) for name in ("transactional_db", "live_server")
        )
        if transactional:
            kwargs = {**(marker.kwargs if marker is not None else {}), "transaction": True}
            kwargs["serialized_rollback"] = True
            item.add_marker(pytest.mark.django_db(**kwargs), append=False)


TEST_WEBHOOK_TOKEN = "test-webhook-token"


@pytest.fixture
def webhook_client() -> APIClient:
    from django.conf import settings

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.GREEN_API_WEBHOOK_TOKEN}")
    return client


@pytest.fixture(autouse=True)
def _isolated_reliability_state(settings) -> Iterator[None]:
    """Each test starts with fresh in-process breakers and retry budgets (tests of the shared stores
    build their own or turn BREAKER_DB_STORE back on). Breaker events stay queued; tests call
    write_pending_events() to check them."""
    import uuid

    from messaging.testing import reset_webhook_credentials
    from reliability import testing

    # The global webhook token is an opt-in (empty by default); most tests post with it through
    # webhook_client. Per-hotel tokens have their own tests (tests/messaging/services/test_webhook_auth.py).
    settings.GREEN_API_WEBHOOK_TOKEN = TEST_WEBHOOK_TOKEN
    reset_webhook_credentials()
    # pytest-django runs with DEBUG off: encrypted fields use the key a DEBUG process (the e2e
    # stacks' subprocesses) falls back to, unless the environment configures one (docs/secrets.md).
    if not settings.FIELD_ENCRYPTION_KEYS:
        from reliability.crypto import DEV_KEY

        settings.FIELD_ENCRYPTION_KEYS = [DEV_KEY]
    # Users made by tests hash their password with MD5, not Django's PBKDF2 (a third of a second
    # each on this machine, over a minute of a run); the e2e stacks' own processes keep the default.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.BREAKER_EVENT_WRITER = False
    settings.BREAKER_REDIS_URL = ""
    settings.BREAKER_DB_STORE = False
    # A test sees the webhook's publish on its own thread (and its in-memory SQLite database); the
    # hand-off thread has tests of its own, and the e2e stacks and the drill run the default (on).
    settings.CELERY_REQUEST_PUBLISH_HANDOFF = False
    settings.RATE_LIMIT_REDIS_PREFIX = f"test:rl:{uuid.uuid4().hex[:12]}"  # pacing slots per test
    # A guest message's job is due at once: most tests store a message and process its job in the
    # same breath. The burst window's own tests (tests/messaging/services/test_bursts.py) set it;
    # the e2e stacks and the drill run the product default (3 s).
    settings.REPLY_BURST_QUIET_SECONDS = 0.0
    testing.reset_all()
    yield
    testing.reset_all()


# --- Shared fixtures (the message path's fakes, a hotel, a reply job, the admin, publishes) --------
# Defined here once so that every folder's tests (messaging, console, reliability engines) see them.


@pytest.fixture
def fake_green(settings) -> Iterator[FakeGreenApi]:
    """A fake Green API on a free port (no webhook: notifications queue for polling)."""
    from fakes.green_api import FakeGreenApi

    with FakeGreenApi(status_delays=(0.05, 0.1, 0.15), rate_limits=False) as fake:
        settings.GREEN_API_URL = fake.url
        yield fake


@pytest.fixture
def fake_deepseek(settings) -> Iterator[FakeDeepSeek]:
    from fakes.deepseek import FakeDeepSeek

    with FakeDeepSeek() as fake:
        settings.DEEPSEEK_URL = fake.url
        settings.DEEPSEEK_API_KEY = "sk-test"
        yield fake


@pytest.fixture
def job(fake_green, fake_deepseek) -> ReplyJob:
    """A due reply job for a guest's text question (chat ``CHAT``), with both fakes running."""
    from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
    from tests.messaging.payloads import CHAT

    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)
    inbound = MessageFactory.create(conversation=conversation, text="What time is check-out?")
    return ReplyJobFactory.create(inbound=inbound)


@pytest.fixture
def hotel() -> Hotel:
    from tests.factories import HotelFactory

    return HotelFactory.create()


@pytest.fixture
def ops_client() -> Client:
    """A superuser's logged-in admin client."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def published(monkeypatch) -> list[tuple[int, float]]:
    """Reply-job publishes recorded as (job_id, countdown) instead of sent to the broker."""
    from messaging.services import replies

    calls: list[tuple[int, float]] = []

    def publish(*, job_id: int, countdown: float = 0.0) -> bool:
        calls.append((job_id, countdown))
        return True

    monkeypatch.setattr(replies, "reply_job_publish", publish)
    return calls


@pytest.fixture
def fresh_health(monkeypatch) -> Iterator[None]:
    """No cached health outcomes between tests, and a worker that answers pings (no real worker runs)."""
    from reliability import health, testing

    testing.reset_health()
    monkeypatch.setattr(health.checks, "ping_workers", lambda timeout: ["celery@test"])
    yield
    testing.reset_health()
