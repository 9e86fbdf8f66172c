"""Keys for values encrypted at rest (provider tokens), and the only code that uses them.

``FIELD_ENCRYPTION_KEYS`` (settings, from the environment) is a comma-separated list of Fernet
keys, **newest first**, kept apart from ``SECRET_KEY`` (a leaked session-signing key must not open
the tokens, and either can be rotated alone). Values are encrypted with the newest key and
decrypted with any of them (``cryptography``'s ``MultiFernet``), so a new key is put in front,
every row re-encrypted (``manage.py rotate_field_keys``), the result proven
(``rotate_field_keys --verify``) and only then the old key removed. docs/secrets.md.

With ``DEBUG`` on and no key set, :data:`DEV_KEY` is used: it is public (it is in this file), so
anything it encrypts is as good as plain text. Without ``DEBUG`` the system check
:func:`check_field_encryption_keys` refuses to start when the keys are missing, malformed or the dev
key, and any use raises :class:`EncryptionKeysInvalid`.

Errors are :class:`FieldEncryptionError`\\s of the project's tree; their messages name the setting,
the field and the row, never a value, a key or a ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks

from hotelbot.exceptions import HotelbotError

SETTING = "FIELD_ENCRYPTION_KEYS"
#: The public development key (DEBUG only, no key configured). Never use it for real tokens:
#: it is published here and in docs/secrets.md. The system check refuses it without DEBUG.
DEV_KEY = "aG90ZWxib3QtUFVCTElDLWRldi1rZXktTk9ULVNBRkU="  # urlsafe-b64 of "hotelbot-PUBLIC-dev-key-NOT-SAFE"

# A Fernet token: version byte 0x80, 8-byte timestamp, 16-byte IV, AES-CBC blocks, 32-byte HMAC.
_HEADER_AND_MAC = 1 + 8 + 16 + 32
_TOKEN_SHAPE = re.compile(r"gAAAAA[A-Za-z0-9_-]{90,}={0,2}")


class FieldEncryptionError(HotelbotError):
    """A value encrypted at rest cannot be read or written: our configuration, not the client's."""

    code = "field_encryption_error"
    default_message = "An encrypted value cannot be read; check FIELD_ENCRYPTION_KEYS."


class EncryptionKeysInvalid(FieldEncryptionError):
    """``FIELD_ENCRYPTION_KEYS`` is missing (without DEBUG) or holds something that is not a Fernet key."""

    code = "field_encryption_keys_invalid"


class DecryptionFailed(FieldEncryptionError):
    """No configured key decrypts the value (a wrong or removed key, or a damaged value)."""

    code = "field_decryption_failed"


@dataclass(frozen=True)
class KeyRing:
    """The configured keys: ``newest`` encrypts, ``multi`` decrypts with any."""

    newest: Fernet
    multi: MultiFernet
    count: int
    dev: bool


def _raw_keys() -> list[str]:
    raw: Any = getattr(settings, SETTING, None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    return [str(key).strip() for key in raw if str(key).strip()]


def key_problems(keys: Sequence[str]) -> list[str]:
    """What is wrong with each key (by position, never the key itself); empty when all are Fernet keys."""
    problems: list[str] = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError, binascii.Error):
            problems.append(
                f"key {position} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded bytes)"
            )
    return problems


_cache: dict[tuple[tuple[str, ...], bool], KeyRing] = {}


def keyring() -> KeyRing:
    """The keys in use (cached per configured value, so ``override_settings`` in tests applies)."""
    configured = keys = tuple(_raw_keys())
    debug = bool(settings.DEBUG)
    ring = _cache.get((configured, debug))
    if ring is not None:
        return ring
    if not keys:
        if not debug:
            raise EncryptionKeysInvalid(
                f"{SETTING} is not set: provider tokens cannot be encrypted or decrypted "
                "(generate a key: see docs/secrets.md)"
            )
        keys = (DEV_KEY,)
    problems = key_problems(keys)
    if problems:
        raise EncryptionKeysInvalid(f"{SETTING}: {'; '.join(problems)}")
    fernets = [Fernet(key) for key in keys]
    ring = KeyRing(newest=fernets[0], multi=MultiFernet(fernets), count=len(fernets), dev=keys[0] == DEV_KEY)
    _cache[(configured, debug)] = ring
    return ring


