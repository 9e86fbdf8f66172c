"""The embedded default's Celery broker: kombu's filesystem transport, made safe for many processes.

kombu's filesystem transport (5.7) creates a message file and only then locks and writes it,
while a consumer moves any ``*.msg`` file it lists without taking that lock. A worker polling
every 50 ms therefore sometimes takes a file that is still empty: the message is lost and the
worker dies on ``JSONDecodeError`` (the consumer loop treats it as unrecoverable; kombu issue
#1551 is the same crash, still open). ``make run`` starts two worker processes and a web process
publishing beside them, so this is a real deployment's failure, not a test's.

This transport writes each message under a temporary name the consumer ignores and renames it
into place (``os.replace`` is atomic on one filesystem), so a consumer sees a whole message or
none. A file that still does not decode (a disk full, a hand-edited file) is moved to
``<processed_folder>/../corrupt`` with a log line instead of killing the worker; the outbox
sweeper re-publishes whatever work it carried.

Selected by ``CELERY_BROKER_URL = "hotelfs://"`` (the alias is registered on import, which every
process does through ``hotelbot.celery``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

ALIAS = "hotelfs"
#: Temporary files start with a dot and end in ``.part``; kombu only takes ``<id>.<queue>.msg``.
_PART_PREFIX = ".put-"


class Channel(filesystem.Channel):
    """Atomic ``_put``; a ``_get`` that sets an undecodable file aside instead of raising."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        folder = self.data_folder_out
        part = os.path.join(folder, f"{_PART_PREFIX}{name}.part")
        try:
            with open(part, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(part, os.path.join(folder, name))
        except OSError as exc:
            _unlink_quietly(part)
            raise ChannelError(f"Cannot add a message to {folder!r}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        wanted = f"{queue}.msg"
        processed = self.processed_folder if self.store_processed else Path(tempfile.gettempdir())
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.startswith(".") or filename.partition(".")[2] != wanted:
                continue
            taken = os.path.join(processed, filename)
            try:
                # Whoever renames the file first owns it; the others get an OSError and move on.
                shutil.move(os.path.join(self.data_folder_in, filename), taken)
            except OSError:
                continue
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
            except OSError as exc:
                raise ChannelError(f"Cannot read message {filename!r}") from exc
            try:
                message = loads(bytes_to_str(payload))
            except ValueError:
                self._set_aside(taken, filename, len(payload))
                continue
            if not self.store_processed:
                _unlink_quietly(taken)
            return message
        raise Empty()

    def _set_aside(self, path: str, filename: str, size: int) -> None:
        corrupt = Path(self.data_folder_in).parent / "corrupt"
        try:
            corrupt.mkdir(parents=True, exist_ok=True)
            shutil.move(path, corrupt / filename)
        except OSError:
            _unlink_quietly(path)
        logger.error("broker message %s (%d bytes) does not decode; set aside in %s", filename, size, corrupt)


class Transport(filesystem.Transport):
    Channel = Channel


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
