# Issue 18 item 1 (make bench-scale): the console's guest list filtered to opted-out guests read
# every guest (a sequential scan of 100k rows for a handful) without this partial index. Built
# CONCURRENTLY on PostgreSQL (writes go on), plainly on SQLite; hence not atomic.

from django.db import migrations, models

from hotelbot.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("messaging", "0022_guest_last_seen_index")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="guest",
            index=models.Index(
                condition=models.Q(opted_out_at__isnull=False),
                fields=["-last_seen_at", "-id"],
                name="guest_opted_out",
            ),
        ),
    ]
