"""The staff inbox in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

A receptionist logs in and opens the inbox from the admin index. A guest then writes "I want to talk
to a person" through the real webhook (the fake Green API's notification format): the bot sends its
one notice and the conversation waits for staff. The inbox shows it **without a reload** (htmx
polls the rows; a marker set on the page's ``window`` survives). She opens it, picks a canned
response (it fills the reply box), writes her answer and sends it while a second copy of the same
form is posted (a double submit): the reply job is queued once and the guest receives the staff
reply exactly once (the fake Green API's journal of ``sendMessage``). Screenshot:
``var/artifacts/inbox.png`` (the CI artifact). Without Chromium the test FAILS (``.ci/run`` installs it).

The live server runs in a thread of this process: Celery runs eagerly there, so the reply pipeline
processes each job inside the request that queued it (the webhook's job, then the staff reply's),
against the fake providers. Playwright's sync API runs an event loop in this thread, where Django
refuses ORM calls: rows are written before the browser starts and checked after it closed; the
guest's message arrives over HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User

from hotelbot.celery import app as celery_app
from messaging.models import CannedResponse, Conversation, ReplyJob
from messaging.permissions import HOTEL_STAFF_GROUP
from tests.console.browser import ARGS, CHROMIUM, admin_log_in, require_chromium
from tests.factories import HotelFactory
from tests.messaging import payloads

ARTIFACT = Path(settings.BASE_DIR) / "var" / "artifacts" / "inbox.png"
GUEST = "79005550123@c.us"
ANSWER = "Hello, this is Maria from reception: I will call you in five minutes."
#: Polls of the inbox come every 3 s: the row must show well within this (milliseconds).
APPEAR_WITHIN_MS = 15_000


def _receptionist() -> None:
    from django.contrib.auth.models import Group

    hotel = HotelFactory.create(name="Browser Bay Hotel")  # instance 1101000001: the payloads'
    CannedResponse.objects.create(hotel=hotel, title="Call back", text="We will call you back shortly.")
    maria = User.objects.create_user("maria", "maria@example.com", "inbox-pw-1", is_staff=True)
    maria.groups.add(Group.objects.get(name=HOTEL_STAFF_GROUP))
    hotel.staff.add(maria)


def _guest_writes(base_url: str, text: str) -> None:
    """The guest's message, as Green API posts it to the webhook."""
    response = requests.post(
        f"{base_url}/webhooks/green-api/",
        json=payloads.incoming_text(id_message="BROWSER0001", text=text, chat_id=GUEST),
        headers={"Authorization": f"Bearer {settings.GREEN_API_WEBHOOK_TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


@pytest.mark.slow
def test_a_guest_waiting_appears_live_and_staff_answer_once_in_chromium(
    live_server: Any, fake_green: Any, fake_deepseek: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_chromium("inbox")
    from playwright.sync_api import sync_playwright

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # setattr's undo deletes it
    _receptionist()
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            admin_log_in(page, live_server.url, "maria", "inbox-pw-1")
            page.click("#inbox-link a")
            page.wait_for_selector("#inbox-empty")
            page.evaluate("window.__notReloaded = true")

            _guest_writes(live_server.url, "I want to talk to a person, please")

            row = page.wait_for_selector(".inbox-row", timeout=APPEAR_WITHIN_MS)
            assert page.evaluate("window.__notReloaded === true")  # htmx swapped the rows in
            assert row is not None
            row_text = row.inner_text()

            page.click(".inbox-row a")
            page.wait_for_selector("#reply-form")
            page.select_option("#canned-picker", label="Call back (en)")
            canned = page.input_value("#id_reply-text")
            page.fill("#id_reply-text", ANSWER)
            # A double submit: the same form posted once more alongside the click (same request key).
            page.evaluate(
                """async () => {
                    const form = document.getElementById('reply-form');
                    const copy = {method: 'POST', body: new FormData(form), credentials: 'same-origin'};
                    await fetch(form.action, copy);
                }"""
            )
            page.click("#send-reply")
            page.wait_for_selector(".messagelist .success")
            thread = page.inner_text("#thread")
            owner = page.inner_text("#conversation-owner")
            page.screenshot(path=str(ARTIFACT), full_page=True)
        finally:
            browser.close()

    assert "***0123@c.us" in row_text
    assert "79005550123" not in row_text
    assert "the guest asked for a person" in row_text
    assert canned == "We will call you back shortly."
    assert ANSWER in thread
    assert owner == "STAFF"

    sent = [call["body"] for call in fake_green.journal("sendMessage")]
    assert [s["message"] for s in sent].count(ANSWER) == 1  # the guest receives it exactly once
    assert len(sent) == 2  # the bot's one notice, then the staff reply
    assert all(s["chatId"] == GUEST for s in sent)
    [job] = ReplyJob.objects.filter(kind=ReplyJob.Kind.STAFF)
    assert (job.status, job.reply_text) == (ReplyJob.Status.DONE, ANSWER)
    conversation = Conversation.objects.get()
    assert conversation.owner == "staff"
    assert conversation.owner_user is not None
    assert conversation.owner_user.get_username() == "maria"
    assert ARTIFACT.stat().st_size > 10_000
