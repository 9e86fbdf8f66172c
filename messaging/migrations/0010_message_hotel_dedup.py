# Part B of issue 16: deduplication and statuses per hotel.
#
# Message and DeferredStatus get a hotel (Message's copied from its conversation, in one UPDATE);
# the unique key of a provider idMessage becomes (hotel, direction, idMessage), so hotel B's message
# whose id hotel A already has is stored, not answered "duplicate".

import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import OuterRef, Subquery


def _hotels_backfill(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Every message takes its conversation's hotel (one UPDATE). A deferred status names no hotel:
    with one hotel it is that hotel's; with several it cannot be attributed (it waits for an id no
    message has, and applied to the wrong hotel's message it would be what this change forbids), so
    it is dropped, as the purge would drop it within two days."""
    Message = apps.get_model("messaging", "Message")
    Conversation = apps.get_model("messaging", "Conversation")
    DeferredStatus = apps.get_model("messaging", "DeferredStatus")
    Hotel = apps.get_model("messaging", "Hotel")
    if schema_editor.connection.vendor == "postgresql":
        # Check the deferrable foreign keys now, so no trigger event is pending when the column is
        # altered to NOT NULL below in this same transaction.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    conversation_hotel = Conversation.objects.filter(pk=OuterRef("conversation_id")).values("hotel_id")[:1]
    Message.objects.update(hotel_id=Subquery(conversation_hotel))
    hotel_ids = list(Hotel.objects.values_list("pk", flat=True)[:2])
    if len(hotel_ids) == 1:
        DeferredStatus.objects.update(hotel_id=hotel_ids[0])
    else:
        DeferredStatus.objects.filter(hotel_id__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0009_hotel_token_encrypted"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="hotel",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                help_text="The conversation's hotel, copied on every message: redeliveries, statuses and "
                "Green API's journal are matched to a message within the hotel whose instance reports them.",
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="messaging.hotel",
            ),
        ),
        migrations.AddField(
            model_name="deferredstatus",
            name="hotel",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                help_text="The hotel whose instance reported the status: it is applied only to that "
                "hotel's message.",
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deferred_statuses",
                to="messaging.hotel",
            ),
        ),
        migrations.RunPython(_hotels_backfill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="message",
            name="hotel",
            field=models.ForeignKey(
                db_index=False,
                help_text="The conversation's hotel, copied on every message: redeliveries, statuses and "
                "Green API's journal are matched to a message within the hotel whose instance reports them.",
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="messaging.hotel",
            ),
        ),
        migrations.AlterField(
            model_name="deferredstatus",
            name="hotel",
            field=models.ForeignKey(
                db_index=False,
                help_text="The hotel whose instance reported the status: it is applied only to that "
                "hotel's message.",
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deferred_statuses",
                to="messaging.hotel",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="message",
            name="uniq_provider_message_per_direction",
        ),
        migrations.AddConstraint(
            model_name="message",
            constraint=models.UniqueConstraint(
                fields=("hotel", "direction", "provider_message_id"), name="uniq_provider_message_per_hotel"
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="provider_message_id",
            field=models.CharField(
                blank=True,
                help_text="Green API idMessage; unique per hotel and direction so a redelivered webhook "
                "is a no-op.",
                max_length=64,
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="deferredstatus",
            name="id_message",
            field=models.CharField(help_text="Green API idMessage.", max_length=64),
        ),
        migrations.AddIndex(
            model_name="deferredstatus",
            index=models.Index(fields=["hotel", "id_message"], name="deferred_hotel_id_message"),
        ),
    ]
