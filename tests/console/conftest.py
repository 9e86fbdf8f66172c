"""Fixtures of the console tests (admin, API, reports)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from reliability.models import DeadLetter
from tests.console.admin_world import RecordingHandler, handler_registered


@pytest.fixture
def handler() -> Iterator[RecordingHandler]:
    """A recording redrive handler for the reply kinds (send and generation): hands every letter back."""
    recording = RecordingHandler()
    with ExitStack() as stack:
        for kind in (DeadLetter.Kind.REPLY_SEND, DeadLetter.Kind.REPLY_GENERATION):
            stack.enter_context(handler_registered(kind, recording))
        yield recording
