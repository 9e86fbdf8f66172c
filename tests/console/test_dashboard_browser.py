"""The ops dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

The test creates live data (a delivered reply, a dead one with its dead letter, a breaker forced open
by staff), logs in through the admin login form, follows the index page's link to the dashboard,
checks it shows those numbers and names, and saves a screenshot: ``var/artifacts/dashboard.png``
(the CI artifact). Without Chromium the test FAILS: CI installs it (``.ci/run``).

``live_server`` serves from another thread, so pytest-django gives it a transactional database
(committed rows; with SQLite the in-memory test database is shared with the server thread).
Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls: every
row is written before the browser starts.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from messaging.models import Message, ReplyJob
from reliability import services
from reliability.breaker import registry
from reliability.models import BreakerConfig, DeadLetter
from tests.console.browser import ARGS, CHROMIUM, admin_log_in, require_chromium
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory

ARTIFACT = Path(settings.BASE_DIR) / "var" / "artifacts" / "dashboard.png"


def _live_data() -> None:
    hotel = HotelFactory.create(name="Browser Bay Hotel", green_api_instance_id="1101000077")
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id="79005550077@c.us")
    now = timezone.now()

    asked = MessageFactory.create(conversation=conversation, text="Is breakfast included?")
    Message.objects.filter(pk=asked.pk).update(created_at=now - timedelta(seconds=4))
    answer = MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.ACCEPTED,
        text="Yes, 07:00-10:30.",
        accepted_at=now,
    )
    ReplyJobFactory.create(inbound=asked, outbound=answer, status=ReplyJob.Status.DONE, completed_at=now)

    lost = MessageFactory.create(conversation=conversation, text="Can I park a van?")
    dead = ReplyJobFactory.create(
        inbound=lost, status=ReplyJob.Status.DEAD, last_error="503 x8", completed_at=now
    )  # buried now (replies._bury sets completed_at)
    DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND,
        subject=f"reply job {dead.pk}",
        subject_type="messaging.replyjob",
        subject_id=dead.pk,
        tenant=str(hotel.pk),
        dependency="green_api",
        category=DeadLetter.Category.PROVIDER_5XX,
        reason_code="attempts_exhausted",
        reason="Green API answered 503 eight times",
    )

    # Guests and staff: one waits 30 min (past the 15 min target), one was answered 5 min after
    # its handoff; with the conversation above, 1 of 3 was the bot's alone.
    waiting = now - timedelta(minutes=30)
    ConversationFactory.create(
        guest__hotel=hotel,
        owner="waiting",
        owner_reason="guest_asked",
        owner_since=waiting,
        handoff_at=waiting,
    )
    handed = now - timedelta(hours=2)
    ConversationFactory.create(
        guest__hotel=hotel,
        owner="staff",
        owner_reason="staff_took",
        owner_since=handed,
        handoff_at=handed,
        staff_replied_at=handed + timedelta(minutes=5),
    )

    BreakerConfig.objects.get_or_create(name="deepseek")
    services.breaker_set_mode(
        name="deepseek", mode=BreakerConfig.Mode.FORCED_OPEN, reason="browser drill", until=None
    )
    assert registry.write_pending_events() >= 1  # the transition is a BreakerEvent row

    User.objects.create_superuser("opsbrowser", "ops@example.com", "browser-pw-1")


def page_number(card_text: str) -> str:
    """The big number of a card (its second line, after the title)."""
    return card_text.splitlines()[1].strip()


@pytest.mark.slow
def test_dashboard_shows_live_data_in_chromium(live_server: Any) -> None:
    require_chromium("dashboard")
    from playwright.sync_api import sync_playwright

    _live_data()
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            admin_log_in(page, live_server.url, "opsbrowser", "browser-pw-1")
            page.click("#ops-dashboard-link a")
            page.wait_for_selector("#trend svg")

            assert page.url.endswith("/admin/reliability/dashboard/")
            delivered = page.inner_text("#replies-delivered .hb-num")
            dead = page.inner_text("#replies-dead .hb-num")
            open_letters = page.inner_text("#dead-open .hb-num")
            card = page.inner_text(".breaker-card[data-breaker=deepseek]")
            transitions = page.inner_text("#transitions")
            latency = page.inner_text("#latency")
            waiting = page.inner_text("#handoffs-waiting")
            first_reply = page.inner_text("#first-human-reply")
            by_bot = page.inner_text("#resolved-by-bot .hb-num")
            bars = page.locator("#trend svg rect").count()
            category = page.text_content("#dead-letters text[data-category=provider_5xx]")
            level = page.inner_text("#degradation-level .hb-state")
            level_background = page.eval_on_selector(
                "#degradation-level .hb-state", "el => getComputedStyle(el).backgroundColor"
            )
            page.screenshot(path=str(ARTIFACT), full_page=True)
        finally:
            browser.close()

    assert (delivered, dead, open_letters) == ("1", "1", "1")
    assert "forced_open" in card.lower()
    assert "browser drill" in card
    assert "deepseek" in transitions
    assert "forced_open" in transitions
    assert "1 replies" in latency
    assert page_number(waiting) == "1"
    assert "1 past their hotel's target" in waiting
    assert "p50 5 min" in " ".join(first_reply.split())
    assert "1 handoffs answered" in first_reply
    assert by_bot == "33%"
    assert bars >= 2  # delivered and dead bars of this hour
    assert category == "1"
    assert level == "NORMAL"
    assert level_background not in ("rgba(0, 0, 0, 0)", "transparent")  # white on white was invisible
    assert ARTIFACT.stat().st_size > 10_000
