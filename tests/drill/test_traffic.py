"""The drill's independent tally and settle rule with bursts (docs/handoff.md): one reply holding
the facts of a guest's several messages answers each of them; a message's answer is expected at
the end of its chat's burst, not at once."""

from __future__ import annotations

from drill.traffic import (
    HANDOFF,
    NOTICE_LINES,
    STAFF_MARK,
    Handoff,
    Injected,
    Traffic,
    answer_due,
    bot_while_staff,
    tally,
)

T0 = 1_000_000.0
CHAT, OTHER = "79001@c.us", "79002@c.us"


def test_one_reply_to_a_burst_answers_each_of_its_messages_once():
    injected = [
        Injected(CHAT, "wifi", "s", T0, "m1"),
        Injected(CHAT, "parking", "s", T0 + 1, "m2"),
        Injected(OTHER, "wifi", "s", T0 + 1, "m3"),
    ]
    sent = [
        {"chatId": CHAT, "textMessage": 'Wi-Fi: "sunny2026". Parking: 20 spaces.'},
        {"chatId": OTHER, "textMessage": "sunny2026"},
        {"chatId": OTHER, "textMessage": "sunny2026"},  # a duplicate
        {"chatId": CHAT, "textMessage": "Hello!"},  # answers nothing
    ]
    tal = tally(injected, sent)
    assert tal.lost(injected) == []
    assert tal.duplicates() == {2: 1}
    assert tal.unmatched == [sent[3]]


def test_an_answer_is_due_when_the_chat_has_been_quiet_or_the_cap_is_reached():
    at = [0.0, 2.0, 3.5, 20.0]  # 0, 2 and 3.5 s: one burst (gaps under 3 s); 20 s: another
    injected = [Injected(CHAT, f"t{i}", "s", T0 + t, f"m{i}") for i, t in enumerate(at)]
    injected.append(Injected(OTHER, "wifi", "s", T0 + 1, "o1"))
    assert answer_due(injected, quiet=3.0, cap=15.0) == [T0 + 6.5, T0 + 6.5, T0 + 6.5, T0 + 23.0, T0 + 4.0]
    # The cap: a guest writing every 2 s is answered 5 s after a burst's first message (a 5 s cap).
    steady = [Injected(CHAT, f"t{i}", "s", T0 + 2 * i, f"m{i}") for i in range(5)]
    assert answer_due(steady, quiet=3.0, cap=5.0) == [T0 + 5, T0 + 5, T0 + 5, T0 + 11, T0 + 11]
    assert answer_due(injected, quiet=0.0) == [m.at for m in injected]  # bursts off


def test_a_share_of_guests_write_two_or_three_messages_within_two_seconds(fake_green):
    traffic = Traffic(fake_green.url, chats=1, burst_share=1.0)
    traffic.inject_one()
    traffic.stop()  # sends the burst's follow-ups first
    assert 2 <= len(traffic.injected) <= 3
    assert traffic.bursts == len(traffic.injected) - 1
    assert {m.chat_id for m in traffic.injected} == {traffic.injected[0].chat_id}
    assert len({m.topic for m in traffic.injected}) == len(traffic.injected)
    assert traffic.injected[-1].at - traffic.injected[0].at < 2.0
    assert len({m.id_message for m in traffic.injected}) == len(traffic.injected)  # each one queued


def test_a_guest_asking_for_a_person_is_answered_by_the_notice_then_by_staff_once():
    ask = Injected(CHAT, HANDOFF, "s", T0, "h1")
    held = Injected(CHAT, "parking", "s", T0 + 10, "h2")  # asked while staff held the conversation
    staff_hello = {"chatId": CHAT, "textMessage": f"Hello {STAFF_MARK}79001-1)", "timestamp": T0 + 5}
    staff_answer = {"chatId": CHAT, "textMessage": f"20 spaces {STAFF_MARK}79001-2)", "timestamp": T0 + 12}
    notice = {"chatId": CHAT, "textMessage": f"Gracias. {NOTICE_LINES[2]}", "timestamp": T0 + 4}
    tal = tally([ask, held], [notice, staff_hello, staff_answer])
    assert tal.lost([ask, held]) == []
    assert tal.duplicates() == {}
    assert tal.unmatched == []
    assert tal.staff == {"79001-1": 1, "79001-2": 1}
    assert tal.staff_duplicates() == {}

    # A staff message delivered twice, and the bot answering the held question too: both caught.
    bot = {"chatId": CHAT, "textMessage": "Parking: 20 spaces.", "timestamp": T0 + 13}
    tal = tally([ask, held], [notice, staff_hello, staff_hello, staff_answer, bot])
    assert tal.staff_duplicates() == {"79001-1": 1}
    assert tal.duplicates() == {1: 1}
    handoff = Handoff(CHAT, [], T0, "api", handed_back_at=T0 + 20)
    assert bot_while_staff([handoff], [notice, staff_hello, staff_answer, bot]) == [bot]
    after = {**bot, "timestamp": T0 + 25}  # the bot's answers after the hand-back are its own
    assert bot_while_staff([handoff], [notice, after]) == []

    # Staff answered before the notice left: the notice is closed unsent, their message answers.
    assert tally([ask], [staff_hello]).lost([ask]) == []


def test_every_tenth_new_guest_asks_for_a_person_and_writes_no_more_until_handed_back(fake_green):
    traffic = Traffic(fake_green.url, chats=1, burst_share=0.0, handoff_every=2)
    for _ in range(7):  # the first guest's six topics, then the second guest asks for a person
        traffic.inject_one()
    traffic.stop()
    [handoff] = traffic.handoffs
    asks = [m for m in traffic.injected if m.topic == HANDOFF]
    assert [m.chat_id for m in asks] == [handoff.chat_id]
    assert handoff.chat_id not in {m.chat_id for m in traffic.injected if m.topic != HANDOFF}
    question = traffic.write_during_hold(handoff)
    assert question is not None
    assert question.chat_id == handoff.chat_id
    assert len(handoff.topics) == 5
    traffic.handed_back(handoff)
    assert handoff.state == "handed_back"
    assert handoff.chat_id in [chat for chat, _ in traffic._active]  # writing to the bot again
