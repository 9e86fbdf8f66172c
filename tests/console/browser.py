"""What the console's browser tests share: Debian's Chromium (required: the test FAILS without it,
CI installs it) and logging in through the admin login form."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def require_chromium(what: str) -> None:
    """Fail (never skip) when Chromium is missing: a skip would hide the missing dependency."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does) "
            f"to run the {what} browser test.",
            pytrace=False,
        )


def admin_log_in(page: Any, base_url: str, username: str, password: str) -> None:
    """Log in through the admin's own form; the page ends on the admin index."""
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
