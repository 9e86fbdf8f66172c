"""Fault drill: PostgreSQL stops under a running web server (its own throwaway instance).

While it is down: the webhook answers 503 with our envelope and Retry-After (so Green API
redelivers), never a 500 or a hang; admin answers the maintenance page; liveness stays up and
readiness answers 503; after the first request met the outage the ``database`` breaker answers the
later ones at once instead of each waiting for the pool timeout. Once PostgreSQL is back (and the
breaker's open time, which its 503s announce, is over) the first request succeeds: the pool checks
connections before handing them out and does not sleep in a long reconnect backoff. The
notification redelivered during and after the outage is stored exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from drill.stack import BIN, ROOT, ThrowawayPostgres, free_port, wait_http
from tests.messaging import payloads

# Its own PostgreSQL and no Redis in either run: the same test in both, so it runs once.
pytestmark = [pytest.mark.e2e, pytest.mark.own_servers]
#: Pool and connect timeout of the web server: what every request would wait without the breaker.
POOL_TIMEOUT = 4
#: "Fail fast": a generous bound, well under POOL_TIMEOUT, for a busy 2-core machine.
FAST = POOL_TIMEOUT / 2


@pytest.fixture
def web_on_throwaway_db(tmp_path) -> Iterator[tuple[str, ThrowawayPostgres, dict[str, str]]]:
    from django.conf import settings

    pg = ThrowawayPostgres()
    web: subprocess.Popen[bytes] | None = None
    try:
        pg.start()
        pg.create_database()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
        env.update(
            {
                "DATABASE_URL": pg.url,
                "DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
                "DB_CONNECT_TIMEOUT": str(POOL_TIMEOUT),
                "DB_POOL_RECONNECT_TIMEOUT": "1",
                "DB_BREAKER_FAILURE_THRESHOLD": "1",
                "DB_BREAKER_RECOVERY_TIMEOUT": "10",
                "HOTELBOT_VAR_DIR": str(tmp_path / "var"),
                "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
                # The single-hotel opt-in _post authenticates with (its default is empty).
                "GREEN_API_WEBHOOK_TOKEN": settings.GREEN_API_WEBHOOK_TOKEN,
            }
        )
        for args in (("migrate", "--noinput"), ("seed_demo",)):
            subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        port = free_port()
        web = subprocess.Popen(
            [str(BIN / "gunicorn"), "hotelbot.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "web.log").open("wb"),
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health/live/", proc=web)
        yield url, pg, env
    finally:
        if web is not None:
            web.terminate()
            web.wait(timeout=15)
        pg.remove()


def _post(url: str, body: dict) -> requests.Response:
    from django.conf import settings

    return requests.post(
        f"{url}/webhooks/green-api/",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {settings.GREEN_API_WEBHOOK_TOKEN}"},
    )


def _admin_session(url: str) -> requests.Session:
    """Logged in as seed_demo's admin: every admin page then reads the session from the database."""
    session = requests.Session()
    login = f"{url}/admin/login/"
    session.get(login, timeout=30)
    token = session.cookies["csrftoken"]
    resp = session.post(
        login,
        data={"username": "admin", "password": "admin", "csrfmiddlewaretoken": token, "next": "/admin/"},
        headers={"Referer": login},
        timeout=30,
    )
    assert resp.status_code == 200
    assert "Log out" in resp.text
    return session


def _timed(fn: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    start = time.monotonic()
    resp = fn()
    return resp, time.monotonic() - start


def test_database_outage_fails_fast_shows_maintenance_and_loses_nothing(web_on_throwaway_db):
    url, pg, env = web_on_throwaway_db
    admin = _admin_session(url)
    assert _post(url, payloads.incoming_text(id_message="BEFORE")).json() == {"status": "stored"}

    pg.stop()
    during = payloads.incoming_text(id_message="DURING", text="Is breakfast included?")
    first, first_took = _timed(lambda: _post(url, during))
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "30"
    assert first.json()["error"]["code"] == "database_unavailable"
    assert "Traceback" not in first.text

    # The breaker is open: every later request that needs the database is answered at once.
    later = {
        "webhook": lambda: _post(url, during),
        "webhook again": lambda: _post(url, during),
        "admin": lambda: admin.get(f"{url}/admin/", timeout=30),
        "admin list": lambda: admin.get(f"{url}/admin/messaging/message/", timeout=30),
        "ready": lambda: requests.get(f"{url}/health/ready/", timeout=30),
    }
    took: dict[str, float] = {}
    answers: dict[str, requests.Response] = {}
    for name, call in later.items():
        answers[name], took[name] = _timed(call)
    print(f"first request {first_took:.3f}s; later: " + ", ".join(f"{k} {v:.3f}s" for k, v in took.items()))
    assert max(took.values()) < FAST, took
    for name in ("webhook", "webhook again"):
        resp = answers[name]
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "30"
        assert resp.json()["error"]["code"] == "database_unavailable"
        assert resp.json()["error"]["details"]["breaker"] == "database"
    for name in ("admin", "admin list"):
        resp = answers[name]
        assert resp.status_code == 503  # the maintenance page, not a 500
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "Back in a moment" in resp.text
        assert "Traceback" not in resp.text
    assert answers["ready"].status_code == 503
    live, live_took = _timed(lambda: requests.get(f"{url}/health/live/", timeout=30))
    assert live.status_code == 200
    assert live_took < FAST

    retry_in = answers["webhook again"].json()["error"]["details"]["retry_in"]
    pg.start()
    # The breaker said when it probes again (Green API itself redelivers after 60 s).
    time.sleep(retry_in + 0.5)
    after = _post(url, during)  # the first request after the restart
    assert after.status_code == 200, after.text
    assert after.json() == {"status": "stored"}
    assert _post(url, during).json() == {"status": "duplicate"}
    assert admin.get(f"{url}/admin/", timeout=30).status_code == 200
    assert requests.get(f"{url}/health/ready/", timeout=30).status_code == 200
    count = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from messaging.models import Message, ReplyJob; "
            "print(Message.objects.filter(provider_message_id='DURING').count(), ReplyJob.objects.count())",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert count.stdout.split() == ["1", "2"]
