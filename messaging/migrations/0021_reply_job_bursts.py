# Issue 19 item 7: one answer for a burst (messaging/services/bursts.py). The new columns are
# nullable (no table rewrite); the partial index is built CONCURRENTLY on PostgreSQL (writes go
# on), plainly on SQLite; hence not atomic.

import django.db.models.deletion
from django.db import migrations, models

from hotelbot.migration_ops import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False
    dependencies = [
        ("messaging", "0020_hotel_text_reception_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="replyjob",
            name="burst_started_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the first message this job answers was stored (its own, or the first of a burst merged into it); the burst is answered by REPLY_BURST_MAX_SECONDS after it at the latest.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="replyjob",
            name="merged_into",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="A merged job: the answer job that answers this message too (the last message of the guest's burst, REPLY_BURST_QUIET_SECONDS; docs/handoff.md).",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="merged",
                to="messaging.replyjob",
            ),
        ),
        migrations.AlterField(
            model_name="replyjob",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "pending"),
                    ("in_progress", "in progress"),
                    ("pending_provider_recovery", "pending provider recovery"),
                    ("done", "done"),
                    ("dead", "dead"),
                    ("superseded", "closed: staff answer this guest"),
                    ("merged", "closed: answered with the guest's next message"),
                ],
                default="pending",
                max_length=30,
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="replyjob",
            index=models.Index(
                condition=models.Q(("merged_into__isnull", False)),
                fields=["merged_into"],
                name="replyjob_merged_into",
            ),
        ),
    ]
