"""The API tests' fixtures, defined once in tests/console/api/support.py (tests elsewhere import them too)."""

from __future__ import annotations

from tests.console.api.support import api_world, fresh_throttle_counts

__all__ = ["api_world", "fresh_throttle_counts"]
