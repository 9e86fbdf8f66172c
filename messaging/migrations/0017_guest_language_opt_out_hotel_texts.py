# Issue 19 items 8 and 9: the guest's language and opt-out, a hotel's own texts; the "hotel staff"
# group may edit its hotels' texts and clear a guest's opt-out (messaging/permissions.py).

import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

import messaging.models

HOTEL_STAFF_GROUP = "hotel staff"

# The permissions this migration adds to the group (a copy: migrations never import code that changes).
ADDED_PERMISSIONS = (
    ("messaging", "clear_opt_out"),
    ("messaging", "view_hoteltext"),
    ("messaging", "add_hoteltext"),
    ("messaging", "change_hoteltext"),
    ("messaging", "delete_hoteltext"),
)


def hotel_staff_permissions_add(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """As 0011 does: create the app's permissions now (post_migrate comes later), then add them to
    the group (found or created by name; nothing removed)."""
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("messaging")
    app_config.models_module = True  # type: ignore[assignment]  # the recipe: "has models"
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    group, _ = Group.objects.using(db).get_or_create(name=HOTEL_STAFF_GROUP)
    group.permissions.add(
        *(
            Permission.objects.using(db).get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in ADDED_PERMISSIONS
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0016_inbox"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="guest",
            options={
                "ordering": ["-last_seen_at"],
                "permissions": [
                    ("clear_opt_out", "Can let an opted-out guest receive the bot's messages again")
                ],
            },
        ),
        migrations.AddField(
            model_name="guest",
            name="language",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The language the guest writes in (ISO 639-1), detected from their messages; the bot's own texts and the AI's answers use it. Empty: not known yet (English).",
                max_length=8,
                validators=[messaging.models.language_code_validate],
            ),
        ),
        migrations.AddField(
            model_name="guest",
            name="opt_out_message_id",
            field=models.BigIntegerField(
                db_default=0,
                default=0,
                help_text="The guest's message that last set or cleared the opt-out: an earlier message processed later changes nothing.",
            ),
        ),
        migrations.AddField(
            model_name="guest",
            name="opted_out_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the guest asked us to stop writing (STOP): no bot message goes to them until they write again or staff clear it. Staff replies still go (docs/handoff.md).",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="replyjob",
            name="kind",
            field=models.CharField(
                choices=[
                    ("answer", "the bot's answer"),
                    ("handoff", "notice that staff will answer"),
                    ("staff", "written by staff"),
                    ("opt_out", "opt-out confirmation"),
                ],
                db_default="answer",
                default="answer",
                help_text="answer: the bot's answer to its inbound message (one per message); handoff: the one notice that staff will answer; staff: a message written by staff; opt_out: the one confirmation that the guest asked us to stop writing.",
                max_length=10,
            ),
        ),
        migrations.CreateModel(
            name="HotelText",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "key",
                    models.CharField(
                        choices=[
                            ("notice", "handoff notice: a person will answer"),
                            ("notice_emergency", "handoff notice: first line for an emergency"),
                            ("notice_fallback", "handoff notice: the AI is down and no FAQ answer matched"),
                            ("notice_unreadable", "handoff notice: voice, photo, document (please type)"),
                            ("notice_contact", "handoff notice: the hotel's staff contact"),
                            ("resend", "a message did not come through: please send it again"),
                            ("opt_out", "opt-out confirmation (STOP)"),
                            ("faq_check_out", "FAQ answer without AI: check-out"),
                            ("faq_check_in", "FAQ answer without AI: check-in"),
                            ("faq_wifi", "FAQ answer without AI: Wi-Fi"),
                            ("faq_breakfast", "FAQ answer without AI: breakfast"),
                            ("faq_parking", "FAQ answer without AI: parking"),
                            ("faq_address", "FAQ answer without AI: address"),
                            ("faq_staff_contact", "FAQ answer without AI: staff contact"),
                            ("faq_more", "FAQ answer without AI: the closing question"),
                        ],
                        help_text="Which text this replaces.",
                        max_length=32,
                    ),
                ),
                (
                    "language",
                    models.CharField(
                        help_text="ISO 639-1 code of the guests' language this text is for (en, ru, es, de, fr, it...).",
                        max_length=8,
                        validators=[messaging.models.language_code_validate],
                    ),
                ),
                (
                    "text",
                    models.TextField(
                        help_text="What the bot sends instead of the default. Placeholders such as {contact} are filled in; each text may use only its own (the form says which)."
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "hotel",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="texts",
                        to="messaging.hotel",
                    ),
                ),
            ],
            options={
                "ordering": ["hotel", "key", "language"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("hotel", "key", "language"), name="uniq_hotel_text_per_language"
                    )
                ],
            },
        ),
        # Reversed: the group keeps them (an operator may rely on them).
        migrations.RunPython(hotel_staff_permissions_add, migrations.RunPython.noop),
    ]
