"""Who may do what in the staff console: the model permissions a hotel's staff need.

Two questions are asked on every admin page, admin action and API call, by the adapter:

1. **May this user do this kind of thing at all?** A Django model permission (``view_*`` to look,
   ``change_*`` to act, ``messaging.answer_guests`` to send a guest a message written by staff).
   Missing: **403** (the same answer for every id, so nothing can be probed).
2. **Is this row one of theirs?** The hotel scope (``selectors.hotels_visible_to``,
   ``console.tenancy``), applied by the services and the scoped querysets. Another hotel's
   row: **404**.

Breakers and degradation are shared by every hotel: only the operations group
(:data:`OPERATIONS_GROUP`) with the model permissions may see or change them.

The "hotel staff" group (created by migration ``0011_hotel_staff_group``) holds what the staff of
a hotel need; adding a user to it and to ``Hotel.staff`` is the whole onboarding of a receptionist.
The migrations keep their own copies of what they add (0011 the first list, 0016 the texts and
the opt-out; migrations never import code that changes later); a test checks they add up to
:data:`HOTEL_STAFF_PERMISSIONS`.
"""

from __future__ import annotations

from typing import Any

#: Members of this Django group (and superusers) see every hotel and alone may touch breakers and
#: degradation.
OPERATIONS_GROUP = "operations"

#: The group of a hotel's staff (the users in ``Hotel.staff``); made by migration 0011.
HOTEL_STAFF_GROUP = "hotel staff"

#: Sending a guest a WhatsApp message written by staff (admin page and API).
ANSWER_GUESTS = "messaging.answer_guests"

#: Letting an opted-out guest (STOP) receive the bot's messages again (admin action and API).
CLEAR_OPT_OUT = "messaging.clear_opt_out"

#: (app label, codename) of every permission the "hotel staff" group holds.
HOTEL_STAFF_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("messaging", "view_hotel"),
    ("messaging", "view_guest"),
    ("messaging", "view_conversation"),
    ("messaging", "view_message"),
    ("messaging", "view_replyjob"),
    ("messaging", "change_replyjob"),  # "Retry now" on their reply jobs (the form stays read-only)
    ("messaging", "view_deliveryattempt"),
    ("messaging", "answer_guests"),
    ("reliability", "view_deadletter"),
    ("reliability", "change_deadletter"),  # retry, discard, park, resolve, notes; bulk redrive
    ("reliability", "view_auditentry"),
    ("reliability", "view_reliabilityreport"),  # the report API, cut to their hotels
    ("reliability", "view_degradationstate"),  # the level in force over the API (admin: operations)
    # Migration 0016: a guest's opt-out cleared by staff; the hotel's own texts (messaging.HotelText).
    ("messaging", "clear_opt_out"),
    ("messaging", "view_hoteltext"),
    ("messaging", "add_hoteltext"),
    ("messaging", "change_hoteltext"),
    ("messaging", "delete_hoteltext"),
)


def user_may_answer_guests(*, user: Any) -> bool:
    """True when ``user`` holds ``messaging.answer_guests`` (superusers hold every permission)."""
    return bool(getattr(user, "is_active", False) and user.has_perm(ANSWER_GUESTS))


def is_operations(user: Any) -> bool:
    """Superusers and members of the operations group: every hotel, breakers and degradation."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name=OPERATIONS_GROUP).exists())
