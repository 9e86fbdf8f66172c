# Issue 16, part F: answering a guest by hand needs its own permission, and the "hotel staff" group
# holds what a hotel's staff need (messaging/permissions.py says why; a test checks the two lists agree).

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

HOTEL_STAFF_GROUP = "hotel staff"

# A copy of messaging.permissions.HOTEL_STAFF_PERMISSIONS as of this migration.
HOTEL_STAFF_PERMISSIONS = (
    ("messaging", "view_hotel"),
    ("messaging", "view_guest"),
    ("messaging", "view_conversation"),
    ("messaging", "view_message"),
    ("messaging", "view_replyjob"),
    ("messaging", "change_replyjob"),
    ("messaging", "view_deliveryattempt"),
    ("messaging", "answer_guests"),
    ("reliability", "view_deadletter"),
    ("reliability", "change_deadletter"),
    ("reliability", "view_auditentry"),
    ("reliability", "view_reliabilityreport"),
    ("reliability", "view_degradationstate"),
)


def create_hotel_staff_group(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Made like the operations group (found or created by name); adds, never removes, permissions,
    so the group an operator extended keeps what was added."""
    from django.contrib.auth.management import create_permissions

    # Permissions are created by post_migrate, after every migration: on an empty database they do
    # not exist yet here. Create the ones of the two apps now (the usual recipe for a migration).
    for label in ("messaging", "reliability"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True  # type: ignore[assignment]  # the recipe: "has models"
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    group, _ = Group.objects.using(db).get_or_create(name=HOTEL_STAFF_GROUP)
    wanted = []
    for app_label, codename in HOTEL_STAFF_PERMISSIONS:
        wanted.append(Permission.objects.using(db).get(content_type__app_label=app_label, codename=codename))
    group.permissions.add(*wanted)


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0010_message_hotel_dedup"),
        ("reliability", "0012_reseed_redis_breaker"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="replyjob",
            options={
                "ordering": ["-created_at"],
                "permissions": [("answer_guests", "Can answer guests by hand")],
            },
        ),
        # Reversed: the group stays (users may be in it; an operator may have extended it).
        migrations.RunPython(create_hotel_staff_group, migrations.RunPython.noop),
    ]
