"""``manage.py rotate_field_keys``: re-encrypt every value encrypted at rest under the newest key
of FIELD_ENCRYPTION_KEYS, or (``--verify``) prove the older keys are no longer needed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reliability import crypto, encryption


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted model field value (provider tokens) under the newest key of "
        "FIELD_ENCRYPTION_KEYS (put the new key first, keep the old ones after it). --verify: prove "
        "every value decrypts with the newest key alone, so the older keys can be removed; exits "
        "non-zero naming how many do not. Values no key decrypts are counted, never changed. "
        "docs/secrets.md"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--verify",
            action="store_true",
            help="Change nothing: check that the newest key alone decrypts every stored value.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be re-encrypted; write nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=encryption.DEFAULT_BATCH_SIZE,
            help=f"Rows read per query (default {encryption.DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--generate-key",
            action="store_true",
            help="Only print a new random key to put in front of FIELD_ENCRYPTION_KEYS.",
        )
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["generate_key"]:
            self.stdout.write(crypto.generate_key())
            return
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        kwargs: dict[str, Any] = {
            "using": options["database"],
            "batch_size": options["batch_size"],
            "progress": self.stdout.write if options["verbosity"] >= 1 else None,
        }
        try:
            if options["verify"]:
                self._verify(encryption.field_keys_verify(**kwargs))
            else:
                self._rotated(encryption.field_keys_rotate(dry_run=options["dry_run"], **kwargs))
        except crypto.FieldEncryptionError as e:
            raise CommandError(e.message) from None

    def _verify(self, census: encryption.Census) -> None:
        for f in census.fields:
            self.stdout.write(
                f"{f.label}: {f.total} value(s): {f.current} under the newest key, {f.older} under an "
                f"older key, {f.unreadable} unreadable, {f.plain} plain"
            )
        if census.not_on_newest:
            raise CommandError(
                f"{census.not_on_newest} of {census.total} value(s) do not decrypt with the newest key "
                f"alone ({census.older} under an older key, {census.unreadable} unreadable, "
                f"{census.plain} plain): run rotate_field_keys (unreadable ones need their key "
                "back or a new value); keep the older keys until this passes"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"All {census.total} value(s) decrypt with the newest key alone: the older keys can be "
                f"removed from {crypto.SETTING}."
            )
        )

    def _rotated(self, rotation: encryption.Rotation) -> None:
        verb = "would be" if rotation.dry_run else "were"
        for f in rotation.fields:
            self.stdout.write(
                f"{f.label}: {f.checked} checked; {f.rotated} {verb} re-encrypted, {f.encrypted} plain "
                f"value(s) {verb} encrypted, {f.current} already under the newest key, {f.unreadable} "
                f"unreadable, {f.changed_meanwhile} changed meanwhile (left to their writer)"
            )
        if rotation.unreadable:
            raise CommandError(
                f"{rotation.unreadable} value(s) cannot be decrypted with any key in {crypto.SETTING}: "
                "they were left as they are (restore their key, or enter those values again)"
            )
        if rotation.dry_run:
            self.stdout.write(self.style.WARNING("Dry run: nothing was written."))
        else:
            self.stdout.write(self.style.SUCCESS("Done; now run rotate_field_keys --verify."))
