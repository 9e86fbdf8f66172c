"""hotel_create, hotel_rotate_webhook_token and hotel_connect (against the fake Green API)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from fakes.green_api import FakeGreenApi
from messaging.models import Hotel, Message
from messaging.services.webhook_auth import webhook_token_digest
from reliability.models import AuditEntry
from tests.fakes.conftest import wait_until
from tests.messaging import payloads

INSTANCE = "1101000077"
API_TOKEN = "hotel-api-token"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def create(name: str = "Harbour Hotel", instance: str = INSTANCE) -> dict:
    return json.loads(
        run("hotel_create", "--name", name, "--instance", instance, "--api-token", API_TOKEN, "--json")
    )


@pytest.fixture
def public_url(settings) -> str:
    settings.HOTELBOT_PUBLIC_URL = "https://bot.example.com/"
    return "https://bot.example.com"


@pytest.mark.django_db
def test_hotel_create_json_prints_url_and_token_once_and_stores_only_the_digest(public_url):
    out = create()

    hotel = Hotel.objects.get(pk=out["id"])
    assert out["webhook_url"] == f"{public_url}/webhooks/green-api/{INSTANCE}/"
    assert len(out["webhook_token"]) >= 43  # 32 random bytes, URL-safe base64
    assert hotel.webhook_token_hash == webhook_token_digest(out["webhook_token"])
    assert out["webhook_token"] not in str(Hotel.objects.filter(pk=hotel.pk).values().get())
    assert (hotel.name, hotel.green_api_instance_id) == ("Harbour Hotel", INSTANCE)
    entry = AuditEntry.objects.get(action="hotel.create")
    assert (entry.via, entry.tenant) == ("command", str(hotel.pk))
    # The token works on the printed URL at once.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {out['webhook_token']}")
    body = payloads.incoming_text(id_message="HC1", id_instance=int(INSTANCE))
    assert client.post(f"/webhooks/green-api/{INSTANCE}/", body, format="json").json() == {"status": "stored"}


@pytest.mark.django_db
def test_hotel_create_text_output(public_url):
    text = run("hotel_create", "--name", "Dune Inn", "--instance", INSTANCE, "--api-token", API_TOKEN)
    hotel = Hotel.objects.get()
    token = text.split("webhook token:")[1].split()[0]
    assert hotel.webhook_token_hash == webhook_token_digest(token)
    assert f"{public_url}/webhooks/green-api/{INSTANCE}/" in text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "X", "--instance", "abc", "--api-token", "t"], "must be digits"),
        (["--name", "", "--instance", "123", "--api-token", "t"], "name"),
        (["--name", "X", "--instance", "123", "--api-token", ""], "green_api_token"),
        (["--name", "X", "--instance", "1" * 40, "--api-token", "t"], "must be digits|green_api_instance_id"),
    ],
)
def test_hotel_create_bad_input_is_a_command_error(public_url, args, message):
    with pytest.raises(CommandError, match=message):
        run("hotel_create", *args)
    assert not Hotel.objects.exists()


@pytest.mark.django_db
def test_hotel_create_duplicate_instance_is_a_command_error(public_url):
    create()
    with pytest.raises(CommandError, match="already exists"):
        create(name="Other")
    assert Hotel.objects.count() == 1


@pytest.mark.django_db
def test_hotel_create_without_public_url_is_a_command_error(settings):
    settings.HOTELBOT_PUBLIC_URL = ""
    with pytest.raises(CommandError, match="HOTELBOT_PUBLIC_URL"):
        create()
    assert not Hotel.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("ref", ["id", "instance"])
def test_rotate_by_id_or_instance_keeps_the_old_token_for_the_grace_period(public_url, ref):
    created = create()
    key = str(created["id"]) if ref == "id" else INSTANCE

    out = json.loads(run("hotel_rotate_webhook_token", key, "--grace-hours", "2", "--json"))

    hotel = Hotel.objects.get()
    assert out["webhook_token"] != created["webhook_token"]
    assert hotel.webhook_token_hash == webhook_token_digest(out["webhook_token"])
    assert hotel.webhook_token_previous_hash == webhook_token_digest(created["webhook_token"])
    assert hotel.webhook_token_previous_expires_at is not None
    assert out["previous_valid_until"] == hotel.webhook_token_previous_expires_at.isoformat()
    assert AuditEntry.objects.get(action="hotel.webhook_token_rotate").details == {"grace_hours": 2.0}


@pytest.mark.django_db
def test_rotate_dry_run_changes_nothing(public_url):
    create()
    before = Hotel.objects.values_list("webhook_token_hash", flat=True).get()
    assert "dry run" in run("hotel_rotate_webhook_token", INSTANCE, "--dry-run")
    assert Hotel.objects.values_list("webhook_token_hash", flat=True).get() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999999"], "No hotel"),
        ([INSTANCE, "--grace-hours", "-1"], "grace period"),
        ([INSTANCE, "--grace-hours", "1e9"], "grace"),
    ],
)
def test_rotate_bad_input_is_a_command_error(public_url, args, message):
    create()
    with pytest.raises(CommandError, match=message):
        run("hotel_rotate_webhook_token", *args)


@pytest.fixture
def fake_instance_fast_redelivery(settings) -> Iterator[FakeGreenApi]:
    with FakeGreenApi(
        id_instance=INSTANCE, api_token=API_TOKEN, rate_limits=False, redelivery_delay=0.2
    ) as fake:
        settings.GREEN_API_URL = fake.url
        yield fake


@pytest.mark.django_db
def test_connect_pushes_url_and_a_fresh_token_and_reads_them_back(public_url, fake_instance_fast_redelivery):
    created = create()

    text = run("hotel_connect", INSTANCE)

    hotel = Hotel.objects.get()
    pushed = fake_instance_fast_redelivery.settings()
    assert pushed["webhookUrl"] == created["webhook_url"]
    assert webhook_token_digest(pushed["webhookUrlToken"]) == hotel.webhook_token_hash  # fresh, stored
    assert hotel.webhook_token_previous_hash == webhook_token_digest(created["webhook_token"])  # still valid
    assert pushed["webhookUrlToken"] not in text
    assert [e["method"] for e in fake_instance_fast_redelivery.journal()] == ["POST", "GET"]
    assert AuditEntry.objects.get(action="hotel.connect").details["settings_saved"] is True
    assert "Green API posts to" in run("hotel_connect", INSTANCE, "--check")


@pytest.mark.django_db
def test_connect_check_reports_an_instance_pointed_elsewhere(public_url, fake_instance_fast_redelivery):
    create()
    fake_instance_fast_redelivery.configure(
        webhook_url="https://elsewhere.example.com/hook", webhook_token="x"
    )
    with pytest.raises(CommandError, match="url ok=False, token ok=False"):
        run("hotel_connect", INSTANCE, "--check")


@pytest.mark.django_db
def test_connect_refused_by_green_api_changes_nothing(public_url, fake_instance_fast_redelivery):
    create()
    Hotel.objects.update(green_api_token="wrong-api-token")
    before = Hotel.objects.values_list("webhook_token_hash", flat=True).get()

    with pytest.raises(CommandError, match=r"refused setSettings.*Nothing was changed"):
        run("hotel_connect", INSTANCE)

    assert Hotel.objects.values_list("webhook_token_hash", flat=True).get() == before
    assert fake_instance_fast_redelivery.settings()["webhookUrl"] == ""


@pytest.mark.django_db
def test_connect_unknown_hotel_is_a_command_error(public_url):
    with pytest.raises(CommandError, match="No hotel"):
        run("hotel_connect", "42")


@pytest.mark.django_db(transaction=True)
def test_connected_fake_delivers_guest_messages_with_the_new_token(
    live_server, settings, fake_instance_fast_redelivery
):
    """End to end: hotel_create, hotel_connect against the fake, then the fake pushes a guest's
    message to the hotel's own URL with the pushed token and the message is stored."""
    settings.HOTELBOT_PUBLIC_URL = live_server.url
    settings.GREEN_API_WEBHOOK_TOKEN = ""
    create()
    run("hotel_connect", INSTANCE)

    fake_instance_fast_redelivery.inject_inbound(chat_id="79001234599@c.us", text="Is breakfast included?")

    wait_until(lambda: Message.objects.filter(text="Is breakfast included?").exists(), timeout=10)
    [delivery] = wait_until(
        lambda: [
            d
            for d in fake_instance_fast_redelivery.deliveries()
            if d["typeWebhook"] == "incomingMessageReceived"
        ][:1]
    )
    assert delivery["url"] == f"{live_server.url}/webhooks/green-api/{INSTANCE}/"
    assert delivery["status"] == 200
