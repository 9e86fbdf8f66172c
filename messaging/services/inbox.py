"""What staff write in the inbox besides replies: internal notes on a conversation (docs/handoff.md).

A note is for the hotel's staff only: it is never sent to the guest and never reaches the reply
pipeline. Adding one is audited (``conversation.note``, tenant = the hotel) and limited to the
hotels the author staffs (another hotel's conversation: NotFound), as the owner changes and staff
replies of :mod:`messaging.services.handoff` are.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from messaging import selectors
from messaging.models import ConversationNote
from messaging.services.handoff import conversation_audit, staff_text_clean

#: The longest note kept.
MAX_NOTE = 5000


def note_add(*, conversation_id: int, actor: Any, text: str, via: str) -> ConversationNote:
    """Add an internal note by ``actor`` to a conversation of their hotels; audited."""
    text = staff_text_clean(text, what="note", limit=MAX_NOTE)
    conversation = selectors.inbox_conversation_get(user=actor, pk=conversation_id)
    author = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        note = ConversationNote.objects.create(conversation=conversation, author=author, text=text)
        conversation_audit(conversation, actor, via, "note", note=note.pk, text=text[:500])
    return note
