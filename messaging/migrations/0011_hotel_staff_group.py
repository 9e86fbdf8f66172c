# Placeholder in the chain, filled in by part F (answer-guests permission, hotel staff group) of issue 16.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0010_message_hotel_dedup"),
    ]

    operations: list = []
