# The dashboard's and the report's time to first human reply (issue 19): an index on the first staff
# reply's time. Built CONCURRENTLY on PostgreSQL (writes go on), plainly on SQLite; hence not atomic.

from django.db import migrations, models

from hotelbot.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("messaging", "0018_reception_hours_staff_alerts")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="conversation",
            index=models.Index(
                condition=models.Q(staff_replied_at__isnull=False),
                fields=["staff_replied_at"],
                name="conv_staff_replied",
            ),
        ),
    ]
