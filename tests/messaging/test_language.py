# ruff: noqa: RUF001 - Russian and French samples: their letters are meant
"""The guest's language (messaging/language.py): detection on samples, short messages, its cost."""

from __future__ import annotations

import time

import pytest

from messaging import language

SAMPLES = [
    ("en", "What time is breakfast?"),
    ("en", "Can I get a late check-out tomorrow?"),
    ("en", "Is there a pharmacy nearby?"),
    ("ru", "Во сколько завтрак?"),
    ("ru", "Можно поздний выезд?"),
    ("ru", "где парковка"),
    ("es", "¿A qué hora es el desayuno?"),
    ("es", "¿Dónde puedo aparcar el coche?"),
    ("es", "Necesito más toallas, por favor"),
    ("de", "Wann gibt es Frühstück?"),
    ("de", "Kann ich morgen später auschecken?"),
    ("de", "Gibt es WLAN im Zimmer?"),
    ("fr", "À quelle heure est le petit-déjeuner ?"),
    ("fr", "Est-ce que je peux partir plus tard demain ?"),
    ("fr", "Il y a le wifi dans la chambre ?"),
    ("it", "A che ora è la colazione?"),
    ("pt", "Qual é a senha do wifi?"),
    ("nl", "Hoe laat is het ontbijt?"),
]


@pytest.mark.parametrize(("expected", "text"), SAMPLES)
def test_detects_the_language_of_a_sentence(expected, text):
    assert language.detect(text) == expected


@pytest.mark.parametrize("text", ["ok", "hi", "merci", "danke", "👍", "12:00?", "Room 12", "wifi?"])
def test_a_short_message_keeps_the_guests_language(text):
    assert language.detect(text) is None
    assert language.guest_language(text, previous="de") == ("de", None)


def test_a_guest_without_a_language_gets_a_guess_that_is_not_stored():
    assert language.guest_language("да") == ("ru", None)  # Cyrillic
    assert language.guest_language("hola", hint="es") == ("es", None)  # a handoff keyword's language
    assert language.guest_language("ok") == ("en", None)


def test_a_detection_is_stored_only_when_it_changes():
    assert language.guest_language("Wann gibt es Frühstück?", previous="en") == ("de", "de")
    assert language.guest_language("Wann gibt es Frühstück?", previous="de") == ("de", None)


def test_detection_is_cheap_and_deterministic():
    language.detect("warm up the model")  # the one-off load (about 0.15 s) is not the per-call cost
    texts = [text for _, text in SAMPLES] * 20
    started = time.perf_counter()
    results = [language.detect(text) for text in texts]
    per_call = (time.perf_counter() - started) / len(texts)
    assert per_call < 0.002, f"{per_call * 1e6:.0f} µs a call"  # measured: about 15 µs
    assert results == [language.detect(text) for text in texts]


class _AnotherAppsWorker:
    def __init__(self) -> None:
        from celery import Celery

        self.app = Celery("another-app", set_as_current=False)  # the current app stays hotelbot's


def test_a_celery_worker_loads_the_model_before_its_pool_forks():
    """``worker_init`` (sent in the worker's main process before the pool starts) loads the model,
    so no pool process loads it at a guest's first message (messaging/apps.py)."""
    from celery.signals import worker_init

    language._detector.cache_clear()
    assert language._detector()._models == {}  # a fresh detector loads the model lazily
    # A worker of another app: Celery's Django fixup leaves it alone (it would install its task
    # hooks in this test process), our receiver does not look at the sender.
    worker_init.send(sender=_AnotherAppsWorker())
    assert len(language._detector()._models) == 1  # loaded: the pool processes inherit it
    assert language.detect("Can I get a late check-out tomorrow?") == "en"
