"""Keys of values encrypted at rest: the dev fallback, refusals without DEBUG, the system check, redaction."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from hotelbot.exceptions import HotelbotError
from reliability import crypto
from reliability.masking import mask

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def _ids(messages: list) -> list[str]:
    return [m.id for m in messages]


def test_encrypts_with_the_newest_key_and_decrypts_with_any(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    old = crypto.encrypt("tok-1234567890")

    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    new = crypto.encrypt("tok-1234567890")

    assert crypto.decrypt(old) == crypto.decrypt(new) == "tok-1234567890"
    assert not crypto.decrypts_with_newest(old)
    assert crypto.decrypts_with_newest(new)
    assert crypto.decrypts_with_newest(crypto.reencrypt(old, label="x"))
    assert Fernet(KEY_B.encode()).decrypt(new.encode()) == b"tok-1234567890"


def test_a_value_no_key_opens_raises_our_error_naming_the_setting_not_the_value(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    ciphertext = crypto.encrypt("tok-secret-value")
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]

    with pytest.raises(crypto.DecryptionFailed) as raised:
        crypto.decrypt(ciphertext, label="messaging.Hotel.green_api_token (pk 7)")

    assert isinstance(raised.value, HotelbotError)
    text = str(raised.value)
    assert "FIELD_ENCRYPTION_KEYS" in text
    assert "(pk 7)" in text
    assert ciphertext not in text
    assert "tok-secret-value" not in text
    assert raised.value.__cause__ is None  # no library internals chained


def test_debug_without_keys_uses_the_public_dev_key(settings) -> None:
    settings.DEBUG, settings.FIELD_ENCRYPTION_KEYS = True, []

    ciphertext = crypto.encrypt("tok")

    assert Fernet(crypto.DEV_KEY.encode()).decrypt(ciphertext.encode()) == b"tok"
    assert crypto.keyring().dev


@pytest.mark.parametrize(
    ("keys", "message"),
    [([], "FIELD_ENCRYPTION_KEYS is not set"), (["not-a-key"], "key 1 of 1 is not a Fernet key")],
)
def test_without_debug_missing_or_malformed_keys_raise(settings, keys, message) -> None:
    settings.DEBUG, settings.FIELD_ENCRYPTION_KEYS = False, keys

    with pytest.raises(crypto.EncryptionKeysInvalid, match=message):
        crypto.encrypt("tok")


def test_the_setting_also_reads_a_comma_separated_string(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = f" {KEY_B} , {KEY_A} "
    assert crypto.keyring().count == 2
    assert Fernet(KEY_B.encode()).decrypt(crypto.encrypt("x").encode()) == b"x"


@pytest.mark.parametrize(
    ("debug", "keys", "expected"),
    [
        (False, [], ["reliability.E001"]),
        (False, ["nope"], ["reliability.E002"]),
        (True, [KEY_A, "nope"], ["reliability.E002"]),  # a malformed key breaks DEBUG too
        (False, [crypto.DEV_KEY], ["reliability.E003"]),
        (False, [KEY_A, crypto.DEV_KEY], ["reliability.W001"]),
        (False, [KEY_A, KEY_B], []),
        (True, [], []),
        (True, [crypto.DEV_KEY], []),
    ],
)
def test_system_check(settings, debug, keys, expected) -> None:
    settings.DEBUG, settings.FIELD_ENCRYPTION_KEYS = debug, keys

    messages = crypto.check_field_encryption_keys()

    assert _ids(messages) == expected
    for message in messages:
        assert "FIELD_ENCRYPTION_KEYS" in message.msg
        assert "nope" not in message.msg
        assert KEY_A not in message.msg


def test_the_check_is_registered_and_refuses_start_without_debug(settings) -> None:
    from django.core import checks

    settings.DEBUG, settings.FIELD_ENCRYPTION_KEYS = False, []

    errors = [
        m for m in checks.run_checks(tags=[checks.Tags.security]) if (m.id or "").startswith("reliability.")
    ]

    assert _ids(errors) == ["reliability.E001"]
    assert errors[0].is_serious()


def test_ciphertext_shape_is_told_apart_from_plain_tokens(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    assert crypto.looks_encrypted(crypto.encrypt(""))
    assert crypto.looks_encrypted(crypto.encrypt("a" * 300))
    assert not crypto.looks_encrypted("d75b3a66374942c5b3c019c698abc2067e151558acbd412345")  # Green API
    assert not crypto.looks_encrypted("gAAAAA" + "A" * 100)  # right prefix, wrong structure
    assert not crypto.looks_encrypted("")


def test_logs_never_carry_a_ciphertext_or_a_key(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    ciphertext = crypto.encrypt("tok")

    line = mask(f"stored {ciphertext} with key {KEY_A}")

    assert ciphertext not in line
    assert KEY_A not in line
