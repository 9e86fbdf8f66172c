# Issue 18 item 1: open dead letters by status, newest first (/health/dlq/, dashboard, console list).
# Built CONCURRENTLY on PostgreSQL (writes go on), plainly on SQLite; hence not atomic.

from django.db import migrations, models

from hotelbot.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("reliability", "0012_reseed_redis_breaker")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="deadletter",
            index=models.Index(fields=["status", "-created_at"], name="deadletter_status_recent"),
        ),
    ]
