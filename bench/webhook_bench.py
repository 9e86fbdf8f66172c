"""``webhook_hung_broker_p99_ms``: webhook latency while the Celery broker hangs.

The broker URL points at a TCP server on loopback that accepts every connection and never answers
(:class:`fakes.hung_tcp.HungTcpServer`, speaking for a Redis broker). The webhook is served by
Django's test client in a child process on the embedded database (SQLite), so each request runs
the whole stack: authentication, bounded body read, parse, one transaction, and the on-commit
publish, which must give up after ``CELERY_REQUEST_PUBLISH_TIMEOUT`` without retrying (the
sweeper publishes later). Before the fix each request waited ~6 s on publish retries.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fakes.hung_tcp import HungTcpServer

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 300
WARMUP = 20


def _child() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from messaging.models import Hotel, ReplyJob
    from messaging.services.webhook_auth import webhook_token_digest

    token = "bench-hotel-webhook-token"  # noqa: S105 - a throwaway database's credential
    Hotel.objects.update_or_create(
        green_api_instance_id="1101000001",
        defaults={"name": "Bench Inn", "webhook_token_hash": webhook_token_digest(token)},
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")  # the hotel's own token on its own URL
    durations: list[float] = []
    for i in range(WARMUP + REQUESTS):
        body = {
            "typeWebhook": "incomingMessageReceived",
            "instanceData": {"idInstance": 1101000001, "wid": "11001234567@c.us", "typeInstance": "whatsapp"},
            "timestamp": int(time.time()),
            "idMessage": f"BENCH{i:06d}",
            "senderData": {"chatId": f"7900{i % 50:07d}@c.us", "senderName": "Bench"},
            "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": "Wifi?"}},
        }
        start = time.perf_counter()
        resp = client.post(
            "/webhooks/green-api/1101000001/", data=json.dumps(body), content_type="application/json"
        )
        elapsed = time.perf_counter() - start
        if resp.status_code != 200 or resp.json() != {"status": "stored"}:
            raise RuntimeError(f"webhook answered {resp.status_code}: {resp.content[:200]!r}")
        if i >= WARMUP:
            durations.append(elapsed * 1000)
    stored = ReplyJob.objects.count()
    print(json.dumps({"durations_ms": durations, "jobs": stored}))


def measure() -> dict[str, Any]:
    with HungTcpServer() as hung, tempfile.TemporaryDirectory(prefix="hotelbot-bench-hung-") as var:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            {
                "CELERY_BROKER_URL": hung.url,
                "HOTELBOT_VAR_DIR": var,
                "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
                "DJANGO_DEBUG": "1",  # development values (dev secret key); DEBUG is off by default
                "CELERY_TASK_ALWAYS_EAGER": "0",
                "LOG_LEVEL": "ERROR",
                "BREAKER_EVENT_WRITER": "0",
                # It measures the hung broker, back to back from one instance: not the rate limit.
                "WEBHOOK_RATE_LIMIT": "off",
                # The publish on the request thread, where a hung broker could hold the webhook (by
                # default it runs on the hand-off thread after the response and holds nothing).
                "CELERY_REQUEST_PUBLISH_HANDOFF": "false",
            }
        )
        out = subprocess.run(
            [sys.executable, "-m", "bench.webhook_bench", "--child"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"webhook bench failed: {out.stderr[-2000:]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        accepted = hung.accepted
    durations = sorted(data["durations_ms"])
    if accepted == 0:
        raise RuntimeError("no publish reached the hung broker: the benchmark measured nothing")
    return {
        "webhook_hung_broker_p99_ms": round(durations[int(len(durations) * 0.99) - 1], 2),
        "webhook_hung_broker_p50_ms": round(statistics.median(durations), 2),
        "webhook_hung_broker_max_ms": round(durations[-1], 2),
        "webhook_hung_broker_connections": accepted,
    }


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        for key, value in measure().items():
            print(f"{key:34} {value}")
