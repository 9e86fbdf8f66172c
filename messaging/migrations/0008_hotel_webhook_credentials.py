# Part A of issue 16: per-hotel webhook credentials (docs/hotels.md). Only digests are stored.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0007_reply_job_manual_sla"),
    ]

    operations = [
        migrations.AddField(
            model_name="hotel",
            name="webhook_token_hash",
            field=models.CharField(
                blank=True,
                db_index=True,
                help_text="SHA-256 (hex) of the hotel's current Green API webhookUrlToken; the token itself is "
                "shown once when issued and never stored. Empty: no per-hotel token yet.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="hotel",
            name="webhook_token_issued_at",
            field=models.DateTimeField(blank=True, help_text="When the current webhook token was issued.", null=True),
        ),
        migrations.AddField(
            model_name="hotel",
            name="webhook_token_previous_hash",
            field=models.CharField(
                blank=True,
                db_index=True,
                help_text="SHA-256 (hex) of the webhook token replaced by the last rotation; still accepted "
                "until webhook_token_previous_expires_at (rotation without downtime).",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="hotel",
            name="webhook_token_previous_expires_at",
            field=models.DateTimeField(
                blank=True,
                help_text="End of the previous webhook token's grace period; after it only the current token "
                "is accepted.",
                null=True,
            ),
        ),
    ]
