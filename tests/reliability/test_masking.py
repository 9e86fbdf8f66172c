"""One look for guest numbers and secrets (reliability/masking.py): ``***`` and what is kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reliability import masking


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("79001234567@c.us", "***4567@c.us"),
        ("120363043968066561@g.us", "***6561@g.us"),
        ("1234@c.us", "***@c.us"),  # a bare chat id of 4 digits or fewer is hidden whole
        ("call +447700900123 now", "call +***0123 now"),
        ("send to 79001234567@c.us failed after 12345 ms", "send to ***4567@c.us failed after 12345 ms"),
        ("job 42 took 1500 ms", "job 42 took 1500 ms"),
        ("a+447700900123", "a+447700900123"),  # not a number on its own
    ],
)
def test_chat_ids_and_phone_numbers_keep_their_last_four_digits(text: str, masked: str) -> None:
    assert masking.mask_chat_id(text) == masked


def test_every_long_run_of_digits_is_cut_to_its_last_four() -> None:
    assert masking.mask_numbers("chatId 79001234567 at 1700000000, code 1234") == (
        "chatId ***4567 at ***0000, code 1234"
    )
    assert masking.mask_number("79001234567") == "***4567"
    assert masking.mask_number("1234") == "***"


def test_a_secret_shown_to_people_keeps_four_characters_only_when_long() -> None:
    assert masking.mask_secret("abcdefghijkl") == "***ijkl"
    assert masking.mask_secret("abcdefghijk") == "***"
    assert masking.mask_secret("") == "***"


def test_redact_masks_every_occurrence_of_each_secret_of_four_or_more_characters() -> None:
    text = "token tok-1234 and tok-1234 again, key ab"
    assert masking.redact(text, ("tok-1234", "ab", "")) == "token *** and *** again, key ab"


@given(st.from_regex(r"\A[1-9]\d{4,19}\Z"))
def test_the_mark_does_not_tell_how_long_the_number_is(number: str) -> None:
    masked = masking.mask_chat_id(f"{number}@c.us")
    assert masked == f"***{number[-4:]}@c.us"
    assert number not in masked


def test_logs_pages_and_mail_share_the_look() -> None:
    from reliability.fields import last_four
    from reliability.masking import mask

    chat = "79001234567@c.us"
    assert mask(f"send to {chat}") == "send to ***4567@c.us"
    assert masking.mask_chat_id(chat) == masking.mask_numbers(chat) == "***4567@c.us"
    assert last_four("abcdefghijkl") == masking.mask_secret("abcdefghijkl")
    assert last_four("") == "(not set)"
