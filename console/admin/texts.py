"""A hotel's own wording of the bot's texts (``messaging.HotelText``; docs/handoff.md).

Hotel-scoped like every console admin: staff see, add and change only their hotels' texts (the
"hotel staff" group holds the permissions, migration 0016). The form offers the language codes the
detection knows, shows the default it replaces, and refuses a text whose placeholders the bot could
not fill (``bot_texts.placeholders_problem``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html_join

from console.admin import scale
from console.admin.messaging import HotelScopedAdmin
from messaging import bot_texts
from messaging.models import HotelText

#: The languages with defaults first, then every other code alphabetically.
LANGUAGE_CHOICES: list[tuple[str, str]] = [
    (code, f"{code}: {bot_texts.language_name(code)}") for code in bot_texts.LANGUAGES
] + sorted(
    (code, f"{code}: {name}")
    for code, name in bot_texts.LANGUAGE_NAMES.items()
    if code not in bot_texts.LANGUAGES
)


class HotelTextForm(forms.ModelForm):
    language = forms.ChoiceField(
        choices=LANGUAGE_CHOICES,
        help_text="The guests' language this text is for; other languages fall back to the hotel's "
        "English text, then the default.",
    )

    class Meta:
        model = HotelText
        fields = ("hotel", "key", "language", "text")

    def clean_text(self) -> str:
        return str(self.cleaned_data["text"]).strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        key, text = cleaned.get("key"), cleaned.get("text")
        if key and text and (problem := bot_texts.placeholders_problem(key, text)):
            self.add_error("text", problem)
        return cleaned


@admin.register(HotelText)
class HotelTextAdmin(HotelScopedAdmin):
    form = HotelTextForm
    list_display = ("hotel", "key", "language", "short_text", "updated_at")
    list_filter = (scale.hotel_filter("hotel_id"), "key", "language")
    list_select_related = ("hotel",)
    search_fields = ("text",)
    readonly_fields = ("defaults", "updated_at")
    fields = ("hotel", "key", "language", "text", "defaults", "updated_at")

    @admin.display(description="text")
    def short_text(self, obj: HotelText) -> str:
        return obj.text if len(obj.text) <= 80 else obj.text[:79] + "…"

    @admin.display(description="defaults (what the bot says without this text)")
    def defaults(self, obj: HotelText) -> str:
        """Every key's English default and its placeholders (the chosen key's in every language)."""
        if obj.pk is None:
            rows = [
                (key.label, bot_texts.DEFAULTS[key][bot_texts.DEFAULT_LANGUAGE], _placeholders(key))
                for key in bot_texts.TextKey
            ]
        else:
            rows = [
                (language, text, _placeholders(obj.key))
                for language, text in bot_texts.DEFAULTS[obj.key].items()
            ]
        return format_html_join("", "<p><b>{}</b>: {} <i>{}</i></p>", rows)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("language", bot_texts.DEFAULT_LANGUAGE)
        return initial


def _placeholders(key: str) -> str:
    required, optional = bot_texts.PLACEHOLDERS.get(key, (frozenset(), frozenset()))
    parts = [f"must keep {{{p}}}" for p in sorted(required)] + [f"may use {{{p}}}" for p in sorted(optional)]
    return f"({'; '.join(parts)})" if parts else ""
