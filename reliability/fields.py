"""A model field whose value is encrypted at rest (``reliability.crypto``), for secrets such as
provider tokens.

``EncryptedTextField`` stores a Fernet token (text column) and hands code the plain value:

* **Lazy**: a row read from the database keeps its ciphertext, wrapped in :class:`Sealed`; it is
  decrypted only when code reads the attribute (``hotel.green_api_token``). Loading a hotel on the
  webhook path costs no decryption, and a wrong key fails exactly where the value is needed, with
  :class:`~reliability.crypto.DecryptionFailed`, never by handing out the ciphertext.
* **Saving never needs the key** for a value nobody changed: the stored ciphertext is written back
  as it is (so editing a hotel's facts works while its token is unreadable). An assigned plain
  value is encrypted with the newest key.
* **Dumps hold ciphertext**: ``dumpdata`` writes the stored ciphertext, ``loaddata`` keeps it.
* Lookups compare stored ciphertexts (each encryption differs): filter on other columns.
  ``""`` and ``None`` are stored as they are (a blank value is no secret).

Every field of this type is found by :func:`encrypted_fields` (the app registry), so the key
rotation (``reliability.encryption``) and the health check cover new ones without a line of code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from reliability import crypto, masking


class Sealed:
    """A stored ciphertext not decrypted yet. Its text form never shows the ciphertext, so one
    that slips into a message, a log line or a template shows ``<encrypted>``, nothing usable."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "<encrypted>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)

    def __getstate__(self) -> str:
        return self.ciphertext

    def __setstate__(self, state: str) -> None:
        self.ciphertext = state


class EncryptedAttribute(DeferredAttribute):
    """Reads decrypt (and raise ``DecryptionFailed`` when no key can); writes store as given."""

    field: EncryptedTextField

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            return crypto.decrypt(value.ciphertext, label=self.field.label_for(instance))
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """Text encrypted at rest with the newest key of ``FIELD_ENCRYPTION_KEYS``; see the module."""

    description = "Text encrypted at rest (Fernet)"
    descriptor_class = EncryptedAttribute

    def label_for(self, instance: Any) -> str:
        """How errors name a value: model, field and primary key, never the value."""
        return f"{self.model._meta.label}.{self.name} (pk {instance.pk})"

    def raw(self, instance: Any) -> Any:
        """What the instance holds without decrypting: a :class:`Sealed` ciphertext, a plain
        value assigned since, ``""`` or ``None``."""
        if self.attname not in instance.__dict__ and instance.pk is not None:  # deferred: load, sealed
            manager = type(instance)._base_manager.db_manager(instance._state.db)
            stored = manager.filter(pk=instance.pk).values_list(self.attname, flat=True).first()
            instance.__dict__[self.attname] = stored
        return instance.__dict__.get(self.attname)

    # Database round trip ------------------------------------------------------------------------------
    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return Sealed(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, Sealed) or value is None:
            return value
        value = str(value)
        # loaddata gives back what dumpdata wrote (the ciphertext): keep it as such.
        return Sealed(value) if crypto.looks_encrypted(value) else value

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, Sealed):
            return value.ciphertext
        if value is None or value == "":
            return value
        return crypto.encrypt(str(value))

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        return self.raw(model_instance)  # an untouched ciphertext is written back, never decrypted

    def value_from_object(self, obj: Any) -> Any:
        """Forms and serializers get the stored form: a form never renders a secret back, a dump
        holds the ciphertext."""
        return self.raw(obj)

    def value_to_string(self, obj: Any) -> str:
        value = self.raw(obj)
        if isinstance(value, Sealed):
            return value.ciphertext
        return crypto.encrypt(str(value)) if value else ""


def encrypted_fields() -> Iterator[EncryptedTextField]:
    """Every concrete encrypted field of every installed model (the app registry)."""
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield field


def plaintexts(instance: models.Model) -> tuple[str, ...]:
    """The readable plain values of ``instance``'s encrypted fields, to mask wherever text about it
    is stored or logged; a value that cannot be decrypted is skipped (nobody here can leak it)."""
    values: list[str] = []
    for field in instance._meta.concrete_fields:
        if isinstance(field, EncryptedTextField):
            try:
                value = getattr(instance, field.attname)
            except crypto.FieldEncryptionError:
                continue
            if value:
                values.append(str(value))
    return tuple(values)


def is_set(instance: models.Model, name: str) -> bool:
    """Whether ``instance`` holds a non-empty value for the encrypted field ``name``, without
    decrypting it."""
    field = instance._meta.get_field(name)
    assert isinstance(field, EncryptedTextField)
    return bool(field.raw(instance))


def secret_hint(instance: models.Model, name: str) -> str:
    """What a page shows of an encrypted value: its last four characters, or why it cannot."""
    try:
        return last_four(getattr(instance, name))
    except crypto.FieldEncryptionError:
        return f"cannot be decrypted (check {crypto.SETTING})"


def last_four(value: str | None) -> str:
    """A secret shown to people: its last four characters (all hidden when it is short)."""
    return masking.mask_secret(value) if value else "(not set)"
