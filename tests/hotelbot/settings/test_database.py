"""Statement and lock timeouts by process role (issue 18 item 5): chosen from HOTELBOT_PROCESS_ROLE
or the command line, set on every PostgreSQL session, and a web request held by a stuck query or a
lock answered 503 + Retry-After in seconds, the webhook's message delivered again, never lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from hotelbot.settings.database import process_role, session_options
from messaging.models import Message
from tests.messaging import payloads

ROOT = Path(__file__).resolve().parents[3]
POSTGRES = "postgres" in os.environ.get("DATABASE_URL", "")


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/srv/.venv/bin/gunicorn", "hotelbot.wsgi", "--config", "deploy/gunicorn.conf.py"], "web"),
        (["manage.py", "runserver", "127.0.0.1:8000"], "web"),
        (["/srv/.venv/bin/celery", "-A", "hotelbot", "worker", "--loglevel=INFO"], "worker"),
        (["/usr/lib/python3/site-packages/celery/__main__.py", "-A", "hotelbot", "beat"], "beat"),
        (["manage.py", "migrate", "--noinput"], "command"),
        (["manage.py", "purge_old_data"], "command"),
        (["/srv/.venv/bin/pytest", "tests/"], "command"),
        ([], "command"),
    ],
)
def test_the_role_is_read_from_the_command_line_when_not_set(argv: list[str], role: str) -> None:
    assert process_role(argv) == role


def test_an_explicit_role_wins_and_a_bad_one_is_refused() -> None:
    assert process_role(["manage.py", "migrate"], "web") == "web"
    with pytest.raises(ImproperlyConfigured, match="HOTELBOT_PROCESS_ROLE must be one of web, worker"):
        process_role(["gunicorn"], "webserver")


def test_session_options_are_milliseconds_and_zero_is_off() -> None:
    assert session_options(statement_timeout=5, lock_timeout=0.25) == (
        "-c statement_timeout=5000 -c lock_timeout=250"
    )
    assert session_options(statement_timeout=0, lock_timeout=0) == "-c statement_timeout=0 -c lock_timeout=0"


_SLEEPER = """
import json, time
import django
django.setup()
from django.db import OperationalError, connection
with connection.cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    statement = cursor.fetchone()[0]
    cursor.execute("SHOW lock_timeout")
    lock = cursor.fetchone()[0]
    started = time.monotonic()
    try:
        cursor.execute("SELECT pg_sleep(1.5)")
        outcome = "finished"
    except OperationalError as e:
        outcome = type(e.__cause__).__name__
took = time.monotonic() - started
print(json.dumps({"statement": statement, "lock": lock, "outcome": outcome, "took": took}))
"""


def _sleep_as(role: str) -> dict[str, object]:
    db = connection.settings_dict  # the test database
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": url, "HOTELBOT_PROCESS_ROLE": role}
    env["DB_STATEMENT_TIMEOUT_WEB"] = "0.5"
    result = subprocess.run(
        [sys.executable, "-c", _SLEEPER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(not POSTGRES, reason="statement and lock timeouts are PostgreSQL's")
@pytest.mark.django_db
def test_a_web_process_cancels_a_long_statement_a_worker_lets_it_finish() -> None:
    web = _sleep_as("web")
    assert (web["statement"], web["lock"], web["outcome"]) == ("500ms", "2s", "QueryCanceled")
    assert float(str(web["took"])) < 1.5  # cancelled at its timeout, not after the sleep

    worker = _sleep_as("worker")
    assert (worker["statement"], worker["lock"], worker["outcome"]) == ("1min", "10s", "finished")


@pytest.fixture
def web_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """This process's sessions get the web role's options ``request.param`` = (statement, lock)."""
    statement, lock = request.param
    options = connection.settings_dict["OPTIONS"]
    saved = options.get("options", "")

    def renew(value: str) -> None:
        options["options"] = value
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()  # the pool was built with the old options

    renew(f"{saved} {session_options(statement_timeout=statement, lock_timeout=lock)}".strip())
    yield
    renew(saved)


@pytest.fixture
def hotel_table_locked() -> Iterator[psycopg.Connection]:
    """Another session holds ACCESS EXCLUSIVE on the hotels table (a migration, a stuck transaction);
    PostgreSQL ends it after 15 s whatever happens, so a failing test cannot hang."""
    params = connection.get_connection_params()
    params.pop("pool", None)
    params.pop("cursor_factory", None)
    params["options"] = f"{params.get('options', '')} -c idle_in_transaction_session_timeout=15000"
    holder = psycopg.connect(**params)
    holder.execute("LOCK TABLE messaging_hotel IN ACCESS EXCLUSIVE MODE")
    yield holder
    holder.close()


@pytest.mark.skipif(not POSTGRES, reason="statement and lock timeouts are PostgreSQL's")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the lock holder sees the hotel
@pytest.mark.parametrize(
    "web_sessions", [(5.0, 0.3), (0.5, 0.0)], ids=["lock_timeout", "statement_timeout"], indirect=True
)
def test_a_stuck_webhook_request_answers_503_at_once_and_the_redelivery_is_stored(
    web_sessions: None, hotel, webhook_client, hotel_table_locked: psycopg.Connection
) -> None:
    body = payloads.incoming_text(id_message="HELD1", text="Is breakfast included?")
    started = time.monotonic()
    held = webhook_client.post("/webhooks/green-api/", body, format="json")
    took = time.monotonic() - started

    assert held.status_code == 503, held.content
    assert held.json()["error"]["code"] == "database_busy"
    assert held["Retry-After"] == "30"  # Green API redelivers
    assert took < 5.0  # its timeout, not the 15 s the lock is held
    hotel_table_locked.rollback()  # the lock is gone: Green API's redelivery goes through

    again = webhook_client.post("/webhooks/green-api/", body, format="json")
    assert again.status_code == 200, again.content
    assert again.json() == {"status": "stored"}
    assert Message.objects.filter(provider_message_id="HELD1").count() == 1
