"""Real processes on free ports: gunicorn, Celery workers, beat, both fakes, and throwaway servers.

Shared by the end-to-end tests (``tests/e2e/conftest.py``), the fault drill (``python -m drill``)
and the load run (``python -m drill.load``). Nothing here imports Django or pytest: every process
is a child started with its own environment, so the caller's settings never leak into it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_BIN = Path(shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl").resolve().parent
#: Variables that choose the deployment; an embedded stack must not inherit them.
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reap(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Wait for a process told to stop (SIGTERM); SIGKILL its group after ``timeout`` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


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
    web_workers: int = 2
    #: The throwaway servers of a services-mode stack (None when embedded or on existing servers):
    #: the drill's infrastructure scenarios kill and restart them.
    postgres: ThrowawayPostgres | None = None
    redis: ThrowawayRedis | None = None
    #: The long-lived shell behind ``shell()`` and the environment it started with.
    _shell: subprocess.Popen[str] | None = field(default=None, repr=False)
    _shell_env: dict[str, str] = field(default_factory=dict, repr=False)

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return manage(self.env, *args, timeout=timeout)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        _reap(proc)

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group (master and children): a crash, no clean shutdown."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self, grace: float = 3.0) -> None:
        """Stop every process: all are told at once (SIGTERM to each leader, as an orchestrator
        does), and a process group still there after ``grace`` seconds is killed. Nothing is left
        to save when a whole stack goes (a Celery worker's warm shutdown waits up to 5 s for its
        timer thread to wake: celery.utils.timer2)."""
        self._stop_shell_server()
        procs = [proc for proc in self.procs.values() if proc.poll() is None]
        self.procs.clear()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(Exception):
                _reap(proc, max(0.0, deadline - time.monotonic()))

    # --- the processes -------------------------------------------------------------------------
    def start_fakes(self, redelivery_delay: float = 1.0) -> None:
        fakes = self.start(
            "fakes",
            [sys.executable, "manage.py", "fake_providers", "--redelivery-delay", str(redelivery_delay)],
        )
        wait_http(f"{self.green_url}/__fake__/faults", proc=fakes)
        wait_http(f"{self.deepseek_url}/__fake__/faults", proc=fakes)

    def start_worker(
        self, name: str = "worker", concurrency: int = 2, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.start(
            name,
            [
                *WORKER_NICE,
                str(BIN / "celery"),
                "-A",
                "hotelbot",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                # As deploy/: Celery's event heartbeat (a publish every 2 s) serves event monitors
                # (Flower), which hotelbot has none of; liveness is WORKER_HEARTBEAT_FILE, health
                # the pidbox ping. An idle cost (docs/cost.md).
                "--without-heartbeat",
                *extra_args,
            ],
        )

    def start_beat(self) -> None:
        schedule = self.logs.parent / "celerybeat-schedule"
        self.start(
            "beat", [str(BIN / "celery"), "-A", "hotelbot", "beat", "--loglevel=INFO", "-s", str(schedule)]
        )

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
                str(self.web_workers),
                "--threads",
                "4",
                "--timeout",
                "30",
            ],
        )
        wait_http(f"{self.web_url}/health/live/", proc=proc)

    def setup_database(self) -> str:
        """Migrate and seed the stack's database; returns what seed_demo printed."""
        return migrate_and_seed(self.env)

    # --- looking inside ------------------------------------------------------------------------
    @property
    def metrics_dir(self) -> Path:
        return Path(self.env["PROMETHEUS_MULTIPROC_DIR"])

    def children(self, name: str) -> list[int]:
        """Direct children of a started process (gunicorn or Celery prefork workers)."""
        master = self.procs[name].pid
        return sorted(int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split())

    def web_worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master started by start_web)."""
        return self.children("web")

    def fake(self, which: str, method: str, path: str, **kwargs: Any) -> Any:
        base = self.green_url if which == "green" else self.deepseek_url
        resp = requests.request(method, f"{base}/__fake__/{path}", timeout=10, **kwargs)
        resp.raise_for_status()
        return resp.json()

    def shell(self, code: str, timeout: float = 120) -> str:
        """Run ``code`` in the stack's Django (its environment, its database); returns what it
        printed. One long-lived process answers every call (drill/shell_server.py), started again
        when it died or the stack's environment changed since it started."""
        proc = self._shell_server()
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(code) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ""
        except (BrokenPipeError, ValueError):
            line = ""
        if not line:
            self._stop_shell_server()
            log = (self.logs / "shell.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the stack's shell gave no answer within {timeout}s:\n{log}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(answer["out"])
        return str(answer["out"]).strip()

    def _shell_server(self) -> subprocess.Popen[str]:
        if self._shell is not None and (self._shell.poll() is not None or self._shell_env != self.env):
            self._stop_shell_server()
        if self._shell is None:
            log = (self.logs / "shell.log").open("ab")
            self._shell = subprocess.Popen(
                [sys.executable, "-m", "drill.shell_server"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            log.close()
            self._shell_env = dict(self.env)
        return self._shell

    def _stop_shell_server(self) -> None:
        proc, self._shell = self._shell, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()  # end of input: the server's loop ends
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.log")
        )


#: The demo hotel's instance and webhook token in every stack (seed_demo gives the hotel the token).
DEMO_INSTANCE = "1101000001"
DEMO_WEBHOOK_TOKEN = "drill-demo-hotel-webhook-token"  # noqa: S105 - a throwaway stack's credential
#: The single-hotel global token (legacy URL), for tests that post notifications themselves.
GLOBAL_WEBHOOK_TOKEN = "test-webhook-token"  # noqa: S105 - tests/conftest.py TEST_WEBHOOK_TOKEN

#: Celery workers run below the web's CPU priority, as ``make run`` starts them (deploy/Procfile.dev).
WORKER_NICE = ("nice", "-n", "10")


#: The stacks' monitoring token (HEALTH_MONITORING_TOKEN): opens /health/ and its detail pages.
HEALTH_TOKEN = f"drill-health-{uuid.uuid4().hex}"


def health_headers() -> dict[str, str]:
    """Headers that open the stacks' detailed health URLs (``/health/``, ``/health/circuit-breakers/``)."""
    return {"Authorization": f"Bearer {HEALTH_TOKEN}"}


def base_env(tmp: Path, *, embedded: bool = False, **extra: str) -> tuple[dict[str, str], str]:
    """The environment of a stack in ``tmp`` on free ports; returns (env, web_url)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS", "COV_"))}
    if embedded:
        for name in SERVICE_VARS:
            env.pop(name, None)
    web_port, green_port, deepseek_port = free_port(), free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    (tmp / "prometheus").mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
            # Development values (dev secret key, ...): DEBUG is off by default (docs/security.md).
            "DJANGO_DEBUG": "1",
            # The drill reads the detailed health URLs (breakers, degradation) with it.
            "HEALTH_MONITORING_TOKEN": HEALTH_TOKEN,
            "HOTELBOT_VAR_DIR": str(tmp / "var"),
            "GREEN_API_URL": f"http://127.0.0.1:{green_port}",
            "DEEPSEEK_URL": f"http://127.0.0.1:{deepseek_port}",
            "FAKE_GREEN_API_PORT": str(green_port),
            "FAKE_DEEPSEEK_PORT": str(deepseek_port),
            # The fake pushes to the demo hotel's own URL with its own token (seed_demo issues it);
            # the global token is set too, for tests that post to the legacy URL themselves.
            "FAKE_GREEN_API_WEBHOOK_URL": f"{web_url}/webhooks/green-api/{DEMO_INSTANCE}/",
            "FAKE_GREEN_API_WEBHOOK_TOKEN": DEMO_WEBHOOK_TOKEN,
            "GREEN_API_WEBHOOK_TOKEN": GLOBAL_WEBHOOK_TOKEN,
            "REPLY_STALE_AFTER": "5",
            "REPLY_SWEEP_INTERVAL": "2",
            "REPLY_DRAIN_INTERVAL": "1",
            "BREAKER_CONFIG_REFRESH": "1",
            "BREAKER_REDIS_PREFIX": f"hotelbot-e2e-{uuid.uuid4().hex[:8]}:cb",
            "PYTHONUNBUFFERED": "1",
            # Web and workers share one multiprocess directory: the web's /metrics shows both.
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        }
    )
    env.update(extra)
    return env, web_url


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def migrate_and_seed(env: dict[str, str]) -> str:
    """``migrate`` then ``seed_demo`` on the database of ``env``; returns what seed_demo printed."""
    output = ""
    for args in (("migrate", "--noinput"), ("seed_demo",)):
        result = manage(env, *args, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        output = result.stdout
    return output


def make_stack(tmp: Path, env: dict[str, str], web_url: str, *, web_workers: int = 2) -> Stack:
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return Stack(
        env=env,
        web_url=web_url,
        green_url=env["GREEN_API_URL"],
        deepseek_url=env["DEEPSEEK_URL"],
        logs=logs,
        web_workers=web_workers,
    )


# --- databases on an existing server ---------------------------------------------------------------
def throwaway_database(url: str, *, template: str = "") -> tuple[str, str]:
    """A new, uniquely named database on the server of ``url`` (a copy of ``template`` if given);
    returns (its url, its name)."""
    parts = urlsplit(url)
    name = f"hotelbot_e2e_{uuid.uuid4().hex[:10]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop_database(url: str, name: str) -> None:
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- throwaway servers ---------------------------------------------------------------------------
class ThrowawayPostgres:
    """A private PostgreSQL cluster (initdb into a temp dir, pg_ctl on a free port)."""

    def __init__(self, options: str = "") -> None:
        #: More ``postgres -c`` options (bench.cost loads pg_stat_statements with them).
        self.options = options
        self.dir = Path(tempfile.mkdtemp(prefix="hotelbot-pg-"))
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/hotelbot"
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.dir, user="postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=60)  # noqa: S603

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        options = f"{options} {self.options}".strip()
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Fast shutdown: open sessions are cut, like a database failover or a restart for an upgrade."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def create_database(self) -> None:
        admin = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE hotelbot")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ThrowawayRedis:
    """A private redis-server on a free port (no persistence), which callers may kill and restart."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server binary not found on PATH (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(  # noqa: S603 - the machine's redis-server
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError as exc:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                        raise RuntimeError(
                            f"throwaway redis-server did not start on {self.port}:\n{log}"
                        ) from exc
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-run, like a crashed node."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
