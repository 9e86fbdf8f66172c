"""Faithful fake Green API and DeepSeek servers with fault injection (see docs/providers.md §3.6-3.8).

Pure standard library; no Django imports, so they run in tests, scripts and ``manage.py fake_providers``.
"""

from .base import ControlError, FakeRequest, FakeResponse, FakeServer
from .deepseek import FakeDeepSeek, compose_reply, parse_hotel_facts
from .green_api import FakeGreenApi

__all__ = [
    "ControlError",
    "FakeDeepSeek",
    "FakeGreenApi",
    "FakeRequest",
    "FakeResponse",
    "FakeServer",
    "compose_reply",
    "parse_hotel_facts",
]
