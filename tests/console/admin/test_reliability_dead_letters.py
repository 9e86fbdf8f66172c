"""Dead letters in admin: list filters, the detail page, and the staff actions (each audited)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from reliability.models import AuditEntry, DeadLetter
from tests.console.admin_world import HotelRows, RecordingHandler, handler_registered, hotel_rows

pytestmark = pytest.mark.django_db

LIST = "/admin/reliability/deadletter/"


class LinkingHandler(RecordingHandler):
    """The recording handler, with the link the detail page shows for a reply's letter."""

    def links(self, letter: DeadLetter) -> list[tuple[str, str]]:
        return [("Answer by hand", f"/admin/messaging/replyjob/{letter.subject_id}/answer/")]


@pytest.fixture
def linking_handler() -> Any:
    with handler_registered(DeadLetter.Kind.REPLY_SEND, LinkingHandler()) as h:
        yield h


@pytest.fixture
def alpha() -> HotelRows:
    return hotel_rows("Alpha Hotel", "1101000011", "79001110001@c.us", "alice")


@pytest.fixture
def alpha_client(alpha: HotelRows) -> Client:
    c = Client()
    c.force_login(alpha.staff)
    return c


def _messages(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_detail_page_shows_payload_error_links_attempts_and_audit(
    alpha: HotelRows, alpha_client: Client, linking_handler: LinkingHandler
) -> None:
    letter = alpha.rows[DeadLetter]

    page = alpha_client.get(f"{LIST}{letter.pk}/change/").content.decode()

    assert "&quot;job&quot;" in page  # pretty JSON payload
    assert "503 Service Unavailable" in page
    assert "Answer by hand" in page
    assert f"/admin/messaging/replyjob/{letter.subject_id}/answer/" in page
    assert "send (Green API sendMessage)" in page  # the reply job's delivery attempt
    assert "Alpha Hotel note" in page  # this letter's audit entry
    assert "Retry now" in page
    assert "Discard (reason required)" in page
    assert 'name="staff_notes"' in page
    assert 'name="reason_code"' not in page  # everything else read-only


def test_retry_selected_reports_counts_and_audits_the_actor(
    alpha: HotelRows, alpha_client: Client, linking_handler: LinkingHandler
) -> None:
    letter = alpha.rows[DeadLetter]

    response = alpha_client.post(
        LIST, {"action": "retry_selected", "_selected_action": [letter.pk]}, follow=True
    )

    assert "1 dead letter(s) retried." in _messages(response)
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RETRYING
    entry = AuditEntry.objects.get(action="dead_letter.retry")
    assert (entry.actor, entry.via, entry.tenant) == (alpha.staff, "admin", str(alpha.hotel.pk))


def test_discard_asks_for_a_reason_first(alpha: HotelRows, alpha_client: Client) -> None:
    letter = alpha.rows[DeadLetter]

    form = alpha_client.post(LIST, {"action": "discard_selected", "_selected_action": [letter.pk]})
    assert form.status_code == 200
    assert "Discard 1 dead letter(s)?" in form.content.decode()
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.PENDING

    done = alpha_client.post(
        LIST,
        {
            "action": "discard_selected",
            "_selected_action": [letter.pk],
            "confirm": "yes",
            "reason": "test spam",
        },
        follow=True,
    )
    assert "1 dead letter(s) discarded." in _messages(done)
    letter.refresh_from_db()
    assert (letter.status, letter.resolution, letter.resolved_by) == ("discarded", "test spam", alpha.staff)
    assert AuditEntry.objects.filter(action="dead_letter.discard", reason="test spam").exists()


def test_detail_buttons_park_and_discard(alpha: HotelRows, alpha_client: Client) -> None:
    letter = alpha.rows[DeadLetter]

    assert alpha_client.get(f"{LIST}{letter.pk}/park/").status_code == 405
    alpha_client.post(f"{LIST}{letter.pk}/park/", {"reason": "calling the guest"})
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.MANUAL
    assert "calling the guest" in letter.staff_notes

    missing_reason = alpha_client.post(f"{LIST}{letter.pk}/discard/", {"reason": ""})
    assert missing_reason.status_code == 200  # the form again, nothing changed
    alpha_client.post(f"{LIST}{letter.pk}/discard/", {"reason": "guest left"})
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.DISCARDED


def test_staff_notes_are_the_only_editable_field_and_are_audited(
    alpha: HotelRows, alpha_client: Client
) -> None:
    letter = alpha.rows[DeadLetter]

    alpha_client.post(
        f"{LIST}{letter.pk}/change/", {"staff_notes": "called reception", "reason_code": "hacked"}
    )

    letter.refresh_from_db()
    assert (letter.staff_notes, letter.reason_code) == ("called reception", "attempts_exhausted")
    assert AuditEntry.objects.filter(action="dead_letter.notes", actor=alpha.staff).exists()


def test_retry_the_filtered_set_confirms_the_count_then_retries_only_it(
    alpha: HotelRows, alpha_client: Client, linking_handler: LinkingHandler
) -> None:
    other = DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND,
        tenant=str(alpha.hotel.pk),
        reason_code="x",
        reason="x",
        category=DeadLetter.Category.TIMEOUT,
    )
    url = reverse("admin:reliability_deadletter_retry_filtered") + "?category__exact=timeout"

    confirm = alpha_client.get(url)
    assert "Retry 1 open dead letter(s)" in confirm.content.decode()
    assert linking_handler.redriven == []

    done = alpha_client.post(url, follow=True)
    assert linking_handler.redriven == [other.pk]
    assert any("1 handed back" in m for m in _messages(done))
    bulk = AuditEntry.objects.get(action="dead_letter.retry_bulk")
    assert bulk.actor == alpha.staff
    assert "category__exact=timeout" in bulk.reason


def test_age_and_hotel_filters(alpha: HotelRows, alpha_client: Client) -> None:
    old = DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND, tenant=str(alpha.hotel.pk), reason_code="x", reason="x"
    )
    DeadLetter.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=9))

    def shown(query: str) -> set[int]:
        return {row.pk for row in alpha_client.get(f"{LIST}?{query}").context["cl"].result_list}

    assert shown("age=1h") == {alpha.rows[DeadLetter].pk}
    assert shown("age=older") == {old.pk}
    assert shown(f"hotel={alpha.hotel.pk}") == {alpha.rows[DeadLetter].pk, old.pk}
    assert shown("q=Alpha") == {alpha.rows[DeadLetter].pk}  # search in the reason
