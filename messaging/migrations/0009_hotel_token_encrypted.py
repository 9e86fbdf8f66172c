# Placeholder in the chain, filled in by part C (provider tokens encrypted at rest) of issue 16.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0008_hotel_webhook_credentials"),
    ]

    operations: list = []
