# ruff: noqa: RUF001 - texts in Russian and French: their letters are meant
"""Every text the bot sends on its own, per language, and the one rule that picks it (docs/handoff.md).

Pure: no ORM. The defaults are one table in code (:data:`DEFAULTS`: key -> language -> text, at
least English, Russian, Spanish, German and French for every key); a hotel overrides any of them
per language in admin (``messaging.HotelText``, read by ``selectors.hotel_text_overrides``).
:func:`text_resolve` is the one place a text is chosen: the hotel's text in the guest's language,
else the default in that language, else the hotel's English text, else the English default (so a
guest writing Italian gets English, unless the hotel wrote an Italian text).

Placeholders are ``{name}`` only (no attributes, no formats, no literal braces): each key allows
the ones :data:`PLACEHOLDERS` lists, and :func:`placeholders_problem` is the validation admin runs.
:func:`render` fills them by plain substitution, so a hotel's text can never reach anything else.
A new key (a reception-hours notice, ...) is a member of :class:`TextKey`, its defaults in
:data:`DEFAULTS` and its placeholders in :data:`PLACEHOLDERS`: resolution, overrides and admin
follow by key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.conf import global_settings
from django.db import models

#: The languages every text has a default in; another language falls back to English.
LANGUAGES: tuple[str, ...] = ("en", "ru", "es", "de", "fr")
DEFAULT_LANGUAGE = "en"

#: ISO 639-1 codes a guest's language or a hotel's text may have, with English names (the AI prompt
#: names the language): Django's list of languages, by their two-letter code, and Chinese.
LANGUAGE_NAMES: dict[str, str] = {
    **{code: name for code, name in global_settings.LANGUAGES if len(code) == 2},
    "zh": "Chinese",
}


class TextKey(models.TextChoices):
    """What the bot says on its own. ``notice*``: the handoff notice (docs/handoff.md)."""

    NOTICE = "notice", "handoff notice: a person will answer"
    NOTICE_EMERGENCY = "notice_emergency", "handoff notice: first line for an emergency"
    NOTICE_FALLBACK = "notice_fallback", "handoff notice: the AI is down and no FAQ answer matched"
    NOTICE_UNREADABLE = "notice_unreadable", "handoff notice: voice, photo, document (please type)"
    NOTICE_CONTACT = "notice_contact", "handoff notice: the hotel's staff contact"
    NOTICE_CLOSED = "notice_closed", "handoff notice: reception closed, opens within a day"
    NOTICE_CLOSED_ON = "notice_closed_on", "handoff notice: reception closed, opens a day or more later"
    RESEND = "resend", "a message did not come through: please send it again"
    OPT_OUT = "opt_out", "opt-out confirmation (STOP)"
    FAQ_CHECK_OUT = "faq_check_out", "FAQ answer without AI: check-out"
    FAQ_CHECK_IN = "faq_check_in", "FAQ answer without AI: check-in"
    FAQ_WIFI = "faq_wifi", "FAQ answer without AI: Wi-Fi"
    FAQ_BREAKFAST = "faq_breakfast", "FAQ answer without AI: breakfast"
    FAQ_PARKING = "faq_parking", "FAQ answer without AI: parking"
    FAQ_ADDRESS = "faq_address", "FAQ answer without AI: address"
    FAQ_STAFF_CONTACT = "faq_staff_contact", "FAQ answer without AI: staff contact"
    FAQ_MORE = "faq_more", "FAQ answer without AI: the closing question"


#: key -> (placeholders the text must keep, placeholders it may use). Absent: none allowed.
PLACEHOLDERS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    TextKey.NOTICE_CONTACT: (frozenset({"contact"}), frozenset()),
    TextKey.NOTICE_CLOSED: (frozenset({"time"}), frozenset()),
    TextKey.NOTICE_CLOSED_ON: (frozenset({"day", "time"}), frozenset()),
    **{
        key: (frozenset({"value"}), frozenset({"name"}))
        for key in (
            TextKey.FAQ_CHECK_OUT,
            TextKey.FAQ_CHECK_IN,
            TextKey.FAQ_WIFI,
            TextKey.FAQ_BREAKFAST,
            TextKey.FAQ_PARKING,
            TextKey.FAQ_ADDRESS,
            TextKey.FAQ_STAFF_CONTACT,
        )
    },
}

_K = TextKey
#: key -> language -> the default text.
DEFAULTS: dict[str, dict[str, str]] = {
    _K.NOTICE: {
        "en": "Thank you for your message. A member of our staff will answer you here.",
        "ru": "Спасибо за сообщение. Вам ответит здесь сотрудник отеля.",
        "es": "Gracias por su mensaje. Un miembro de nuestro personal le responderá aquí.",
        "de": "Vielen Dank für Ihre Nachricht. Ein Mitarbeiter unseres Hauses antwortet Ihnen hier.",
        "fr": "Merci pour votre message. Un membre de notre équipe vous répondra ici.",
    },
    _K.NOTICE_EMERGENCY: {
        "en": "If anyone is in danger, please call the local emergency number now.",
        "ru": "Если кому-то грозит опасность, срочно позвоните по местному номеру экстренных служб.",
        "es": "Si alguien está en peligro, llame ahora al número local de emergencias.",
        "de": "Wenn jemand in Gefahr ist, rufen Sie bitte sofort die örtliche Notrufnummer an.",
        "fr": "Si quelqu'un est en danger, appelez tout de suite le numéro d'urgence local.",
    },
    _K.NOTICE_FALLBACK: {
        "en": "Thank you for your message. I cannot answer it automatically right now. A member of our "
        "staff will answer you here.",
        "ru": "Спасибо за сообщение. Сейчас я не могу ответить автоматически. Вам ответит здесь "
        "сотрудник отеля.",
        "es": "Gracias por su mensaje. Ahora mismo no puedo responder automáticamente. Un miembro de "
        "nuestro personal le responderá aquí.",
        "de": "Vielen Dank für Ihre Nachricht. Ich kann gerade nicht automatisch antworten. Ein "
        "Mitarbeiter unseres Hauses antwortet Ihnen hier.",
        "fr": "Merci pour votre message. Je ne peux pas y répondre automatiquement pour le moment. Un "
        "membre de notre équipe vous répondra ici.",
    },
    _K.NOTICE_UNREADABLE: {
        "en": "Thank you! I can read text messages only: please type your question. A member of our "
        "staff will answer you here.",
        "ru": "Спасибо! Я понимаю только текстовые сообщения: пожалуйста, напишите ваш вопрос. Вам "
        "ответит здесь сотрудник отеля.",
        "es": "¡Gracias! Solo puedo leer mensajes de texto: por favor, escriba su pregunta. Un miembro "
        "de nuestro personal le responderá aquí.",
        "de": "Vielen Dank! Ich kann nur Textnachrichten lesen: Bitte schreiben Sie Ihre Frage. Ein "
        "Mitarbeiter unseres Hauses antwortet Ihnen hier.",
        "fr": "Merci ! Je ne lis que les messages écrits : merci de taper votre question. Un membre de "
        "notre équipe vous répondra ici.",
    },
    _K.NOTICE_CONTACT: {
        "en": "You can also reach them: {contact}.",
        "ru": "Также можно связаться с нами: {contact}.",
        "es": "También puede contactarnos: {contact}.",
        "de": "Sie erreichen uns auch so: {contact}.",
        "fr": "Vous pouvez aussi nous joindre : {contact}.",
    },
    _K.NOTICE_CLOSED: {
        "en": "Reception is closed now: it opens at {time} (hotel time), and we will answer you then.",
        "ru": "Ресепшен сейчас закрыт: он откроется в {time} (по времени отеля), и тогда мы вам ответим.",
        "es": "La recepción está cerrada ahora: abre a las {time} (hora del hotel) y le responderemos "
        "entonces.",
        "de": "Die Rezeption ist gerade geschlossen: Sie öffnet um {time} Uhr (Hotelzeit), dann "
        "antworten wir Ihnen.",
        "fr": "La réception est fermée pour le moment : elle ouvre à {time} (heure de l'hôtel) et nous "
        "vous répondrons à ce moment-là.",
    },
    _K.NOTICE_CLOSED_ON: {
        "en": "Reception is closed now: it opens on {day} at {time} (hotel time), and we will answer you "
        "then.",
        "ru": "Ресепшен сейчас закрыт: он откроется {day} в {time} (по времени отеля), и тогда мы вам "
        "ответим.",
        "es": "La recepción está cerrada ahora: abre el {day} a las {time} (hora del hotel) y le "
        "responderemos entonces.",
        "de": "Die Rezeption ist gerade geschlossen: Sie öffnet am {day} um {time} Uhr (Hotelzeit), dann "
        "antworten wir Ihnen.",
        "fr": "La réception est fermée pour le moment : elle ouvre {day} à {time} (heure de l'hôtel) et "
        "nous vous répondrons à ce moment-là.",
    },
    _K.RESEND: {
        "en": "Sorry, your message did not come through. Could you send it again?",
        "ru": "Извините, ваше сообщение не дошло. Не могли бы вы отправить его ещё раз?",
        "es": "Lo sentimos, su mensaje no llegó. ¿Podría enviarlo de nuevo?",
        "de": "Entschuldigung, Ihre Nachricht ist nicht angekommen. Könnten Sie sie noch einmal senden?",
        "fr": "Désolé, votre message ne nous est pas parvenu. Pourriez-vous le renvoyer ?",
    },
    _K.OPT_OUT: {
        "en": "You will receive no more messages from us. Write to us again any time.",
        "ru": "Вы больше не будете получать от нас сообщений. Напишите нам снова в любое время.",
        "es": "No recibirá más mensajes nuestros. Escríbanos de nuevo cuando quiera.",
        "de": "Sie erhalten keine weiteren Nachrichten von uns. Schreiben Sie uns jederzeit wieder.",
        "fr": "Vous ne recevrez plus de messages de notre part. Écrivez-nous à nouveau quand vous voulez.",
    },
    _K.FAQ_CHECK_OUT: {
        "en": "Check-out at {name} is {value}.",
        "ru": "Выезд из отеля {name}: {value}.",
        "es": "La salida en {name} es {value}.",
        "de": "Check-out im {name}: {value}.",
        "fr": "Le départ à {name} : {value}.",
    },
    _K.FAQ_CHECK_IN: {
        "en": "Check-in at {name} is {value}.",
        "ru": "Заезд в отель {name}: {value}.",
        "es": "La entrada en {name} es {value}.",
        "de": "Check-in im {name}: {value}.",
        "fr": "L'arrivée à {name} : {value}.",
    },
    _K.FAQ_WIFI: {
        "en": "Wi-Fi: {value}.",
        "ru": "Wi-Fi: {value}.",
        "es": "Wi-Fi: {value}.",
        "de": "WLAN: {value}.",
        "fr": "Wi-Fi : {value}.",
    },
    _K.FAQ_BREAKFAST: {
        "en": "Breakfast is served {value}.",
        "ru": "Завтрак: {value}.",
        "es": "Desayuno: {value}.",
        "de": "Frühstück: {value}.",
        "fr": "Petit-déjeuner : {value}.",
    },
    _K.FAQ_PARKING: {
        "en": "Parking: {value}.",
        "ru": "Парковка: {value}.",
        "es": "Aparcamiento: {value}.",
        "de": "Parken: {value}.",
        "fr": "Parking : {value}.",
    },
    _K.FAQ_ADDRESS: {
        "en": "{name} is at {value}.",
        "ru": "Адрес отеля {name}: {value}.",
        "es": "{name} está en {value}.",
        "de": "Adresse von {name}: {value}.",
        "fr": "Adresse de {name} : {value}.",
    },
    _K.FAQ_STAFF_CONTACT: {
        "en": "You can reach our staff at {value}.",
        "ru": "Связаться с нашими сотрудниками: {value}.",
        "es": "Puede contactar con nuestro personal: {value}.",
        "de": "Unser Team erreichen Sie so: {value}.",
        "fr": "Vous pouvez joindre notre équipe : {value}.",
    },
    _K.FAQ_MORE: {
        "en": "Anything else I can help with?",
        "ru": "Чем ещё могу помочь?",
        "es": "¿Puedo ayudarle en algo más?",
        "de": "Kann ich sonst noch helfen?",
        "fr": "Puis-je vous aider pour autre chose ?",
    },
}

#: language -> Monday .. Sunday as ``notice_closed_on`` puts them in its ``{day}`` (not per hotel).
WEEKDAYS: dict[str, tuple[str, ...]] = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "ru": ("в понедельник", "во вторник", "в среду", "в четверг", "в пятницу", "в субботу", "в воскресенье"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
}


def weekday_name(weekday: int, language: str) -> str:
    """The name of ``weekday`` (0 = Monday) in ``language`` (English if unknown)."""
    return WEEKDAYS.get(language, WEEKDAYS[DEFAULT_LANGUAGE])[weekday]


#: (key, language) -> a hotel's own text.
Overrides = Mapping[tuple[str, str], str]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def text_resolve(key: str, language: str, overrides: Overrides | None = None) -> str:
    """THE choice of a text: the hotel's in ``language``, the default in ``language``, the hotel's
    English text, the English default (unfilled: see :func:`render`)."""
    overrides = overrides or {}
    defaults = DEFAULTS[key]
    for found in (
        overrides.get((key, language)),
        defaults.get(language),
        overrides.get((key, DEFAULT_LANGUAGE)),
    ):
        if found:
            return found
    return defaults[DEFAULT_LANGUAGE]


def render(text: str, **values: str) -> str:
    """``text`` with each ``{name}`` of ``values`` replaced (plain substitution, nothing evaluated);
    a placeholder without a value is left as it is."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def text_for(key: str, language: str, overrides: Overrides | None = None, **values: str) -> str:
    """The resolved text, filled."""
    return render(text_resolve(key, language, overrides), **values)


def placeholders_problem(key: str, text: str) -> str | None:
    """Why a hotel's text for ``key`` cannot be used (an unknown or malformed placeholder, or one it
    must keep is missing), or None."""
    required, optional = PLACEHOLDERS.get(key, (frozenset(), frozenset()))
    allowed = required | optional
    used = set(_PLACEHOLDER.findall(text))
    if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
        return "Braces are only for placeholders such as {contact}; remove the others."
    if unknown := sorted(used - allowed):
        named = ", ".join("{" + p + "}" for p in sorted(allowed)) or "none"
        return f"Unknown placeholder {', '.join('{' + u + '}' for u in unknown)}; this text may use: {named}."
    if missing := sorted(required - used):
        return f"This text must keep {', '.join('{' + m + '}' for m in missing)}."
    return None


def language_name(code: str) -> str:
    """The English name of a language code (the code itself when unknown)."""
    return LANGUAGE_NAMES.get(code, code)
