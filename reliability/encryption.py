"""Services over every value encrypted at rest: key rotation, its proof, the census the health check
reports, and the data migration's encryption of plain rows.

Generic: the fields come from the app registry (``reliability.fields.encrypted_fields``), so the
toolkit never names a domain model. Rows are read in primary-key batches as stored (ciphertexts
are never decrypted for nothing), and every write is a conditional ``UPDATE ... WHERE pk = ... AND
<column> = <the ciphertext read>``: a value changed meanwhile (staff entered a new token) is never
overwritten with an older one.

Nothing here returns or prints a value: only field labels and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models import Value
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from reliability import crypto
from reliability.fields import EncryptedTextField, Sealed, encrypted_fields

Progress = Callable[[str], None]
DEFAULT_BATCH_SIZE = 500


def _stored(
    model: type[models.Model], attname: str, *, using: str, batch_size: int
) -> Iterator[list[tuple[Any, Any]]]:
    """(pk, stored value) of every row with a non-empty value, in pk order, ``batch_size`` at a time."""
    manager = model._base_manager.db_manager(using)
    last: Any = None
    while True:
        rows = manager.exclude(**{f"{attname}__isnull": True}).exclude(**{attname: ""}).order_by("pk")
        if last is not None:
            rows = rows.filter(pk__gt=last)
        batch = list(rows.values_list("pk", attname)[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def _ciphertext(stored: Any) -> str:
    return stored.ciphertext if isinstance(stored, Sealed) else str(stored)


def _write(model: type[models.Model], attname: str, pk: Any, old: str, new: Any, *, using: str) -> bool:
    """Store ``new`` (a :class:`Sealed` ciphertext, or a plain ``Value``) if the row still holds ``old``."""
    manager = model._base_manager.db_manager(using)
    return bool(manager.filter(pk=pk, **{attname: Sealed(old)}).update(**{attname: new}))


# --- census: the health check and --verify -------------------------------------------------------------
@dataclass
class FieldCensus:
    """What one field's stored values are, by key: counts only."""

    label: str
    current: int = 0  # the newest key decrypts it
    older: int = 0  # only an older key decrypts it (rotate_field_keys re-encrypts it)
    unreadable: int = 0  # no configured key decrypts it
    plain: int = 0  # not encrypted at all (written around the field, or before the migration)

    @property
    def total(self) -> int:
        return self.current + self.older + self.unreadable + self.plain

    @property
    def readable(self) -> int:
        return self.current + self.older + self.plain


@dataclass
class Census:
    fields: list[FieldCensus] = field(default_factory=list)

    def _sum(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.fields)

    @property
    def total(self) -> int:
        return self._sum("total")

    @property
    def readable(self) -> int:
        return self._sum("readable")

    @property
    def unreadable(self) -> int:
        return self._sum("unreadable")

    @property
    def plain(self) -> int:
        return self._sum("plain")

    @property
    def older(self) -> int:
        return self._sum("older")

    @property
    def not_on_newest(self) -> int:
        """Values the newest key alone does not decrypt: what ``--verify`` fails on."""
        return self.total - self._sum("current")


def _classify(stored: Any) -> str:
    ciphertext = _ciphertext(stored)
    if not crypto.looks_encrypted(ciphertext):
        return "plain"
    if crypto.decrypts_with_newest(ciphertext):
        return "current"
    try:
        crypto.decrypt(ciphertext)
    except crypto.DecryptionFailed:
        return "unreadable"
    return "older"


def encrypted_values_census(
    *, using: str = "default", batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
) -> Census:
    """Count every stored encrypted value by which key decrypts it. Raises
    :class:`~reliability.crypto.EncryptionKeysInvalid` when the keys themselves are unusable."""
    crypto.keyring()  # unusable keys: say so once, not as N unreadable values
    census = Census()
    for fld in encrypted_fields():
        counts = FieldCensus(label=_label(fld))
        for batch in _stored(fld.model, fld.attname, using=using, batch_size=batch_size):
            for _pk, stored in batch:
                kind = _classify(stored)
                setattr(counts, kind, getattr(counts, kind) + 1)
            if progress:
                progress(f"{counts.label}: {counts.total} checked")
        census.fields.append(counts)
    return census


def field_keys_verify(
    *, using: str = "default", batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
) -> Census:
    """The census for ``rotate_field_keys --verify``: passes when ``not_on_newest`` is 0, i.e. every
    stored value decrypts with the newest key alone, so the older keys can be removed."""
    return encrypted_values_census(using=using, batch_size=batch_size, progress=progress)


def _label(fld: EncryptedTextField) -> str:
    return f"{fld.model._meta.label}.{fld.name}"


