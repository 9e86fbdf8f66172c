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


def test_faq_answers_answer_each_message_of_a_burst_once():
    answer = faq_answers(FACTS, ["hi", "what time is check-out?", "and the wifi?", "checkout again?"])
    assert answer == (
        f"Check-out at {FACTS.name} is {FACTS.check_out}. Wi-Fi: {FACTS.wifi}. Anything else I can help with?"
    )
    assert faq_answers(FACTS, ["hi", "can I bring my dog?"]) is None
