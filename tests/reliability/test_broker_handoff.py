"""The webhook's publish runs on the process's hand-off thread once the response is on its way
(reliability.broker.hand_off): in order, with the request's context, surviving a failure."""

from __future__ import annotations

import contextvars
import threading
from functools import partial
from typing import Any

import pytest

from hotelbot.celery import app as celery_app
from messaging.models import ReplyJob
from messaging.services import replies
from reliability import broker
from tests.factories import HotelFactory
from tests.messaging import payloads

URL = "/webhooks/green-api/"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def test_handed_off_work_runs_in_order_on_another_thread_with_the_callers_context() -> None:
    handoff = broker._Handoff()
    ran: list[tuple[int, str, bool]] = []

    def work(n: int) -> None:
        if n == 1:
            raise RuntimeError("a publish failed")  # logged; the next one still runs
        ran.append((n, request_id.get(), threading.current_thread() is threading.main_thread()))

    request_id.set("req-7")
    for n in range(4):
        handoff.submit(partial(work, n))
    assert handoff.drain(5.0)
    assert ran == [(0, "req-7", False), (2, "req-7", False), (3, "req-7", False)]


def test_drain_reports_work_still_running() -> None:
    handoff = broker._Handoff()
    release = threading.Event()
    handoff.submit(lambda: release.wait(5))
    assert handoff.drain(0.05) is False
    release.set()
    assert handoff.drain(5.0) is True


@pytest.mark.django_db(transaction=True)
def test_the_webhook_answers_before_its_publish_and_the_job_is_published_after(
    webhook_client: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CELERY_REQUEST_PUBLISH_HANDOFF = True
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)  # setattr's undo deletes it
    HotelFactory.create()
    release, published = threading.Event(), []

    def publish(*, job_id: int, **kwargs: Any) -> bool:
        release.wait(5)  # a slow broker
        published.append((job_id, kwargs["recorded_task_id"], threading.current_thread().name))
        return True

    monkeypatch.setattr(replies, "reply_job_publish", publish)
    response = webhook_client.post(URL, payloads.incoming_text(id_message="H1"), format="json")
    assert response.json() == {"status": "stored"}  # answered while the publish still waits
    assert published == []
    release.set()
    assert broker.handoff_drain(5.0)
    job = ReplyJob.objects.get()
    assert published == [(job.pk, job.published_task_id, "publish-handoff")]


@pytest.mark.django_db(transaction=True)
def test_without_the_handoff_the_publish_runs_before_the_answer(
    webhook_client: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CELERY_REQUEST_PUBLISH_HANDOFF = False
    HotelFactory.create()
    threads: list[str] = []

    def publish(**_: Any) -> bool:
        threads.append(threading.current_thread().name)
        return True

    monkeypatch.setattr(replies, "reply_job_publish", publish)
    webhook_client.post(URL, payloads.incoming_text(id_message="H2"), format="json")
    assert threads == [threading.current_thread().name]
