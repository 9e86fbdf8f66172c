"""Logging infrastructure: the request id every record carries.

* ``request_id``: a context variable holding the id of the request (or task) being served. The
  middleware (``hotelbot.middleware.RequestIdMiddleware``) sets it from ``X-Request-ID`` or makes
  one; Celery carries it from the publishing request into the task (``hotelbot/celery.py``), so a
  webhook's id reaches the provider-call log lines of the reply job it caused.
* :class:`RequestIdFilter` adds ``request_id`` to every record.
* Every handler also runs ``reliability.masking.MaskingFilter`` (secrets and guest numbers, in the
  one look of ``reliability.masking``).

``LOG_FORMAT=json`` (settings) renders one JSON object per line with python-json-logger; the
default is the human-readable console line.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

#: Longest accepted incoming ``X-Request-ID``; anything else (too long, odd characters) is replaced.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """``value`` if it is a safe id (no log injection, bounded), else a new one."""
    return value if value and _VALID_ID.match(value) else new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (empty outside a request or task) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get()
        return True
