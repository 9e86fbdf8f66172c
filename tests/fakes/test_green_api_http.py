"""The fake Green API over plain HTTP: routing, documented errors, validation, state, rate limits,
control API."""

from __future__ import annotations

import time

import pytest

from fakes import FakeGreenApi
from tests.fakes.conftest import call, wait_until

CHAT = "79001234567@c.us"
SEND = "/waInstance1101000001/sendMessage/test-token"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/waInstanceabc/getStateInstance/test-token", 400, "Parameter idInstance not an integer"),
        ("/waInstance1101000002/getStateInstance/test-token", 403, "Forbidden"),
        ("/waInstance1101000001/getStateInstance/wrong", 401, "Unauthorized"),
        ("/waInstance1101000001/getStateInstance/", 400, "Parameter apiTokenInstance not define"),
        ("/waInstance1101000001/noSuchMethod/test-token", 404, "Not Found"),
        ("/somewhere/else", 404, "Not Found"),
    ],
)
def test_routing_errors(green: FakeGreenApi, path: str, status: int, message: str) -> None:
    reply = call(green.url, "GET", path)
    assert (reply.status, reply.json) == (status, {"message": message})


def test_method_names_are_case_insensitive_and_v3_prefix_works(green: FakeGreenApi) -> None:
    assert call(green.url, "GET", "/waInstance1101000001/GetStateInstance/test-token").json == {
        "stateInstance": "authorized"
    }
    reply = call(
        green.url, "POST", "/v3/waInstance1101000001/SendMessage/test-token", {"chatId": CHAT, "message": "x"}
    )
    assert reply.status == 200
    assert green.journal("sendmessage")[0]["method_name"] == "SendMessage"


def test_wrong_http_verb_is_404_as_documented(green: FakeGreenApi) -> None:
    assert call(green.url, "GET", SEND).status == 404
    assert call(green.url, "GET", "/waInstance1101000001/deleteNotification/test-token/1").status == 404


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"message": "x"}, "'chatId' is required"),
        ({"chatId": 79001234567, "message": "x"}, "'chatId' must be a string"),
        (
            {"chatId": "+79001234567", "message": "x"},
            "'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'",
        ),
        ({"chatId": CHAT}, "'message' is required"),
        ({"chatId": CHAT, "message": ""}, "'message' is not allowed to be empty"),
        (
            {"chatId": CHAT, "message": "x" * 20001},
            "'message' length must be less than or equal to 20000 characters long",
        ),
        ({"chatId": CHAT, "message": "x", "linkPreview": "no"}, "'linkPreview' must be a boolean"),
        ({"chatId": CHAT, "message": "x", "typingTime": 1.5}, "'typingTime' must be an integer"),
        ({"chatId": CHAT, "message": "x", "quotedMessageId": 5}, "'quotedMessageId' must be a string"),
    ],
)
def test_send_message_validation(green: FakeGreenApi, body: dict[str, object], detail: str) -> None:
    reply = call(green.url, "POST", SEND, body)
    assert reply.status == 400
    assert reply.json == {"message": f"Validation failed. Details: {detail}"}
    assert green.sent_messages() == []


@pytest.mark.parametrize(
    "chat_id",
    ["79001234567@c.us", "120363043968066561@g.us", "79001234567-1582555047@g.us", "120650379300963@lid"],
)
def test_send_message_accepts_documented_chat_ids(green: FakeGreenApi, chat_id: str) -> None:
    assert call(green.url, "POST", SEND, {"chatId": chat_id, "message": "x"}).status == 200


