"""The vocabulary of external HTTP calls, shared by ``http`` (which raises it) and ``retry``."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hotelbot.exceptions import HotelbotError


class CallRejected(Exception):
    """A call refused before any I/O (the breaker's ``CircuitOpenError`` is one): the request surely
    was not sent, and it is not retried in-call (whoever refused says when to come back). Declared
    here, in the leaf module, so that the failure vocabulary (``retry``) needs nothing of the breaker."""


class TransportError(HotelbotError):
    """The HTTP exchange with a dependency failed before a full response was read."""

    code = "transport_error"

    def __init__(self, dependency: str, message: str, *, request_sent: bool) -> None:
        super().__init__(f"{dependency}: {message}")
        self.dependency = dependency
        self.request_sent = request_sent


class DeadlineExceeded(TransportError):
    """The overall deadline passed (e.g. a server trickling keep-alive bytes)."""

    code = "deadline_exceeded"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float
    url: str = field(default="")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")
