"""The drain figures of ``make load`` (drill/load.py), computed from made-up send times."""

from __future__ import annotations

from drill.load import drain_figures
from drill.traffic import Injected


def _injected(chats: list[str]) -> list[Injected]:
    return [
        Injected(chat_id=chat, topic=f"t{i}", scenario="drain", at=float(i)) for i, chat in enumerate(chats)
    ]


def test_sends_at_the_send_rate_in_each_guests_order():
    injected = _injected(["a", "b", "a", "b", "a"])
    send_at = {i: 100.0 + i * 0.05 for i in range(5)}  # 20/s
    figures = drain_figures(injected, send_at, rate=20.0, cleared_at=99.0)
    assert figures["sends_per_s"] == 20.0
    assert figures["sends_per_s_over_send_rate"] == 1.0
    assert figures["within_tolerance"] is True
    assert figures["first_send_after_clear_s"] == 1.0
    assert (figures["guests"], figures["guests_out_of_order"], figures["in_arrival_order"]) == (2, 0, True)


def test_a_slow_drain_misses_the_tolerance():
    injected = _injected(["a"] * 11)
    send_at = {i: i * 0.06 for i in range(11)}  # 16.7/s against 20/s
    figures = drain_figures(injected, send_at, rate=20.0, cleared_at=0.0)
    assert figures["within_tolerance"] is False
    assert figures["sends_per_s_over_send_rate"] == 0.833


def test_a_guest_answered_out_of_order_or_not_at_all_is_reported():
    injected = _injected(["a", "b", "a", "c"])
    send_at = {0: 2.0, 1: 1.0, 2: 1.5}  # a's second message answered before its first; c never
    figures = drain_figures(injected, send_at, rate=20.0, cleared_at=0.0)
    assert figures["guests_out_of_order"] == 1
    assert figures["sent"] == 3
    assert figures["in_arrival_order"] is False