def test_send_message_with_broken_json(green: FakeGreenApi) -> None:
    reply = call(green.url, "POST", SEND, raw=b'{"chatId": ', headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.json["message"].startswith("Unexpected token")


def test_not_authorized_refuses_sends_and_notifies(green: FakeGreenApi) -> None:
    green.set_state("notAuthorized")

    reply = call(green.url, "POST", SEND, {"chatId": CHAT, "message": "x"})

    assert (reply.status, reply.json) == (400, {"message": "instance account not authorized"})
    [item] = green.notifications()["queue"]
    assert item["body"]["typeWebhook"] == "stateInstanceChanged"
    assert item["body"]["stateInstance"] == "notAuthorized"


def test_messages_sent_while_yellow_card_wait_for_authorization(green: FakeGreenApi) -> None:
    green.set_state("yellowCard")
    id_message = call(green.url, "POST", SEND, {"chatId": CHAT, "message": "x"}).json["idMessage"]
    time.sleep(0.3)
    assert green.sent_messages()[0]["statusMessage"] == "pending"
    assert green.notifications()["pending_sends"] == [id_message]

    green.set_state("authorized")

    wait_until(lambda: green.sent_messages()[0]["statusMessage"] == "read")


def test_rate_limiter_answers_429_per_method() -> None:
    with FakeGreenApi() as fake:  # the limiter is on by default: getStateInstance allows 1 request/s
        first = call(fake.url, "GET", "/waInstance1101000001/getStateInstance/test-token")
        second = call(fake.url, "GET", "/waInstance1101000001/getStateInstance/test-token")
        other = call(fake.url, "GET", "/waInstance1101000001/getSettings/test-token")

        assert (first.status, second.status, other.status) == (200, 429, 200)
        assert second.json == {"message": "Too Many Requests"}
        assert fake.journal("getStateInstance")[1]["note"] == "rate_limited"
        fake.configure(rate_limits=False)
        assert call(fake.url, "GET", "/waInstance1101000001/getStateInstance/test-token").status == 200


def test_any_instance_answers_every_instance_and_rate_limits_each_on_its_own() -> None:
    with FakeGreenApi(any_instance=True) as fake:  # one fake for the instances of many hotels
        first = call(fake.url, "GET", "/waInstance1101000001/getStateInstance/test-token")
        other = call(fake.url, "GET", "/waInstance1202000002/getStateInstance/test-token")
        again = call(fake.url, "GET", "/waInstance1202000002/getStateInstance/test-token")
        wrong_token = call(fake.url, "GET", "/waInstance1202000003/getStateInstance/other-token")

        assert (first.status, other.status, again.status) == (200, 200, 429)
        assert other.json == {"stateInstance": "authorized"}
        assert wrong_token.status == 401


def test_default_fault_bodies_are_realistic(green: FakeGreenApi) -> None:
    green.add_fault({"mode": "error", "status": 466, "count": 1})
    green.add_fault({"mode": "error", "status": 502, "count": 1})

    quota = call(green.url, "POST", SEND, {"chatId": CHAT, "message": "x"})
    gateway = call(green.url, "POST", SEND, {"chatId": CHAT, "message": "x"})

    assert quota.status == 466
    assert quota.json["correspondentsStatus"]["status"] == "CORRESPONDENTS_QUOTE_EXCEEDED"
    assert gateway.status == 502
    assert gateway.headers["content-type"] == "text/html"
    assert b"502 Bad Gateway" in gateway.raw


def test_inbound_with_a_link_is_an_extended_text_message(green: FakeGreenApi) -> None:
    green.inject_inbound(CHAT, "is this you? https://maps.example.com/x", sender_name="Ana")

    [item] = green.notifications()["queue"]
    data = item["body"]["messageData"]
    assert data["typeMessage"] == "extendedTextMessage"
    assert data["extendedTextMessageData"]["text"] == "is this you? https://maps.example.com/x"


def test_delete_notification_accepts_the_async_sdk_body_form(green: FakeGreenApi) -> None:
    green.inject_inbound(CHAT, "hi")
    receipt = green.notifications()["queue"][0]["receiptId"]

    reply = call(green.url, "DELETE", "/waInstance1101000001/deleteNotification/test-token/", receipt)

    assert reply.json == {"result": True}


def test_control_api_rejects_bad_input_with_json_errors(green: FakeGreenApi) -> None:
    bad_json = call(
        green.url, "POST", "/__fake__/inbound", raw=b"{nope", headers={"Content-Type": "application/json"}
    )
    missing = call(green.url, "POST", "/__fake__/inbound", {"text": "hi"})
    bad_state = call(green.url, "POST", "/__fake__/state", {"stateInstance": "sleeping"})
    bad_config = call(green.url, "POST", "/__fake__/config", {"redelivery_delay": "soon"})
    unknown = call(green.url, "GET", "/__fake__/nothing-here")

    assert bad_json.status == 400
    assert "not valid JSON" in bad_json.json["error"]
    assert missing.status == 400
    assert "chatId" in missing.json["error"]
    assert bad_state.status == 400
    assert "stateInstance" in bad_state.json["error"]
    assert bad_config.status == 400
    assert unknown.status == 404


def test_config_and_notifications_endpoints(green: FakeGreenApi) -> None:
    config = call(
        green.url, "POST", "/__fake__/config", {"redelivery_delay": 0.5, "status_delays": [0, 0, 0]}
    ).json
    assert config["redelivery_delay"] == 0.5
    assert config["status_delays"] == [0, 0, 0]
    call(green.url, "POST", "/__fake__/inbound", {"chatId": CHAT, "text": "hi"})

    view = call(green.url, "GET", "/__fake__/notifications").json

    assert view["mode"] == "polling"
    assert [n["body"]["typeWebhook"] for n in view["queue"]] == ["incomingMessageReceived"]
    assert view["deliveries"] == []


def test_reset_restores_constructor_settings_and_clears_state(green: FakeGreenApi) -> None:
    call(green.url, "POST", "/waInstance1101000001/setSettings/test-token", {"incomingWebhook": "no"})
    green.inject_inbound(CHAT, "hi")
    green.add_fault({"mode": "overloaded"})

    reply = call(green.url, "POST", "/__fake__/reset", {"seed": 7})

    assert reply.json == {"reset": True, "seed": 7}
    assert green.settings()["incomingWebhook"] == "yes"
    assert green.notifications()["queue"] == []
    assert green.faults() == []
    assert green.journal() == []
