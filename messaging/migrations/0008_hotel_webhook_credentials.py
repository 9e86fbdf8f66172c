# Placeholder in the chain, filled in by part A (per-hotel webhook credentials) of issue 16.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0007_reply_job_manual_sla"),
    ]

    operations: list = []