# --- rotation ------------------------------------------------------------------------------------------
@dataclass
class FieldRotation:
    label: str
    checked: int = 0
    rotated: int = 0  # re-encrypted under the newest key (or would be, in a dry run)
    encrypted: int = 0  # a plain value found and encrypted
    current: int = 0  # already under the newest key: left alone
    unreadable: int = 0  # no key decrypts it: left alone
    changed_meanwhile: int = 0  # the row changed between read and write: left to its writer


@dataclass
class Rotation:
    dry_run: bool
    fields: list[FieldRotation] = field(default_factory=list)

    @property
    def unreadable(self) -> int:
        return sum(f.unreadable for f in self.fields)


def field_keys_rotate(
    *,
    dry_run: bool = False,
    using: str = "default",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> Rotation:
    """Re-encrypt every stored encrypted value that the newest key does not decrypt (and encrypt
    any plain one), row by row with a conditional UPDATE; values no key decrypts are counted and
    left alone. ``dry_run`` counts without writing."""
    crypto.keyring()
    rotation = Rotation(dry_run=dry_run)
    for fld in encrypted_fields():
        counts = FieldRotation(label=_label(fld))
        for batch in _stored(fld.model, fld.attname, using=using, batch_size=batch_size):
            for pk, stored in batch:
                counts.checked += 1
                old = _ciphertext(stored)
                if not crypto.looks_encrypted(old):
                    new, bucket = crypto.encrypt(old), "encrypted"
                elif crypto.decrypts_with_newest(old):
                    counts.current += 1
                    continue
                else:
                    try:
                        new, bucket = crypto.reencrypt(old), "rotated"
                    except crypto.DecryptionFailed:
                        counts.unreadable += 1
                        continue
                if dry_run or _write(fld.model, fld.attname, pk, old, Sealed(new), using=using):
                    setattr(counts, bucket, getattr(counts, bucket) + 1)
                else:
                    counts.changed_meanwhile += 1
            if progress:
                progress(
                    f"{counts.label}: {counts.checked} checked, {counts.rotated} re-encrypted, "
                    f"{counts.encrypted} plain encrypted, {counts.current} already current, "
                    f"{counts.unreadable} unreadable" + (" (dry run)" if dry_run else "")
                )
        rotation.fields.append(counts)
    return rotation


def _attname(model: type[models.Model], field_name: str) -> str:
    fld = model._meta.get_field(field_name)
    assert isinstance(fld, EncryptedTextField), f"{model._meta.label}.{field_name} is not encrypted"
    return fld.attname


# --- the data migration ----------------------------------------------------------------------------------
def plain_values_encrypt(
    *, model: type[models.Model], field_name: str, using: str, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Encrypt the plain values of ``model.field_name`` (a historical model in a migration whose
    field is already an ``EncryptedTextField``). Idempotent: a value that is already a ciphertext is
    left alone. Returns how many were encrypted."""
    attname = _attname(model, field_name)
    done = 0
    for batch in _stored(model, attname, using=using, batch_size=batch_size):
        for pk, stored in batch:
            old = _ciphertext(stored)
            if not crypto.looks_encrypted(old):
                done += _write(model, attname, pk, old, Sealed(crypto.encrypt(old)), using=using)
    return done


def encrypted_values_decrypt(
    *, model: type[models.Model], field_name: str, using: str, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """The migration's reverse: store every value in plain text again (needs the keys)."""
    attname = _attname(model, field_name)
    done = 0
    for batch in _stored(model, attname, using=using, batch_size=batch_size):
        for pk, stored in batch:
            old = _ciphertext(stored)
            if crypto.looks_encrypted(old):
                plain = crypto.decrypt(old, label=f"{model._meta.label}.{field_name} (pk {pk})")
                done += _write(model, attname, pk, old, Value(plain, models.TextField()), using=using)
    return done


# --- health ----------------------------------------------------------------------------------------------
def encrypted_values_health() -> str:
    """Health check (registered in ``ReliabilityConfig.ready``): how many stored encrypted values
    decrypt and how many do not; counts only. Failing when keys are unusable or no value decrypts
    (no provider call can be made), a warning when some do not or some are stored in plain text."""
    try:
        census = encrypted_values_census()
    except crypto.EncryptionKeysInvalid as e:
        raise ServiceUnavailable(str(e)) from None
    if not census.total:
        return "no encrypted values stored"
    text = f"{census.readable} of {census.total} encrypted value(s) decrypt, {census.unreadable} do not"
    if census.older:
        text += f"; {census.older} still under an older key (run rotate_field_keys)"
    if census.unreadable and not census.readable:
        raise ServiceUnavailable(
            f"{text}: {crypto.SETTING} lacks the key that encrypted them; no provider call can be made"
        )
    if census.unreadable:
        raise ServiceWarning(
            f"{text}: {crypto.SETTING} lacks the key that encrypted them; calls needing those values fail"
        )
    if census.plain:
        raise ServiceWarning(f"{text}; {census.plain} stored in plain text: run rotate_field_keys")
    return text
