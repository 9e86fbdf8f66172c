"""Property: an authenticated webhook never gets a 4xx or 5xx while the database is up, and every
request ends as exactly one of: one stored inbound message, one quarantined dead letter, or one
acknowledged no-op (ignored, duplicate, status, journal, state).

Hypothesis mutates the documented payloads (providers.md §1.6): types, ranges, lengths, unicode
(NUL, lone surrogates, astral characters), nesting, size, and the raw bytes themselves. Runs on
SQLite and on PostgreSQL (where NUL and lone surrogates are what the database refuses).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from messaging.models import Message
from messaging.services import intake
from reliability.models import DeadLetter
from tests.messaging import payloads

URL = "/webhooks/green-api/"
pytestmark = pytest.mark.django_db

NO_OPS = {
    "ignored",
    "ignored_group_chat",
    "duplicate",
    "status_updated",
    "status_stale",
    "status_deferred",
    "journal_known",
    "journal_matched",
    "journal_unmatched",
    "state_recorded",
    "staff_phone_stored",  # an outbound message staff sent from the hotel's phone (no inbound row)
}
SIZE_LIMIT = 20_000  # WEBHOOK_MAX_BODY_BYTES for this test, so oversize bodies stay cheap

_NASTY = ["", "\x00", "a\x00b", "\ud83d", "x\udc00y", "😀", "79001234568@c.us", "@g.us", ":3@c.us"]
nasty_text = st.one_of(
    st.sampled_from(_NASTY),
    st.text(max_size=30),
    st.text(
        alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=[]), max_size=30
    ),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=5), st.sampled_from(_NASTY), st.text(max_size=5)),
    st.builds(
        lambda n, c: c * n, st.sampled_from([63, 64, 65, 200, 201, 300, 5000]), st.sampled_from("aé😀")
    ),
)
nasty_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 10**15, 2**63, 1588091580, 4102444800, 4102444801]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalar = st.one_of(st.none(), st.booleans(), nasty_number, nasty_text)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

DOCUMENTED = [
    payloads.incoming_text(id_message="F-IN"),
    payloads.outgoing_status(id_message="F-ST", status="delivered"),
    payloads.outgoing_api_message(id_message="F-JO", text="What time is check-out?"),
    payloads.outgoing_phone_message(id_message="F-PH", text="Hi, reception here"),
    payloads.state_changed("yellowCard"),
    {"typeWebhook": "incomingCall", "instanceData": {"idInstance": payloads.INSTANCE}, "timestamp": 1},
]

# The fields the parser reads: mutated more often than the rest.
HOT_FIELDS = {
    ("idMessage",),
    ("timestamp",),
    ("status",),
    ("stateInstance",),
    ("instanceData", "idInstance"),
    ("senderData", "chatId"),
    ("senderData", "senderName"),
    ("messageData",),
    ("messageData", "typeMessage"),
    ("messageData", "textMessageData"),
    ("messageData", "textMessageData", "textMessage"),
}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_payload(draw: st.DrawFn) -> Any:
    body: Any = json.loads(json.dumps(draw(st.sampled_from([DOCUMENTED[0], DOCUMENTED[0], *DOCUMENTED]))))
    body["idMessage"] = draw(
        st.one_of(st.sampled_from(["F1", "F2"]), st.uuids().map(lambda u: u.hex.upper()))
    )
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        paths = _paths(body)
        if not paths:
            break
        hot = [p for p in paths if p in HOT_FIELDS]
        prefer_hot: bool = draw(st.booleans())
        path = draw(st.sampled_from(hot if hot and prefer_hot else paths))
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["text", "text", "number", "replace", "delete", "nest", "long"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "nest":
            parent[path[-1]] = {"x": [parent[path[-1]]]}
        elif action == "long":
            parent[path[-1]] = "z" * draw(st.sampled_from([33, 41, 65, 201, 301, 70_000]))
        elif action == "text":
            parent[path[-1]] = draw(nasty_text)
        elif action == "number":
            parent[path[-1]] = draw(nasty_number)
        else:
            parent[path[-1]] = draw(json_value)
    return draw(st.one_of(st.just(body), json_value)) if draw(st.integers(0, 9)) == 0 else body


@st.composite
def request_body(draw: st.DrawFn) -> bytes:
    payload = draw(mutated_payload())
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", errors="surrogatepass")  # lone surrogates as (invalid) UTF-8 bytes
    mangle = draw(st.sampled_from(["none"] * 12 + ["truncate", "insert", "nest", "pad"]))
    if mangle == "truncate":
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    elif mangle == "insert":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    elif mangle == "nest":
        depth = draw(st.sampled_from([10, 1000, 50_000]))
        raw = b'{"typeWebhook": ' + b"[" * depth + raw + b"]" * depth + b"}"
    elif mangle == "pad":
        raw = (
            raw[:-1] + b', "pad": "' + b"p" * SIZE_LIMIT + b'"}'
            if raw.endswith(b"}")
            else raw + b" " * SIZE_LIMIT
        )
    return raw


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(body=request_body())
def test_authenticated_webhook_always_ends_in_exactly_one_outcome(
    webhook_client, hotel, body, settings_override
):
    open_letters = DeadLetter.objects.filter(status__in=DeadLetter.OPEN_STATUSES)
    closed_letters = DeadLetter.objects.exclude(status__in=DeadLetter.OPEN_STATUSES)
    inbound_before = Message.objects.filter(direction="in").count()
    open_before, closed_before = open_letters.count(), closed_letters.count()

    resp = webhook_client.post(URL, data=body, content_type="application/json")

    assert resp.status_code == 200, (resp.status_code, resp.content[:300])
    action = resp.json()["status"]
    event(action)
    stored = Message.objects.filter(direction="in").count() - inbound_before
    quarantined = open_letters.count() - open_before
    # A text cleaned before storing (NUL, lone surrogate) keeps its original for staff as a letter
    # already resolved; nothing else leaves a closed letter.
    kept = list(closed_letters.order_by("id")[closed_before:].values_list("reason_code", flat=True))
    if action == "stored":
        assert (stored, quarantined) == (1, 0)
        assert kept in ([], ["text_cleaned"]), kept
    elif action == "quarantined":
        assert (stored, quarantined) == (0, 1)
        letter = DeadLetter.objects.order_by("-id").first()
        assert letter is not None
        assert letter.reason_code
        event(f"quarantined: {letter.reason_code}")
        assert len(letter.raw) <= 65536
    else:
        assert action in NO_OPS
        assert (stored, quarantined) == (0, 0)
    if action in intake.NOT_PROCESSED:
        assert kept == []
    else:  # processed with a cleaned text (a journal entry, a phone message): its original is kept
        assert kept in ([], ["text_cleaned"]), kept


@pytest.fixture
def settings_override(settings: Any) -> None:
    settings.WEBHOOK_MAX_BODY_BYTES = SIZE_LIMIT
