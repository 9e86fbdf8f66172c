"""/api/docs/ in a real headless Chromium: a staff member logs in (session), Swagger UI renders the
reliability operations, and no request leaves 127.0.0.1 (the UI comes from drf-spectacular-sidecar's
static files, not a CDN an offline or CSP-locked deployment cannot reach)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User

from tests.console.browser import ARGS, CHROMIUM, require_chromium

TIMEOUT_MS = 60_000  # generous: a busy 2-core machine


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_swagger_ui_renders_offline_after_a_session_login(live_server: Any, tmp_path: Path) -> None:
    require_chromium("API docs")
    from playwright.sync_api import sync_playwright

    User.objects.create_user("docs", "docs@example.com", "docs-pw", is_staff=True)
    requested: list[str] = []
    base = f"http://127.0.0.1:{urlsplit(live_server.url).port}"  # the loopback address, not a name
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{base}/admin/login/?next=/api/docs/")
            page.fill("#id_username", "docs")
            page.fill("#id_password", "docs-pw")
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/api/docs/")
            # Swagger UI draws one section per tag, then the operations of the open sections.
            page.locator(".opblock-tag", has_text="dead-letters").first.wait_for()
            page.locator(
                ".opblock-summary-path", has_text="/api/v1/dead-letters/retry-bulk/"
            ).first.wait_for()
            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=True)
        finally:
            browser.close()

    for tag in ("breakers", "dead-letters", "quarantined-notifications"):
        assert tag in text
    assert "hotelbot API" in text
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in requested)
    assert any(urlsplit(url).path == "/api/schema/" for url in requested)
    hosts = {
        urlsplit(url).hostname for url in requested if urlsplit(url).scheme in ("http", "https", "ws", "wss")
    }
    assert hosts == {"127.0.0.1"}, (
        f"requests left the machine: {sorted(u for u in requested if '127.0.0.1' not in u)}"
    )
