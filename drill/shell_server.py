"""A Django shell that stays up: ``Stack.shell(code)`` runs code here (``python -m drill.shell_server``).

The drill and the end-to-end tests read and change a running stack through the ORM many times a
second while they wait for something (``_wait_for(lambda: stack.shell(...) == ...)``). As a new
``manage.py shell`` each time, every look cost a Django start (about a second of CPU, two under
load) — CPU taken from the stack under test, and a poll slow enough to miss a state that lasts a
few seconds. This process starts Django once and answers one request per line on stdin:

    request:  a JSON string — the code to run
    answer:   {"ok": bool, "out": what the code printed (and the traceback if it raised)}, one line

After each request it gives up what a new process would not have: its database connections
(closed, so a database the test stops or drops never sees a session left open) and what
``reliability`` keeps in process memory (breakers, budgets, limiters, snapshots). The answers go
to a copy of the original stdout; anything else writing to stdout (a logging handler) lands in
stderr, which the stack sends to its log file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")
    import django

    django.setup()
    from django.db import connections

    from reliability import testing

    for line in sys.stdin:
        code = json.loads(line)
        out = io.StringIO()
        ok = True
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<stack.shell>", "exec"), {"__name__": "__stack_shell__"})  # noqa: S102
        except BaseException:  # a failed script is an answer, as a shell's exit status was
            ok = False
            out.write(traceback.format_exc())
        finally:
            connections.close_all()
            testing.forget_process_state()
        answers.write(json.dumps({"ok": ok, "out": out.getvalue()}) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