def generate_key() -> str:
    """A new random Fernet key (what ``rotate_field_keys --generate-key`` prints)."""
    return Fernet.generate_key().decode()


def looks_encrypted(value: str) -> bool:
    """Whether ``value`` has the shape of a Fernet token (no key needed): how the data migration
    and loaddata tell a stored ciphertext from a plain value. A Green API token (hex) never does."""
    if not _TOKEN_SHAPE.fullmatch(value):
        return False
    try:
        data = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError):
        return False
    return len(data) >= _HEADER_AND_MAC + 16 and data[0] == 0x80 and (len(data) - _HEADER_AND_MAC) % 16 == 0


def encrypt(plaintext: str) -> str:
    """``plaintext`` encrypted with the newest key."""
    return keyring().newest.encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str, *, label: str = "a value") -> str:
    """``ciphertext`` decrypted with any configured key; :class:`DecryptionFailed` names ``label``."""
    try:
        return keyring().multi.decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise DecryptionFailed(_undecryptable(label)) from None


def decrypts_with_newest(ciphertext: str) -> bool:
    """Whether the newest key alone decrypts ``ciphertext`` (what ``--verify`` proves per row)."""
    try:
        keyring().newest.decrypt(ciphertext.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def reencrypt(ciphertext: str, *, label: str = "a value") -> str:
    """``ciphertext`` decrypted with any key and encrypted again with the newest."""
    try:
        return keyring().multi.rotate(ciphertext.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise DecryptionFailed(_undecryptable(label)) from None


def _undecryptable(label: str) -> str:
    return (
        f"{label} cannot be decrypted with any key in {SETTING} (a wrong or removed key, or a damaged "
        "value): restore the key that encrypted it (docs/secrets.md), or enter the value again"
    )


def redact_encrypted(text: str) -> str:
    """Log redactor: ciphertexts and the configured keys never reach a log line."""
    text = _TOKEN_SHAPE.sub("gAAAAA***", text)
    for key in _raw_keys():
        if len(key) >= 16 and key in text:
            text = text.replace(key, "***")
    return text


# --- system check (registered in ReliabilityConfig.ready) ----------------------------------------------
def check_field_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Without DEBUG: errors for missing or malformed keys, or the public dev key as the newest key
    (the process refuses to start); a warning while the dev key is still kept as an older key."""
    keys = _raw_keys()
    hint = f"Set {SETTING} to a key of your own: see docs/secrets.md (generating keys)."
    problems = key_problems(keys)
    if problems:  # malformed keys break every token read, in DEBUG too
        return [checks.Error(f"{SETTING}: {'; '.join(problems)}.", hint=hint, id="reliability.E002")]
    if settings.DEBUG:
        return []
    if not keys:
        return [
            checks.Error(
                f"{SETTING} is not set: provider tokens cannot be encrypted or decrypted without DEBUG.",
                hint=hint,
                id="reliability.E001",
            )
        ]
    if keys[0] == DEV_KEY:
        return [
            checks.Error(
                f"{SETTING} starts with the public development key: anyone can decrypt what it encrypts.",
                hint=hint + " Then run `manage.py rotate_field_keys`.",
                id="reliability.E003",
            )
        ]
    if DEV_KEY in keys:
        return [
            checks.Warning(
                f"{SETTING} still holds the public development key as an older key.",
                hint="Run `manage.py rotate_field_keys --verify`; when it passes, remove that key.",
                id="reliability.W001",
            )
        ]
    return []
