"""Test resets of ``messaging/`` (reliability.testing holds the reliability ones; reliability may
not import messaging). Only tests import this module."""

from __future__ import annotations

from messaging.services import webhook_auth


def reset_webhook_credentials() -> None:
    """Forget cached webhook credentials and the refusals already audited."""
    with webhook_auth._lock:
        webhook_auth._cache.clear()
        webhook_auth._refusals_audited.clear()
