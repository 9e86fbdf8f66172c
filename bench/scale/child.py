"""The Django side of ``make bench-scale``, run in a child process per database (DATABASE_URL).

``python -m bench.scale.child setup``: migrate and create the bench superuser (once, on the database
the others are cloned from). ``fill '<shape json>'``: :func:`bench.scale.fill.fill`. ``time <reps>
<out.json>``: time every page of :mod:`bench.scale.pages` and write the figures. ``purge <out.json>``: the
retention purge of the beat task, timed and checked (:mod:`bench.scale.purge`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

USERNAME = "bench-admin"
GREEN_API_TOKEN = "bench-green-api-token"  # noqa: S105 - a throwaway database's credential


def setup() -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    get_user_model().objects.create_superuser(USERNAME, "", "bench")
    print(f"  migrated in {time.monotonic() - started:.1f} s", flush=True)


def migrate() -> None:
    """A kept database brought up to date (``--reuse``: new indexes are built on the full tables)."""
    from django.core.management import call_command

    started = time.monotonic()
    call_command("migrate", verbosity=1)
    print(f"  migrated in {time.monotonic() - started:.1f} s", flush=True)


def fill(shape_json: str) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from bench.scale.fill import Shape
    from bench.scale.fill import fill as fill_rows
    from messaging.models import Hotel

    shape = Shape(**json.loads(shape_json))
    token = Hotel._meta.get_field("green_api_token").get_prep_value(GREEN_API_TOKEN)  # the ciphertext
    actor = get_user_model().objects.get(username=USERNAME).pk
    with connection.cursor() as cursor:
        fill_rows(cursor, shape, token=token, actor=actor, log=lambda line: print(line, flush=True))


def time_pages(reps: int, out: str) -> None:
    from django.conf import settings

    from bench.scale import pages

    settings.DEBUG = False  # as in production: no query log, no debug pages (the dev values stay)
    results = pages.measure(reps=reps, log=lambda line: print(line, flush=True))
    with open(out, "w") as handle:
        json.dump(results, handle)


def purge(out: str) -> None:
    """The retention purge as the beat task runs it, timed (:mod:`bench.scale.purge`)."""
    from django.conf import settings

    from bench.scale import purge as purge_phase

    settings.DEBUG = False
    results = purge_phase.measure(log=lambda line: print(line, flush=True))
    with open(out, "w") as handle:
        json.dump(results, handle)


def main(argv: list[str]) -> None:
    import django

    django.setup()
    command, args = argv[0], argv[1:]
    commands: dict[str, Any] = {
        "setup": setup,
        "migrate": migrate,
        "fill": fill,
        "time": lambda r, o: time_pages(int(r), o),
        "purge": purge,
    }
    commands[command](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
