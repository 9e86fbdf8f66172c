"""The bot's own texts (messaging/bot_texts.py): one table, one resolution, safe placeholders."""

from __future__ import annotations

import pytest

from messaging.bot_texts import (
    DEFAULTS,
    LANGUAGES,
    PLACEHOLDERS,
    TextKey,
    placeholders_problem,
    render,
    text_for,
    text_resolve,
)


def test_every_key_has_a_default_in_every_language_and_the_defaults_pass_their_own_rules():
    assert set(DEFAULTS) == set(TextKey)
    for key, by_language in DEFAULTS.items():
        assert set(by_language) >= set(LANGUAGES), key
        for language, text in by_language.items():
            assert placeholders_problem(key, text) is None, (key, language)


def test_resolution_order_hotel_then_default_then_hotels_english_then_english_default():
    hotel = {("opt_out", "ru"): "Хорошо, больше не пишем.", ("opt_out", "en"): "Fine, no more messages."}
    assert text_resolve("opt_out", "ru", hotel) == "Хорошо, больше не пишем."  # the hotel's, in Russian
    assert text_resolve("opt_out", "de", hotel) == DEFAULTS["opt_out"]["de"]  # the German default
    assert text_resolve("opt_out", "it", hotel) == "Fine, no more messages."  # the hotel's English
    assert text_resolve("opt_out", "it") == DEFAULTS["opt_out"]["en"]  # the English default
    assert text_resolve("opt_out", "es", {("opt_out", "es"): ""}) == DEFAULTS["opt_out"]["es"]


def test_render_substitutes_plain_names_only():
    assert render("Call {contact}.", contact="{value} 9") == "Call {value} 9."
    assert render("{contact.__class__} {missing}", contact="x") == "{contact.__class__} {missing}"
    assert text_for("notice_contact", "fr", contact="poste 9") == "Vous pouvez aussi nous joindre : poste 9."


@pytest.mark.parametrize(
    ("key", "text", "problem"),
    [
        ("notice_contact", "Call us.", "must keep {contact}"),
        ("notice_contact", "Call {contact} or {phone}.", "Unknown placeholder {phone}"),
        ("notice", "Hi {name}", "Unknown placeholder {name}; this text may use: none"),
        ("notice_contact", "Call {contact.__class__}", "Braces are only for placeholders"),
        ("faq_wifi", "WLAN {value} {", "Braces are only for placeholders"),
    ],
)
def test_a_hotel_text_with_placeholders_the_bot_cannot_fill_is_refused(key, text, problem):
    assert problem in (placeholders_problem(key, text) or "")


def test_allowed_placeholders_pass():
    assert placeholders_problem("faq_address", "{name}: {value}") is None
    assert placeholders_problem("faq_address", "We are at {value}") is None
    assert PLACEHOLDERS["faq_address"][0] == frozenset({"value"})
