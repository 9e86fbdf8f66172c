from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.deepseek import FakeDeepSeek
from fakes.green_api import FakeGreenApi
from messaging.models import ReplyJob
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
