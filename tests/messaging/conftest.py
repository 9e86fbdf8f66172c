from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from fakes.deepseek import FakeDeepSeek
from fakes.green_api import FakeGreenApi
from messaging.models import Hotel, ReplyJob
from messaging.services import replies
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging.payloads import CHAT


@pytest.fixture
def fake_green(settings) -> Iterator[FakeGreenApi]:
    """A fake Green API on a free port (no webhook: notifications queue for polling)."""
    with FakeGreenApi(status_delays=(0.05, 0.1, 0.15), rate_limits=False) as fake:
        settings.GREEN_API_URL = fake.url
        yield fake


@pytest.fixture
def fake_deepseek(settings) -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek() as fake:
        settings.DEEPSEEK_URL = fake.url
        settings.DEEPSEEK_API_KEY = "sk-test"
        yield fake


@pytest.fixture
def job(fake_green, fake_deepseek) -> ReplyJob:
    """A due reply job for a guest's text question (chat ``CHAT``), with both fakes running."""
    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)
    inbound = MessageFactory.create(conversation=conversation, text="What time is check-out?")
    return ReplyJobFactory.create(inbound=inbound)


@pytest.fixture
def hotel() -> Hotel:
    return HotelFactory.create()


@pytest.fixture
def ops_client() -> Client:
    """A superuser's logged-in admin client."""
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def published(monkeypatch) -> list[tuple[int, float]]:
    """Reply-job publishes recorded as (job_id, countdown) instead of sent to the broker."""
    calls: list[tuple[int, float]] = []

    def publish(*, job_id: int, countdown: float = 0.0) -> bool:
        calls.append((job_id, countdown))
        return True

    monkeypatch.setattr(replies, "reply_job_publish", publish)
    return calls
