# Issue 18 item 6 (make bench-scale): the console's guest list sorts every guest by last_seen_at
# without this index (a top-N sort of 100k guests per page load). Built CONCURRENTLY on PostgreSQL
# (writes go on), plainly on SQLite; hence not atomic.

from django.db import migrations, models

from hotelbot.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("messaging", "0021_reply_job_bursts")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="guest",
            index=models.Index(fields=["-last_seen_at", "-id"], name="guest_last_seen"),
        ),
    ]
