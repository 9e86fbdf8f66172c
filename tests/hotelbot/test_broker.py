"""The embedded broker (kombu's filesystem transport) polls fast enough to keep up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_filesystem_broker_polls_every_50_ms(tmp_path: Path) -> None:
    # kombu's default is 1 s, slept whenever a worker holds its prefetch limit (~2 tasks/s).
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "DATABASE_URL", "REDIS_URL")}
    env.update({"HOTELBOT_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "hotelbot.settings"})
    env.pop("CELERY_FILESYSTEM_POLLING_INTERVAL", None)
    code = (
        "import django; django.setup(); from hotelbot.celery import app; "
        "conn = app.connection_for_read(); print(conn.transport_cls, conn.transport.polling_interval)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["filesystem", "0.05"]
