"""The dead letter queue: record what failed for good, classify it, redrive it, let staff act on it.

The public API (import ``reliability.dead_letters``): every write is in :mod:`.services`, every
read in :mod:`.selectors`.

Generic. A dead letter knows its kind, a subject reference (``subject_type``/``subject_id``), a
tenant key, its payload and why it failed; the domain registers a :class:`Handler` per kind at
start-up (``messaging`` registers the reply kinds), so the toolkit never imports the domain.

Lifecycle::

    record_failure ──► pending ──(redrive: beat or staff)──► retrying ──► resolved (subject_resolved)
                         │  ▲                                   │
                         │  └──────── died again (record_failure) ┘
                         ├──► manual (auth / validation / quota, or DLQ_MAX_REDRIVES reached; staff alerted)
                         └──► discarded (staff)

One letter per subject while it is open: a redriven reply that dies again updates its letter
(attempts, last failure, category) instead of adding one, so the queue counts guests, not tries.

Redrive strategy by category (``STRATEGY``): ``rate_limited`` → later, with backoff;
``provider_5xx``, ``timeout``, ``unknown`` → as soon as the dependency's breaker admits calls
(checked on every beat run), with backoff; ``auth``, ``validation``, ``quota`` → parked for a human
(a retry cannot fix a wrong token, a refused request or an exhausted plan) and staff alerted.
"""

from reliability.dead_letters.selectors import (
    DEAD_LETTER_FILTERS,
    dead_letter_bulk_set,
    dead_letter_get,
    dead_letter_list,
    dead_letter_pending,
    dead_letter_summary,
)
from reliability.dead_letters.services import (
    STRATEGY,
    BulkOutcome,
    CannotRedrive,
    Category,
    Failure,
    Handler,
    RedriveResult,
    Status,
    classify_category,
    dead_letter_quarantine,
    dead_letter_set_notes,
    discard,
    handler_for,
    park,
    record_failure,
    redrive,
    redrive_due,
    redrive_many,
    register_handler,
    resolve,
    scrub,
    subject_resolved,
)
from reliability.dead_letters.services import (
    _handlers as _handlers,  # the registry, cleared by tests
)

__all__ = [
    "DEAD_LETTER_FILTERS",
    "STRATEGY",
    "BulkOutcome",
    "CannotRedrive",
    "Category",
    "Failure",
    "Handler",
    "RedriveResult",
    "Status",
    "classify_category",
    "dead_letter_bulk_set",
    "dead_letter_get",
    "dead_letter_list",
    "dead_letter_pending",
    "dead_letter_quarantine",
    "dead_letter_set_notes",
    "dead_letter_summary",
    "discard",
    "handler_for",
    "park",
    "record_failure",
    "redrive",
    "redrive_due",
    "redrive_many",
    "register_handler",
    "resolve",
    "scrub",
    "subject_resolved",
]
