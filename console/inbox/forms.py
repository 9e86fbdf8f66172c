"""The inbox's forms: a reply to the guest (with its one-time request key) and an internal note."""

from __future__ import annotations

import uuid

from django import forms

from messaging.services import handoff, inbox


def new_request_key() -> str:
    """A fresh key for one reply form: posting the same form twice queues the reply once."""
    return uuid.uuid4().hex


class ReplyForm(forms.Form):
    text = forms.CharField(
        label="Reply to the guest",
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        max_length=handoff.MAX_TEXT,
        help_text="Sent on WhatsApp through the reply pipeline, exactly once; you take the conversation.",
    )
    request_key = forms.CharField(widget=forms.HiddenInput, max_length=64)


class NoteForm(forms.Form):
    text = forms.CharField(
        label="Internal note",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        max_length=inbox.MAX_NOTE,
        help_text="For staff only: never sent to the guest.",
    )
