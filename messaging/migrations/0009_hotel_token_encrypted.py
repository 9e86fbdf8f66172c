# Issue 16, part C: provider tokens encrypted at rest (reliability/fields.py, docs/secrets.md).
# The column becomes text (a Fernet token of a 128-character value is ~270 characters), then every
# plain token is encrypted with the newest key of FIELD_ENCRYPTION_KEYS. Idempotent: a value that
# is already a ciphertext is left alone. Reversible: the reverse decrypts (it needs the keys).

from typing import Any

from django.db import migrations

import reliability.fields
from reliability.encryption import encrypted_values_decrypt, plain_values_encrypt


def encrypt_tokens(apps: Any, schema_editor: Any) -> None:
    hotel = apps.get_model("messaging", "Hotel")
    plain_values_encrypt(model=hotel, field_name="green_api_token", using=schema_editor.connection.alias)


def decrypt_tokens(apps: Any, schema_editor: Any) -> None:
    hotel = apps.get_model("messaging", "Hotel")
    encrypted_values_decrypt(model=hotel, field_name="green_api_token", using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0008_hotel_webhook_credentials"),
    ]

    operations = [
        migrations.AlterField(
            model_name="hotel",
            name="green_api_token",
            field=reliability.fields.EncryptedTextField(
                help_text="Green API apiTokenInstance used to send replies for this hotel; encrypted at rest "
                "with FIELD_ENCRYPTION_KEYS (docs/secrets.md), decrypted only when a call needs it."
            ),
        ),
        migrations.RunPython(encrypt_tokens, decrypt_tokens, elidable=False),
    ]
