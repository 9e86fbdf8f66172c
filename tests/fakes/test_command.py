"""``manage.py fake_providers`` starts both fakes, prints their URLs and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.conftest import call

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_command_serves_both_fakes_until_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "hotelbot.settings"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "fake_providers",
            "--green-port",
            "0",
            "--deepseek-port",
            "0",
            "--webhook-url",
            "",
            "--redelivery-delay",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("Fake DeepSeek" in line for line in lines):
            line = proc.stdout.readline()
            assert line, f"command exited early: {''.join(lines)}"
            lines.append(line)
            assert time.monotonic() < deadline
        output = "".join(lines)
        green_url = re.search(r"Fake Green API: (http://\S+)", output)
        deepseek_url = re.search(r"Fake DeepSeek:\s+(http://\S+)", output)
        assert green_url is not None
        assert deepseek_url is not None
        assert "polling" in output

        state = call(green_url.group(1), "GET", "/waInstance1101000001/getStateInstance/test-token")
        models = call(deepseek_url.group(1), "GET", "/models", headers={"Authorization": "Bearer sk-test"})
        assert state.json == {"stateInstance": "authorized"}
        assert models.status == 200

        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "Fakes stopped." in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
