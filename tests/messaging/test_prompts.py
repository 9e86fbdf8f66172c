# ruff: noqa: RUF001 - Russian questions: their letters are meant
from __future__ import annotations

from messaging.prompts import HotelFacts, Turn, canned_reply, chat_messages, faq_answers, system_prompt

FACTS = HotelFacts(
    name="Seaside Inn",
    check_out="until 11:00",
    wifi='network "Seaside-Guest", password "sunny2026"',
    staff_contact="reception, dial 9",
)


def test_system_prompt_lists_only_known_facts_as_label_lines():
    prompt = system_prompt(FACTS)
    assert "Hotel facts:\n- Hotel: Seaside Inn\n- Check-out: until 11:00\n" in prompt
    assert "Breakfast" not in prompt


def test_chat_messages_put_history_in_order_and_question_last():
    messages = chat_messages(FACTS, [Turn(True, "hi"), Turn(False, "Welcome!"), Turn(True, "")], "wifi?")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "wifi?"


def test_canned_reply_answers_from_the_matching_fact():
    assert canned_reply(FACTS, "When is CHECK-OUT?").startswith("Check-out at Seaside Inn is until 11:00.")
    assert "sunny2026" in canned_reply(FACTS, "what's the wifi password")


def test_canned_reply_without_matching_fact_points_to_staff():
    reply = canned_reply(FACTS, "Can I bring my dog?")
    assert "reception, dial 9" in reply


def test_canned_reply_for_media_and_undelivered_marker():
    assert "text messages only" in canned_reply(FACTS, "", type_message="imageMessage")
    assert "send it again" in canned_reply(FACTS, "{{SWE001}}")


def test_faq_answers_questions_in_each_language_in_that_language():
    assert canned_reply(FACTS, "Во сколько выезд?", language="ru") == (
        "Выезд из отеля Seaside Inn: until 11:00. Чем ещё могу помочь?"
    )
    assert canned_reply(FACTS, "¿Cuál es la contraseña del wifi?", language="es").startswith("Wi-Fi: network")
    assert canned_reply(FACTS, "Wann ist der Check-out?", language="de").endswith(
        "Kann ich sonst noch helfen?"
    )
    assert canned_reply(FACTS, "Quand est le départ ?", language="fr").startswith("Le départ à Seaside Inn")
    assert canned_reply(FACTS, "Quiero un perro", language="es").startswith("Gracias por su mensaje.")


def test_a_hotels_faq_text_replaces_the_default():
    overrides = {("faq_check_out", "en"): "You leave {name} {value}, sadly."}
    assert canned_reply(FACTS, "check-out?", overrides=overrides).startswith(
        "You leave Seaside Inn until 11:00, sadly."
    )


def test_the_prompt_names_the_guests_language():
    assert "The guest writes in Italian: answer in Italian." in system_prompt(FACTS, "it")
    assert "The guest writes in" not in system_prompt(FACTS)


def test_faq_answers_answer_each_message_of_a_burst_once():
    answer = faq_answers(FACTS, ["hi", "what time is check-out?", "and the wifi?", "checkout again?"])
    assert answer == (
        f"Check-out at {FACTS.name} is {FACTS.check_out}. Wi-Fi: {FACTS.wifi}. Anything else I can help with?"
    )
    assert faq_answers(FACTS, ["hi", "can I bring my dog?"]) is None
