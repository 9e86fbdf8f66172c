"""Fault drill: PostgreSQL stops under a running web server (its own throwaway instance).

The webhook must answer 503 with our envelope and Retry-After (so Green API redelivers), never a
500 or a hang; liveness stays up while readiness fails; once the database is back the redelivered
notification is stored exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from drill.stack import BIN, ROOT, ThrowawayPostgres, free_port, wait_http
from tests.messaging import payloads

pytestmark = pytest.mark.e2e


@pytest.fixture
def web_on_throwaway_db(tmp_path) -> Iterator[tuple[str, ThrowawayPostgres, dict[str, str]]]:
    pg = ThrowawayPostgres()
    web: subprocess.Popen[bytes] | None = None
    try:
        pg.start()
        pg.create_database()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
        env.update(
            {
                "DATABASE_URL": pg.url,
                "DB_POOL_TIMEOUT": "2",
                "DB_CONNECT_TIMEOUT": "2",
                "HOTELBOT_VAR_DIR": str(tmp_path / "var"),
                "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
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


def test_webhook_answers_503_while_the_database_is_down_and_loses_nothing(web_on_throwaway_db):
    url, pg, env = web_on_throwaway_db
    assert _post(url, payloads.incoming_text(id_message="BEFORE")).json() == {"status": "stored"}

    pg.stop()
    during = payloads.incoming_text(id_message="DURING", text="Is breakfast included?")
    resp = _post(url, during)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "30"
    assert resp.json()["error"]["code"] == "database_unavailable"
    assert "Traceback" not in resp.text
    assert requests.get(f"{url}/health/live/", timeout=10).status_code == 200
    assert requests.get(f"{url}/health/ready/", timeout=30).status_code != 200

    pg.start()
    # Green API redelivers the same notification until it gets a 200; the first tries may still
    # meet connections the pool had before the restart.
    deadline = time.monotonic() + 30
    while (resp := _post(url, during)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert resp.json() == {"status": "stored"}
    assert _post(url, during).json() == {"status": "duplicate"}
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
