# ruff: noqa: RUF001 - Russian phrases: their letters are meant
"""The handoff signals and the notice (messaging/handoff_rules.py): pure, no database."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from messaging.handoff_rules import ai_marker_split, guest_wants_staff, notice_text


@pytest.mark.parametrize(
    ("text", "reason", "language"),
    [
        ("I want to talk to a person", "guest_asked", "en"),
        ("Can I speak to the MANAGER?", "guest_asked", "en"),
        ("There is a fire in the corridor", "emergency", "en"),
        ("The bathroom is dirty", "complaint", "en"),
        ("Соедините с администратором", "guest_asked", "ru"),
        ("Вызовите скорую", "emergency", "ru"),
        ("Necesito una ambulancia", "emergency", "es"),
        ("Ich möchte mit einem Menschen sprechen", "guest_asked", "de"),
        ("Je veux faire une réclamation", "complaint", "fr"),
    ],
)
def test_the_guests_words_give_a_reason_and_a_language(text, reason, language):
    match = guest_wants_staff(text)
    assert match is not None
    assert (match.reason, match.language) == (reason, language)


@pytest.mark.parametrize(
    "text",
    [
        "Is there a fireplace?",
        "Breakfast for a person?",
        "Can you help me with the wifi?",
        "What time is check-out?",
    ],
)
def test_words_inside_other_words_and_ordinary_questions_do_not_match(text):
    assert guest_wants_staff(text) is None


def test_an_emergency_outranks_a_complaint():
    match = guest_wants_staff("Terrible service and now a fire!")
    assert match is not None
    assert match.reason == "emergency"


def test_the_marker_is_removed_wherever_it_stands():
    assert ai_marker_split("[HANDOFF:complaint] Sorry!") == ("complaint", "Sorry!")
    assert ai_marker_split("Sorry! [handoff]") == ("", "Sorry!")
    assert ai_marker_split("Check-out is at 11.") == (None, "Check-out is at 11.")


def test_notice_has_the_contact_and_for_an_emergency_the_danger_line_first():
    text = notice_text(language="de", staff_contact="Rezeption, Durchwahl 9", reason="emergency")
    assert text.startswith("Wenn jemand in Gefahr ist")
    assert text.endswith("Sie erreichen uns auch so: Rezeption, Durchwahl 9.")
    assert (
        notice_text(language="xx")
        == "Thank you for your message. A member of our staff will answer you here."
    )


def test_notice_per_reason_in_the_guests_language():
    assert notice_text(language="es", reason="unreadable_message").startswith(
        "¡Gracias! Solo puedo leer mensajes de texto"
    )
    assert "автоматически" in notice_text(language="ru", reason="fallback")
    assert notice_text(language="fr", reason="complaint") == (
        "Merci pour votre message. Un membre de notre équipe vous répondra ici."
    )


def test_notice_takes_the_hotels_own_texts_by_key():
    overrides = {
        ("notice", "de"): "Danke! Unsere Rezeption meldet sich gleich.",
        ("notice_contact", "en"): "Or call {contact} any time.",
    }
    text = notice_text(language="de", staff_contact="Durchwahl 9", reason="guest_asked", overrides=overrides)
    # The hotel's German notice; no German contact line of the hotel's: the German default.
    assert text == "Danke! Unsere Rezeption meldet sich gleich. Sie erreichen uns auch so: Durchwahl 9."
    # Italian: no default; the hotel's English text, then the English default.
    italian = notice_text(language="it", staff_contact="dial 9", overrides=overrides)
    assert (
        italian
        == "Thank you for your message. A member of our staff will answer you here. Or call dial 9 any time."
    )


# --- reception hours: when staff will answer ---------------------------------------------------------
SATURDAY_23H = datetime(2026, 6, 13, 23, 0, tzinfo=ZoneInfo("Europe/Lisbon"))


@pytest.mark.parametrize(
    ("language", "soon", "monday"),
    [
        (
            "en",
            "it opens at 07:00 (hotel time), and we will answer you then.",
            "it opens on Monday at 07:00 (hotel time)",
        ),
        ("ru", "он откроется в 07:00 (по времени отеля)", "он откроется в понедельник в 07:00"),
        ("es", "abre a las 07:00 (hora del hotel)", "abre el lunes a las 07:00"),
        ("de", "Sie öffnet um 07:00 Uhr (Hotelzeit)", "Sie öffnet am Montag um 07:00 Uhr"),
        ("fr", "elle ouvre à 07:00 (heure de l'hôtel)", "elle ouvre lundi à 07:00"),
    ],
)
def test_a_closed_reception_says_when_it_opens_in_each_language(language, soon, monday):
    sunday_7h = SATURDAY_23H + timedelta(hours=8)
    text = notice_text(language=language, staff_contact="+351 21 000", opens_at=sunday_7h, now=SATURDAY_23H)
    assert soon in text
    assert "+351 21 000" in text  # the contact still follows
    later = notice_text(language=language, opens_at=sunday_7h + timedelta(days=1), now=SATURDAY_23H)
    assert monday in later
    assert notice_text(language=language) == notice_text(language=language, opens_at=None, now=SATURDAY_23H)
