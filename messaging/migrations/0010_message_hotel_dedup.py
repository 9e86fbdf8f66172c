# Placeholder in the chain, filled in by part B (deduplication per hotel) of issue 16.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0009_hotel_token_encrypted"),
    ]

    operations: list = []
