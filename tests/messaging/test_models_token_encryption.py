"""Hotel.green_api_token is encrypted at rest: what the database holds, rotation, the migration,
the send path with a wrong key, admin, health, and a pg_dump of a database with hotels."""

from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from messaging.models import Hotel, Message, ReplyJob
from messaging.services import replies
from reliability import crypto, dead_letters, encryption, health
from reliability.models import DeadLetter
from tests.console.admin.test_messaging import _form_data
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging.payloads import CHAT

pytestmark = pytest.mark.django_db

TOKEN = "d75b3a66374942c5b3c019c698abc2067e151558acbd4f9a1c"
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
MIGRATION = importlib.import_module("messaging.migrations.0009_hotel_token_encrypted")


def _stored(hotel_id: int) -> str:
    """The column's raw content, read around the ORM."""
    table = connection.ops.quote_name(Hotel._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT green_api_token FROM {table} WHERE id = %s", [hotel_id])  # noqa: S608
        return cursor.fetchone()[0]


def _store_raw(hotel_id: int, value: str) -> None:
    table = connection.ops.quote_name(Hotel._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET green_api_token = %s WHERE id = %s", [value, hotel_id])  # noqa: S608


def _hotel(n: int, token: str = TOKEN) -> Hotel:
    return HotelFactory.create(
        name=f"Hotel {n}", green_api_instance_id=f"11010000{n:02d}", green_api_token=token
    )


# --- the field ---------------------------------------------------------------------------------------
def test_round_trip_and_the_database_holds_only_ciphertext(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    hotel = _hotel(1)

    stored = _stored(hotel.pk)

    assert TOKEN not in stored
    assert TOKEN[-8:] not in stored
    assert crypto.looks_encrypted(stored)
    assert Fernet(NEW_KEY.encode()).decrypt(stored.encode()).decode() == TOKEN
    assert Hotel.objects.get(pk=hotel.pk).green_api_token == TOKEN


def test_a_row_loads_without_the_key_and_saving_other_fields_keeps_its_ciphertext(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    hotel = _hotel(1)
    before = _stored(hotel.pk)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the key that encrypted it is gone

    loaded = Hotel.objects.get(pk=hotel.pk)  # the webhook path loads hotels: no decryption
    loaded.name = "Renamed"
    loaded.save()

    assert _stored(hotel.pk) == before
    with pytest.raises(crypto.DecryptionFailed) as raised:
        _ = Hotel.objects.get(pk=hotel.pk).green_api_token
    assert f"messaging.Hotel.green_api_token (pk {hotel.pk})" in str(raised.value)
    assert before not in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_dumpdata_holds_the_ciphertext_and_loaddata_keeps_it(settings, tmp_path) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    hotel = _hotel(1)
    out = io.StringIO()

    call_command("dumpdata", "messaging.hotel", stdout=out)

    assert TOKEN not in out.getvalue()
    assert _stored(hotel.pk) in out.getvalue()
    fixture = tmp_path / "hotels.json"
    fixture.write_text(out.getvalue())
    Hotel.objects.all().delete()
    call_command("loaddata", str(fixture), verbosity=0)
    assert Hotel.objects.get(pk=hotel.pk).green_api_token == TOKEN


# --- rotation ----------------------------------------------------------------------------------------
def test_rotation_with_two_keys_then_verify_with_the_new_key_alone(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    hotels = [_hotel(n, token=f"{TOKEN[:-2]}{n:02d}") for n in range(1, 6)]
    Hotel.objects.filter(pk=hotels[4].pk).update(green_api_token="")  # blank stays blank
    before = {h.pk: _stored(h.pk) for h in hotels}
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    with pytest.raises(CommandError, match="4 of 4 value"):
        call_command("rotate_field_keys", "--verify", stdout=io.StringIO())
    dry = io.StringIO()
    call_command("rotate_field_keys", "--dry-run", stdout=dry)
    assert {h.pk: _stored(h.pk) for h in hotels} == before
    assert "4 would be re-encrypted" in dry.getvalue()
    out = io.StringIO()
    call_command("rotate_field_keys", "--batch-size", "2", stdout=out)

    assert "messaging.Hotel.green_api_token: 2 checked" in out.getvalue()  # progress per batch
    assert "4 were re-encrypted" in out.getvalue()
    assert TOKEN[:-2] not in out.getvalue()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key removed
    verified = io.StringIO()
    call_command("rotate_field_keys", "--verify", stdout=verified)
    assert "All 4 value(s) decrypt with the newest key alone" in verified.getvalue()
    for n, hotel in enumerate(hotels[:4], start=1):
        assert _stored(hotel.pk) != before[hotel.pk]
        assert Hotel.objects.get(pk=hotel.pk).green_api_token == f"{TOKEN[:-2]}{n:02d}"
    assert _stored(hotels[4].pk) == ""
    again = io.StringIO()
    call_command("rotate_field_keys", stdout=again)
    assert "0 were re-encrypted" in again.getvalue()
    assert "4 already under the newest key" in again.getvalue()


def test_rotation_leaves_unreadable_values_alone_and_fails_naming_them(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    lost = _hotel(1)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    _hotel(2)
    before = _stored(lost.pk)

    with pytest.raises(CommandError, match="1 value"):
        call_command("rotate_field_keys", stdout=io.StringIO())
    with pytest.raises(CommandError, match="1 of 2 value"):
        call_command("rotate_field_keys", "--verify", stdout=io.StringIO())

    assert _stored(lost.pk) == before


def test_rotation_does_not_overwrite_a_value_changed_meanwhile(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    hotel = _hotel(1)
    old = _stored(hotel.pk)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    Hotel.objects.filter(pk=hotel.pk).update(green_api_token="tok-entered-meanwhile")

    # What the rotation read (old) is no longer there: its conditional UPDATE changes nothing.
    assert not encryption._write(
        Hotel, "green_api_token", hotel.pk, old, encryption.Sealed("x"), using="default"
    )
    assert Hotel.objects.get(pk=hotel.pk).green_api_token == "tok-entered-meanwhile"


# --- the data migration ------------------------------------------------------------------------------
def test_the_migration_encrypts_plain_rows_and_is_idempotent(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    plain, already, blank = _hotel(1), _hotel(2, token="tok-already-encrypted"), _hotel(3)
    _store_raw(plain.pk, TOKEN)  # as 0008 left it
    _store_raw(blank.pk, "")
    encrypted_before = _stored(already.pk)
    state = MigrationExecutor(connection).loader.project_state(("messaging", "0009_hotel_token_encrypted"))
    editor = SimpleNamespace(connection=connection)

    MIGRATION.encrypt_tokens(state.apps, editor)
    first = _stored(plain.pk)
    MIGRATION.encrypt_tokens(state.apps, editor)

    assert crypto.looks_encrypted(first)
    assert TOKEN not in first
    assert _stored(plain.pk) == first  # a second run leaves encrypted rows alone
    assert _stored(already.pk) == encrypted_before
    assert _stored(blank.pk) == ""
    assert Hotel.objects.get(pk=plain.pk).green_api_token == TOKEN
    MIGRATION.decrypt_tokens(state.apps, editor)  # the reverse gives the plain column back
    assert _stored(plain.pk) == TOKEN
    assert _stored(already.pk) == "tok-already-encrypted"


# --- the send path -----------------------------------------------------------------------------------
def test_a_wrong_key_never_sends_a_ciphertext_and_buries_the_job_as_auth(
    settings, fake_green, fake_deepseek
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    hotel = HotelFactory.create(green_api_token=fake_green.api_token)
    ciphertext = _stored(hotel.pk)
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=CHAT)
    job = ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation, text="Check-out?"))
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # deployed with the wrong key

    outcome = replies.reply_job_process(job_id=job.pk)

    assert outcome.result == "dead"
    assert fake_green.journal() == []  # Green API was never called, with or without the ciphertext
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.DEAD
    assert "cannot be decrypted" in job.last_error
    assert ciphertext not in job.last_error
    letter = DeadLetter.objects.get(subject_id=job.pk)
    assert letter.category == DeadLetter.Category.AUTH  # parked for a person: no retry fixes a key
    assert letter.status == DeadLetter.Status.MANUAL
    assert letter.reason_code == "token_unreadable"
    assert ciphertext not in f"{letter.reason} {letter.error_message} {letter.payload}"
    assert job.outbound is not None
    assert Message.objects.get(pk=job.outbound.pk).status == Message.Status.FAILED
    # The right key back: staff redrive the letter and the reply goes out, with the real token.
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert dead_letters.redrive(letter, via="admin").handed_back
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert len(fake_green.journal("sendMessage")) == 1


# --- admin -------------------------------------------------------------------------------------------
def test_admin_shows_only_the_last_four_characters(ops_client: Client, settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    hotel = _hotel(1)

    page = ops_client.get(f"/admin/messaging/hotel/{hotel.pk}/change/").content.decode()

    assert "***" + TOKEN[-4:] in page
    assert TOKEN[:-4] not in page
    assert _stored(hotel.pk) not in page


def test_admin_with_an_unreadable_token_says_so_and_saving_keeps_it(ops_client: Client, settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    hotel = _hotel(1)
    before = _stored(hotel.pk)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    url = f"/admin/messaging/hotel/{hotel.pk}/change/"

    page = ops_client.get(url)
    saved = ops_client.post(url, {**_form_data(hotel, token=""), "name": "Renamed"})

    assert page.status_code == 200
    assert "cannot be decrypted (check FIELD_ENCRYPTION_KEYS)" in page.content.decode()
    assert saved.status_code == 302, saved.content.decode()[-2000:]
    assert Hotel.objects.get(pk=hotel.pk).name == "Renamed"
    assert _stored(hotel.pk) == before


# --- health ------------------------------------------------------------------------------------------
def test_health_counts_what_decrypts_and_never_names_a_hotel(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    _hotel(1)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    _hotel(2)
    _hotel(3)

    with pytest.raises(ServiceWarning) as partly:
        encryption.encrypted_values_health()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ServiceUnavailable) as none:
        encryption.encrypted_values_health()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    ok = encryption.encrypted_values_health()

    assert partly.value.message.startswith("2 of 3 encrypted value(s) decrypt, 1 do not")
    assert none.value.message.startswith("0 of 3 encrypted value(s) decrypt, 3 do not")
    assert (
        ok
        == "3 of 3 encrypted value(s) decrypt, 0 do not; 1 still under an older key (run rotate_field_keys)"
    )
    for text in (partly.value.message, none.value.message, ok):
        assert "Hotel 1" not in text
        assert "1101000001" not in text
        assert TOKEN[-4:] not in text


def test_health_check_is_registered(settings) -> None:
    assert "encrypted_values" in [check.name for check in health.all_checks()]
    Hotel.objects.all().delete()
    assert encryption.encrypted_values_health() == "no encrypted values stored"


# --- pg_dump -----------------------------------------------------------------------------------------
def _pg_dump() -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), reverse=True)  # newest first
    found = shutil.which("pg_dump") or (str(candidates[0]) if candidates else None)
    if not found:
        pytest.fail("pg_dump is not installed (apt-get install postgresql-client): the dump test cannot run")
    return found


@pytest.mark.django_db(transaction=True)
def test_pg_dump_of_a_database_with_hotels_holds_no_token(settings) -> None:
    if connection.vendor != "postgresql":
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("REQUIRE_SERVICES=1 but the tests do not run on PostgreSQL")
        pytest.skip("pg_dump needs PostgreSQL (the PostgreSQL run covers it)")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    tokens = [f"{TOKEN[:-2]}{n:02d}" for n in range(1, 4)]
    for n, token in enumerate(tokens, start=1):
        _hotel(n, token=token)
    params = connection.get_connection_params()
    env = {**os.environ, "PGPASSWORD": str(params.get("password") or "")}
    command = [_pg_dump(), "--no-owner", "-h", str(params.get("host") or "127.0.0.1")]
    command += ["-p", str(params.get("port") or 5432), "-U", str(params.get("user") or "postgres")]

    dump = subprocess.run(
        [*command, str(params["dbname"])], capture_output=True, text=True, env=env, timeout=120
    )

    assert dump.returncode == 0, dump.stderr[-2000:]
    assert "Hotel 1" in dump.stdout  # the hotels are in the dump
    for token in tokens:
        assert token not in dump.stdout
    assert "gAAAAA" in dump.stdout
