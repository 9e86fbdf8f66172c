"""``manage.py send_test_alert`` sends through the configured backend to every recipient."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from tests.factories import HotelFactory


@pytest.mark.django_db
def test_sends_to_admins_and_every_hotel_staff_email_and_says_where(settings, capsys) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ADMINS = [("Ops", "ops@example.com")]
    for instance, email in [("7103000001", "desk@a.example"), ("7103000002", "desk@b.example")]:
        HotelFactory.create(green_api_instance_id=instance, staff_email=email)
    HotelFactory.create(green_api_instance_id="7103000003", staff_email="desk@a.example")  # once
    HotelFactory.create(green_api_instance_id="7103000004", staff_email="")
    call_command("send_test_alert")
    out = capsys.readouterr().out
    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == ["desk@a.example", "desk@b.example", "ops@example.com"]
    assert all("test alert" in m.subject.lower() for m in mail.outbox)
    assert "locmem" in out
    assert "ops@example.com" in out
    assert "desk@b.example" in out
    assert "sent 2 mail(s) to 3 recipient(s)" in out


@pytest.mark.django_db
def test_dry_run_sends_nothing_and_no_recipient_is_an_error(settings, capsys) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ADMINS = [("Ops", "ops@example.com")]
    call_command("send_test_alert", "--dry-run")
    assert mail.outbox == []
    assert "dry run" in capsys.readouterr().out
    settings.ADMINS = []
    with pytest.raises(CommandError, match="no recipient"):
        call_command("send_test_alert")


@pytest.mark.django_db
def test_a_refusing_mail_server_is_a_command_error(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2
    settings.ADMINS = [("Ops", "ops@example.com")]
    with pytest.raises(CommandError, match="mail backend failed"):
        call_command("send_test_alert")
