"""Opt-out phrases (messaging/opt_out_rules.py): pure, no database."""

from __future__ import annotations

import pytest

from messaging.opt_out_rules import PHRASES, opt_out


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("STOP", ""),
        ("stop!!!", ""),
        ("  Stop 🙏 ", ""),
        ("Unsubscribe.", "en"),
        ("opt-out", "en"),
        ("СТОП", "ru"),
        ("Отписаться!", "ru"),
        ("не пишите мне", "ru"),
        ("Darme de baja", "es"),
        ("¡Parar!", "es"),
        ("STOPP", "de"),
        ("Abmelden", "de"),
        ("Se désabonner", "fr"),
        ("ARRÊT", "fr"),
    ],
)
def test_a_whole_message_opts_out_in_each_language(text, language):
    found = opt_out(text)
    assert found is not None
    assert found.language == language


@pytest.mark.parametrize(
    "text",
    [
        "Please stop the music in room 12",
        "Where is the bus stop?",
        "cancel",  # a booking, most likely
        "Stop by the reception, please",
        "",
        "Отписаться от рассылки ресторана и забронировать стол",
    ],
)
def test_phrases_inside_longer_messages_and_other_words_do_not(text):
    assert opt_out(text) is None


def test_every_language_has_phrases_and_each_phrase_matches_itself():
    assert set(PHRASES) == {"en", "ru", "es", "de", "fr"}
    for phrases in PHRASES.values():
        for phrase in phrases:
            assert opt_out(phrase.upper()) is not None, phrase
