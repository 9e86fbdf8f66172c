"""The fault drill in its quick form (``python -m drill --quick``) as part of the suite.

The configuration follows the run it is in: PostgreSQL + Redis (its own throwaway servers) in the
services run, SQLite + the filesystem broker in the embedded run. Nothing is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from drill.stack import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.drill]


def test_short_drill_loses_and_doubles_no_reply(tmp_path):
    embedded = not os.environ.get("DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS", "COV_"))}
    argv = [sys.executable, "-m", "drill", "--quick", "--out", str(tmp_path)]
    argv += ["--keep-logs", str(tmp_path / "logs")]
    if embedded:
        argv.append("--embedded")
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = tmp_path / "drill-report.md"
    assert report.exists(), result.stdout + result.stderr
    results = json.loads((tmp_path / "drill-results.json").read_text())
    overall = results["overall"]
    detail = result.stdout + result.stderr + report.read_text()
    assert overall["injected"] > 50, detail
    assert overall["lost"] == 0, detail
    assert overall["duplicates"] == 0, detail
    assert overall["delivered"] == overall["injected"], detail
    assert overall["quarantined"] == overall["poison_injected"] > 0, detail
    assert results["failures"] == [], detail
    assert result.returncode == 0, detail
    assert (tmp_path / "drill-timeline.svg").read_text().startswith("<svg")
