# ruff: noqa: RUF001 - Russian phrases: their letters are meant
"""The handoff signals and the notice (messaging/handoff_rules.py): pure, no database."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from messaging.handoff_rules import ai_marker_split, guest_wants_staff, language_guess, notice_text


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


def test_language_guess_prefers_cyrillic_then_the_matched_language_then_english():
    assert language_guess("Привет, manager") == "ru"
    assert language_guess("hola", "es") == "es"
    assert language_guess("hello") == "en"


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


# --- reception hours: when staff will answer ---------------------------------------------------------
SATURDAY_23H = datetime(2026, 6, 13, 23, 0, tzinfo=ZoneInfo("Europe/Lisbon"))


@pytest.mark.parametrize(
    ("language", "soon", "monday"),
    [
        (
            "en",
            "Reception opens at 07:00 (hotel time); a member of our staff will answer you then.",
            "Reception opens on Monday at 07:00 (hotel time)",
        ),
        ("ru", "Ресепшен откроется в 07:00 (по времени отеля)", "Ресепшен откроется в понедельник в 07:00"),
        ("es", "La recepción abre a las 07:00 (hora del hotel)", "La recepción abre el lunes a las 07:00"),
        (
            "de",
            "Die Rezeption öffnet um 07:00 Uhr (Hotelzeit)",
            "Die Rezeption öffnet am Montag um 07:00 Uhr",
        ),
        ("fr", "La réception ouvre à 07:00 (heure de l'hôtel)", "La réception ouvre lundi à 07:00"),
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
