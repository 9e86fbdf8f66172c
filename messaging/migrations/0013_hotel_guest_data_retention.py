# Issue 18 item 3: a hotel may keep its guests' personal data for fewer (or more) days than the
# deployment's RETENTION_MESSAGES_DAYS (null = that default).

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("messaging", "0012_hotel_green_api_state_checked_at")]

    operations = [
        migrations.AddField(
            model_name="hotel",
            name="guest_data_retention_days",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Days this hotel's guests' messages, conversations and guests without messages "
                "are kept before the daily purge deletes them (empty: the deployment's "
                "RETENTION_MESSAGES_DAYS). Rows still needed (a reply on its way, an open dead letter) are "
                "kept until they are not.",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(3650),
                ],
            ),
        ),
    ]
