"""Real processes for end-to-end tests: gunicorn, a Celery worker and both fakes.

Each test session gets its own database (a SQLite file, or a throwaway database on the PostgreSQL
server of DATABASE_URL), its own broker (a filesystem folder, or Redis DB 14 of CELERY_BROKER_URL's
server) and free ports, so it never disturbs the other tests or the developer's `make run`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


@dataclass
class Stack:
    env: dict[str, str]
    web_url: str
    green_url: str
    deepseek_url: str
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def start_web(self) -> None:
        port = urlsplit(self.web_url).port
        proc = self.start(
            "web",
            [
                str(BIN / "gunicorn"),
                "hotelbot.wsgi",
                "--config",
                str(ROOT / "deploy" / "gunicorn.conf.py"),  # its multiprocess hooks; flags below win
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "--threads",
                "4",
                "--timeout",
                "30",
            ],
        )
        wait_http(f"{self.web_url}/health/live/", proc=proc)

    @property
    def metrics_dir(self) -> Path:
        return Path(self.env["PROMETHEUS_MULTIPROC_DIR"])

    def web_worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master started by start_web)."""
        master = self.procs["web"].pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return sorted(int(pid) for pid in children)

    def fake(self, which: str, method: str, path: str, **kwargs: Any) -> Any:
        base = self.green_url if which == "green" else self.deepseek_url
        resp = requests.request(method, f"{base}/__fake__/{path}", timeout=5, **kwargs)
        resp.raise_for_status()
        return resp.json()

    def shell(self, code: str) -> str:
        result = self.manage("shell", "--no-imports", "-c", code)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.log")
        )


def _throwaway_database(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = f"hotelbot_e2e_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def _drop_database(url: str, name: str) -> None:
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with launch_stack(tmp_path_factory.mktemp("e2e")) as s:
        yield s


@contextlib.contextmanager
def launch_stack(
    tmp: Path,
    *,
    extra_env: dict[str, str] | None = None,
    database_url: str | None = None,
    worker_args: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """Fakes, one Celery worker (2 processes), beat and gunicorn on their own database.

    ``extra_env`` overrides the environment (e.g. a throwaway Redis as cache, broker and breaker
    store); ``database_url``: use this database as is (a throwaway server) instead of a fresh
    database on DATABASE_URL's server."""
    logs = tmp / "logs"
    logs.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
    web_port, green_port, deepseek_port = free_port(), free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
            "HOTELBOT_VAR_DIR": str(tmp / "var"),
            "GREEN_API_URL": f"http://127.0.0.1:{green_port}",
            "DEEPSEEK_URL": f"http://127.0.0.1:{deepseek_port}",
            "FAKE_GREEN_API_PORT": str(green_port),
            "FAKE_DEEPSEEK_PORT": str(deepseek_port),
            "FAKE_GREEN_API_WEBHOOK_URL": f"{web_url}/webhooks/green-api/",
            "REPLY_STALE_AFTER": "5",
            "REPLY_SWEEP_INTERVAL": "2",
            "REPLY_DRAIN_INTERVAL": "1",
            "BREAKER_CONFIG_REFRESH": "1",
            "BREAKER_REDIS_PREFIX": f"hotelbot-e2e-{uuid.uuid4().hex[:8]}:cb",
            "PYTHONUNBUFFERED": "1",
            # Web and worker share one multiprocess directory: the web's /metrics shows both.
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        }
    )
    (tmp / "prometheus").mkdir()
    db_name = ""
    base_db_url = os.environ.get("DATABASE_URL", "")
    if database_url:
        env["DATABASE_URL"] = database_url
    elif base_db_url:
        env["DATABASE_URL"], db_name = _throwaway_database(base_db_url)
    env.update(extra_env or {})
    own_broker = "CELERY_BROKER_URL" in (extra_env or {})
    if not own_broker and os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        env["CELERY_BROKER_URL"] = urlunsplit(urlsplit(os.environ["CELERY_BROKER_URL"])._replace(path="/14"))
        # A stopped worker requeues its unacked and countdown tasks; start from an empty broker.
        redis.Redis.from_url(env["CELERY_BROKER_URL"], socket_timeout=5).flushdb()
    s = Stack(
        env=env, web_url=web_url, green_url=env["GREEN_API_URL"], deepseek_url=env["DEEPSEEK_URL"], logs=logs
    )
    try:
        for args in (("migrate", "--noinput"), ("seed_demo",)):
            result = s.manage(*args)
            assert result.returncode == 0, result.stdout + result.stderr
        fakes = s.start("fakes", [sys.executable, "manage.py", "fake_providers", "--redelivery-delay", "1"])
        wait_http(f"{s.green_url}/__fake__/faults", proc=fakes)
        wait_http(f"{s.deepseek_url}/__fake__/faults", proc=fakes)
        s.start(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "hotelbot",
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                *worker_args,
            ],
        )
        s.start("beat", [str(BIN / "celery"), "-A", "hotelbot", "beat", "--loglevel=INFO"])
        s.start_web()
        yield s
    finally:
        for name in list(s.procs):
            s.stop(name)
        if db_name:
            _drop_database(base_db_url, db_name)
        if os.environ.get("KEEP_E2E_LOGS"):
            shutil.copytree(logs, ROOT / "var" / "e2e-logs", dirs_exist_ok=True)
