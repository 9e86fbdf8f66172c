"""``embedded_reply_p95_ms``: reply latency on the embedded default under a steady guest load.

``make run``'s processes (gunicorn with 2 workers, a 2-process Celery worker, beat, the fake providers) run on
SQLite in WAL mode and the filesystem broker, in a temporary directory on free ports, with no
Redis or PostgreSQL (their URLs are removed from the environment). Guests write through the fake
Green API's control API at ``RATE`` messages/s for ``SECONDS`` seconds, each from its own chat; the
fake pushes every notification to our webhook, in order, as Green API does. Latency is from
injection to the arrival of that chat's reply ``sendMessage`` the fake answered 200 (its request
log); a reply missing at the end counts as infinitely late. Every process and the temporary
directory are removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RATE = 10.0
SECONDS = 25.0
SETTLE = 30.0  # seconds to wait for the last replies
QUESTIONS = ("What time is check-out?", "Is there parking?", "wifi password?", "When is breakfast?")
_SERVICE_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "BREAKER_REDIS_URL",
    "RATE_LIMIT_REDIS_URL",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def measure(*, rate: float = RATE, seconds: float = SECONDS) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="hotelbot-embedded-bench-"))
    web_port, green_port, deepseek_port = _free_port(), _free_port(), _free_port()
    web_url, green_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{green_port}"
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS and not k.startswith("DJANGO_SETT")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
            "DJANGO_DEBUG": "1",  # development values (dev secret key); DEBUG is off by default
            "HOTELBOT_VAR_DIR": str(tmp / "var"),
            "GREEN_API_URL": green_url,
            "DEEPSEEK_URL": f"http://127.0.0.1:{deepseek_port}",
            "FAKE_GREEN_API_PORT": str(green_port),
            "FAKE_DEEPSEEK_PORT": str(deepseek_port),
            # The demo hotel's own URL and token (seed_demo gives the hotel FAKE_GREEN_API_WEBHOOK_TOKEN).
            "FAKE_GREEN_API_WEBHOOK_URL": f"{web_url}/webhooks/green-api/1101000001/",
            "FAKE_GREEN_API_WEBHOOK_TOKEN": "bench-demo-hotel-webhook-token",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        procs.append(proc)
        return proc

    try:
        for args in (("migrate", "--noinput"), ("seed_demo",)):
            subprocess.run(  # noqa: S603
                [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True
            )
        fakes = start("fakes", [sys.executable, "manage.py", "fake_providers"])
        _wait_http(f"{green_url}/__fake__/faults", fakes)
        start(
            "worker",
            [str(BIN / "celery"), "-A", "hotelbot", "worker", "--loglevel=WARNING", "--concurrency=2"],
        )
        start("beat", [str(BIN / "celery"), "-A", "hotelbot", "beat", "--loglevel=WARNING"])
        web = start(
            "web",
            [
                str(BIN / "gunicorn"),
                "hotelbot.wsgi",
                "--config",
                str(ROOT / "deploy" / "gunicorn.conf.py"),
                "-b",
                f"127.0.0.1:{web_port}",
            ],
        )
        _wait_http(f"{web_url}/health/live/", web)
        _only_reply_webhooks(green_url)
        _warm_up(green_url)
        injected = _inject(green_url, rate, seconds)
        latencies = _collect(green_url, injected)
        if os.environ.get("KEEP_BENCH_LOGS"):
            (ROOT / "var").mkdir(exist_ok=True)
            pushes = requests.get(f"{green_url}/__fake__/notifications", timeout=10).json()
            (ROOT / "var" / "embedded-bench-pushes.json").write_text(json.dumps(pushes))
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if os.environ.get("KEEP_BENCH_LOGS"):  # debugging: keep the process logs under var/
            for log in tmp.glob("*.log"):
                shutil.copy(log, ROOT / "var" / f"embedded-bench-{log.name}")
        shutil.rmtree(tmp, ignore_errors=True)
    answered = [v for v in latencies if math.isfinite(v)]
    return {
        "embedded_reply_p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "embedded_reply_p95_ms": round(_percentile(latencies, 0.95) * 1000, 1),
        "embedded_reply_max_ms": round(max(answered, default=math.inf) * 1000, 1),
        "embedded_reply_unanswered": float(len(latencies) - len(answered)),
    }


def _only_reply_webhooks(green_url: str) -> None:
    """Turn off the sent/delivered/read status webhooks (``outgoingWebhook=no``).

    Green API pushes about 50 webhooks/s per instance, one at a time and in order. With every
    status on, one guest costs 5 pushes (the message, outgoingAPIMessageReceived, sent, delivered,
    read): 10 guests/s would fill the provider's own push channel, and what we would measure is
    that queue, not our pipeline. With statuses off a guest costs 2 pushes (20/s).
    """
    instance = os.environ.get("GREEN_API_ID_INSTANCE", "1101000001")
    token = os.environ.get("GREEN_API_TOKEN", "test-token")
    resp = requests.post(
        f"{green_url}/waInstance{instance}/setSettings/{token}", json={"outgoingWebhook": "no"}, timeout=5
    )
    resp.raise_for_status()


def _warm_up(green_url: str) -> None:
    """One guest first, so process start-up (imports, first connections) is not measured."""
    chat = "79000000000@c.us"
    requests.post(f"{green_url}/__fake__/inbound", json={"chatId": chat, "text": "Hi"}, timeout=5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(m["chatId"] == chat for m in requests.get(f"{green_url}/__fake__/sent", timeout=5).json()):
            return
        time.sleep(0.2)
    raise RuntimeError("the warm-up message got no reply within 60 s")


def _inject(
    green_url: str, rate: float, seconds: float, ids: dict[str, str] | None = None
) -> dict[str, float]:
    """Guest messages at ``rate``/s for ``seconds``, each from its own chat: chat -> injection time.
    ``ids``, if given, is filled with the fake's idMessage of each -> its chat."""
    injected: dict[str, float] = {}
    session = requests.Session()
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        chat = f"7901{i:07d}@c.us"
        injected[chat] = time.time()
        body = {"chatId": chat, "text": QUESTIONS[i % len(QUESTIONS)], "senderName": f"Guest {i}"}
        answer = session.post(f"{green_url}/__fake__/inbound", json=body, timeout=5)
        answer.raise_for_status()
        if ids is not None:
            ids[answer.json()["idMessage"]] = chat
    return injected


def _collect(green_url: str, injected: dict[str, float]) -> list[float]:
    deadline = time.monotonic() + SETTLE
    sent_at: dict[str, float] = {}
    while time.monotonic() < deadline:
        entries = requests.get(
            f"{green_url}/__fake__/requests", params={"method_name": "sendMessage"}, timeout=10
        ).json()
        for entry in entries:  # the fake's request log: arrival time and answer of each call
            body = entry.get("body")
            chat = body.get("chatId") if isinstance(body, dict) else None
            if chat in injected and entry.get("status") == 200:
                sent_at.setdefault(chat, float(entry["time"]))
        if len(sent_at) == len(injected):
            break
        time.sleep(0.5)
    return [sent_at[c] - t if c in sent_at else math.inf for c, t in injected.items()]


if __name__ == "__main__":
    for key, value in measure().items():
        print(f"{key}: {value}")
