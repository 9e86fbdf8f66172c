# Issue 18 item 1: indexes for the staff console, reports and dashboard at a million messages.
# Built CONCURRENTLY on PostgreSQL (writes go on), plainly on SQLite; hence not atomic.

from django.db import migrations, models

from hotelbot.migration_ops import AddIndexConcurrentlyOnPostgres, PostgresOnlySQL


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("messaging", "0014_conversation_owner_reply_kinds")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="guest",
            index=models.Index(fields=["chat_id"], name="guest_chat_prefix", opclasses=["varchar_pattern_ops"]),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="message",
            index=models.Index(
                condition=models.Q(accepted_at__isnull=False), fields=["accepted_at"], name="msg_accepted"
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="message",
            index=models.Index(
                fields=["provider_message_id"], name="msg_provider_id_prefix", opclasses=["varchar_pattern_ops"]
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="replyjob", index=models.Index(fields=["created_at"], name="replyjob_created")
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="replyjob",
            index=models.Index(
                condition=models.Q(completed_at__isnull=False), fields=["completed_at"], name="replyjob_completed"
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="replyjob", index=models.Index(fields=["status", "-id"], name="replyjob_status_recent")
        ),
        # Words of a message's text (the console's search; Django's icontains is UPPER(text) LIKE
        # UPPER('%words%')): a trigram index on PostgreSQL when pg_trgm may be created (a trusted
        # extension since PostgreSQL 13); without it the search still works, by a scan.
        PostgresOnlySQL(
            [
                "CREATE EXTENSION IF NOT EXISTS pg_trgm",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS msg_text_trgm "
                "ON messaging_message USING gin (UPPER(text) gin_trgm_ops)",
            ],
            ["DROP INDEX CONCURRENTLY IF EXISTS msg_text_trgm"],
            optional=True,
        ),
    ]
