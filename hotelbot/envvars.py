"""Every environment variable hotelbot reads, in one place.

* The settings modules (``hotelbot/settings/*.py``) read theirs through the ``env_*`` helpers;
  :func:`settings_variables` finds each call in their source (name, type, default as written), so a
  variable read only on one branch (``DB_POOL_*`` with PostgreSQL, ``EMAIL_HOST_*`` with a mail
  host) is listed as well as one read on every start.
* :data:`EXTERNAL` lists the few read elsewhere (gunicorn's config, requests, seed_demo, the tests'
  Makefile) and :data:`RENAMED` the old names still read for a renamed variable.
* :data:`FOREIGN` and :data:`FOREIGN_PREFIXES` are other programs' variables that share our prefixes
  (Django's, Celery's, kombu's, gunicorn's, prometheus_client's).

``manage.py check`` (hotelbot/checks.py) turns a set variable that looks like ours but is none of
these into the error ``hotelbot.E010`` with the closest known name, and each old name that is set
into the warning ``hotelbot.W010``. docs/configuration.md is generated from this module and
``.env.example`` (``python -m hotelbot.envvars --write``); a test fails when they disagree.
"""

from __future__ import annotations

import ast
import difflib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_DIR = ROOT / "hotelbot" / "settings"
ENV_EXAMPLE = ROOT / ".env.example"
REFERENCE = ROOT / "docs" / "configuration.md"

#: Renamed variables, old name -> new name. The old name is still read when the new one is unset
#: (hotelbot/settings/env.py), and a system check warning (hotelbot.W010) names it.
RENAMED: dict[str, str] = {
    # Paces the drain of replies parked by an open breaker, not every sendMessage call (that is
    # GREEN_API_RATE_SEND_MESSAGE): a near-homonym that read like the provider's own limit.
    "GREEN_API_SEND_RATE": "REPLY_DRAIN_RATE",
    # Bounds a breaker decision on the database *store*; BREAKER_DB_* next to DB_BREAKER_* (the
    # database's own breaker, which answers 503s) read as the same thing.
    "BREAKER_DB_TIMEOUT": "BREAKER_DB_STORE_TIMEOUT",
    # One age for every table became one per table (settings/retention.py); the old one kept the
    # closed dead letters, which keep reading it.
    "RETENTION_DAYS": "RETENTION_DEAD_LETTERS_DAYS",
}

#: Prefixes of our variables: a set variable with one of them that we do not read is an error. Not
#: the generic ones other software sets too (DB_HOST, REDIS_PASSWORD, API_KEY, LOG_DIR, DATABASE_*):
#: a typo of one of ours there is still caught as a close match.
PREFIXES = (
    "BREAKER_", "BROKER_", "CELERY_", "CONVERSATION_", "DEAD_LETTER_", "DEEPSEEK_", "DEGRADATION_",
    "DJANGO_", "DLQ_", "EMAIL_", "FAKE_", "FIELD_ENCRYPTION_", "GREEN_API_", "GUNICORN_", "HEALTH_",
    "HOTELBOT_", "RATE_LIMIT_", "REPLY_", "RETENTION_", "RETRY_AFTER_", "SQLITE_", "WEBHOOK_",
)  # fmt: skip
#: Without one of our prefixes, a set variable this close to one of ours is taken for a typo of it.
CLOSE_MATCH_CUTOFF = 0.85

#: Other programs' variables under our prefixes (read from their sources: Django, Celery, kombu,
#: gunicorn, prometheus_client).
FOREIGN = frozenset(
    {
        "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_COLORS", "DJANGO_PROJECT_DIR",
        "DJANGO_RUNSERVER_HIDE_WARNING", "DJANGO_TEST_PROCESSES", "DJANGO_WATCHMAN_TIMEOUT",
        "DJANGO_AUTO_COMPLETE", "CELERY_BENCH", "CELERY_BENCH_EVERY", "CELERY_BROKER_READ_URL",
        "CELERY_BROKER_WRITE_URL", "CELERY_CONFIG_MODULE", "CELERY_CUSTOM_WORKER_POOL", "CELERY_LOADER",
        "CELERY_LOG_FILE", "CELERY_LOG_LEVEL", "CELERY_LOG_REDIRECT", "CELERY_LOG_REDIRECT_LEVEL",
        "CELERY_RDB_HOST", "CELERY_RDB_PORT", "CELERY_RDBSIG", "CELERY_RESULT_BACKEND",
        "CELERY_SKIP_CHECKS", "CELERY_TRACE_APP", "GUNICORN_CMD_ARGS", "GUNICORN_FD", "GUNICORN_PID",
        "GUNICORN_DIRTY_SOCKET",
    }
)  # fmt: skip
#: createsuperuser --noinput reads DJANGO_SUPERUSER_<field> for every field of the user model.
FOREIGN_PREFIXES = ("DJANGO_SUPERUSER_",)
#: Kubernetes (enableServiceLinks, on by default) and docker links give every service's address to
#: every pod: a service named "redis" or "hotelbot" brings REDIS_PORT, HOTELBOT_SERVICE_HOST, ...
SERVICE_LINK = re.compile(
    r"^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$"
)


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # str, bool, float, int, list
    default: str  # as written in the code
    reader: str  # the settings module (concern) or the file that reads it


#: Read outside the settings modules (or before the helpers exist).
EXTERNAL: tuple[Variable, ...] = (
    Variable("HOTELBOT_VAR_DIR", "str", "'<checkout>/var'", "settings/base.py"),
    Variable("GUNICORN_BIND", "str", "'0.0.0.0:8000'", "deploy/gunicorn.conf.py"),
    Variable("GUNICORN_WORKERS", "int", "2", "deploy/gunicorn.conf.py"),
    Variable("GUNICORN_THREADS", "int", "4", "deploy/gunicorn.conf.py"),
    Variable("GUNICORN_TIMEOUT", "int", "30", "deploy/gunicorn.conf.py"),
    Variable("HTTPS_PROXY", "str", "''", "requests (reliability/http.py)"),
    Variable("HTTP_PROXY", "str", "''", "requests (reliability/http.py)"),
    Variable("ALL_PROXY", "str", "''", "requests (reliability/http.py)"),
    Variable("NO_PROXY", "str", "''", "requests (reliability/http.py)"),
    Variable("REQUESTS_CA_BUNDLE", "str", "''", "reliability/http.py"),
    Variable("CURL_CA_BUNDLE", "str", "''", "reliability/http.py"),
    Variable("HOTELBOT_ADMIN_USERNAME", "str", "'admin'", "seed_demo"),
    Variable("HOTELBOT_ADMIN_PASSWORD", "str", "'admin'", "seed_demo"),
    Variable("REDIS_TEST_URL", "str", "'redis://127.0.0.1:6379/0'", "Makefile (tests)"),
    Variable("BROKER_TEST_URL", "str", "'redis://127.0.0.1:6379/1'", "Makefile (tests)"),
)

_HELPERS = {"env_str": "str", "env_bool": "bool", "env_float": "float", "env_int": "int", "env_list": "list"}


def settings_variables(folder: Path = SETTINGS_DIR) -> list[Variable]:
    """Every ``env_*("NAME", default)`` call in the settings modules, in file order."""
    found: list[Variable] = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            kind = _HELPERS.get(node.func.id)
            if kind is None or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            default = ast.unparse(node.args[1]) if len(node.args) > 1 else "''"
            found.append(Variable(str(node.args[0].value), kind, default, f"settings/{path.name}"))
    return found


def known_variables() -> dict[str, Variable]:
    """Name -> variable, for every variable we read (first reader wins)."""
    known: dict[str, Variable] = {}
    for var in (*settings_variables(), *EXTERNAL):
        known.setdefault(var.name, var)
    return known


def is_foreign(name: str) -> bool:
    return name in FOREIGN or name.startswith(FOREIGN_PREFIXES)


def unknown_variables(environ: Mapping[str, str], known: Iterable[str]) -> list[tuple[str, str | None]]:
    """(set variable, closest known name or None) for each variable that looks like ours but is not.

    Looks like ours: one of our prefixes, or (without one) within CLOSE_MATCH_CUTOFF of a known name.
    """
    names = sorted(set(known) | set(RENAMED))
    found: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        if name in names or not name.isupper() or is_foreign(name):
            continue
        link = bool(SERVICE_LINK.match(name))  # another service's address: ours only as a clear typo
        ours = name.startswith(PREFIXES) and not link
        cutoff = 0.75 if ours else CLOSE_MATCH_CUTOFF
        close = difflib.get_close_matches(name, names, n=1, cutoff=cutoff)
        if ours or close:
            found.append((name, RENAMED.get(close[0], close[0]) if close else None))
    return found


# --- docs/configuration.md, from .env.example's tiers, sections and comments ----------------------
_TIER = re.compile(r"^# =+ (.+?) =+$")
_SECTION = re.compile(r"^# -+ (.+?) -+$")
_ENTRY = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*?)(?:\s{2,}#\s?(.*))?$")


@dataclass
class Entry:
    name: str
    example: str
    meaning: str


def parse_env_example(text: str) -> list[tuple[str, list[tuple[str, list[Entry]]]]]:
    """.env.example -> [(tier, [(section, [entries])])]; comment lines above an entry join its meaning."""
    tiers: list[tuple[str, list[tuple[str, list[Entry]]]]] = []
    notes: list[str] = []
    for line in text.splitlines():
        if match := _TIER.match(line):
            tiers.append((match.group(1), []))
        elif match := _SECTION.match(line):
            tiers[-1][1].append((match.group(1), []))
            notes = []
        elif match := _ENTRY.match(line):
            name, example, comment = match.group(1), match.group(2).strip(), match.group(3) or ""
            meaning = " ".join([*notes, comment]).strip()
            tiers[-1][1][-1][1].append(Entry(name, example, meaning))
            notes = []
        elif line.startswith("# ") and tiers and tiers[-1][1]:
            notes.append(line[2:].strip())
        elif not line.strip():
            notes = []
    return tiers


def render_reference(env_example: str | None = None) -> str:
    """docs/configuration.md: every variable by tier and concern, its default in the code, its meaning."""
    known = known_variables()
    text = ENV_EXAMPLE.read_text() if env_example is None else env_example
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m hotelbot.envvars --write` from .env.example (tiers, sections,",
        "     meanings) and the settings modules (defaults); tests/hotelbot/test_envvars.py fails when",
        "     this page is stale. Edit .env.example or hotelbot/settings/, then regenerate. -->",
        "",
        "Every environment variable hotelbot reads. Unset, each takes the default shown, which is the",
        "value in the code (`DEBUG` is `DJANGO_DEBUG`); nothing needs setting for `make run`. The first",
        "tier is what a production deployment must set; the rest are tuning knobs whose defaults need",
        "no change. `manage.py check` (also run by gunicorn, the Celery worker and beat at start) fails",
        "with **hotelbot.E010** when a variable that looks like ours is set but read by nothing (a typo",
        "is an error, not silence) and suggests the closest name; **hotelbot.W010** names an old name",
        "of a renamed variable (still read, see the end of this page).",
        "",
    ]
    for tier, sections in parse_env_example(text):
        out += [f"## {tier}", ""]
        for section, entries in sections:
            out += [f"### {section}", "", "| Variable | Default | Meaning |", "|---|---|---|"]
            for entry in entries:
                var = known.get(entry.name)
                default = f"`{var.default}`" if var else "—"
                meaning = _markdown(entry.meaning) or "—"
                out.append(f"| `{entry.name}` | {default} | {meaning} |")
            out.append("")
    out += [
        "## Renamed variables",
        "",
        "The old name is still read when the new one is unset; `manage.py check` warns (hotelbot.W010).",
        "",
        "| Old name (deprecated) | New name |",
        "|---|---|",
        *(f"| {old} | `{new}` |" for old, new in RENAMED.items()),
        "",
    ]
    return "\n".join(out)


def _markdown(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def missing_from_env_example(env_example: str | None = None) -> set[str]:
    text = ENV_EXAMPLE.read_text() if env_example is None else env_example
    documented = {
        e.name for _, sections in parse_env_example(text) for _, entries in sections for e in entries
    }
    return set(known_variables()) - documented


if __name__ == "__main__":  # python -m hotelbot.envvars [--write]
    rendered = render_reference()
    if "--write" in sys.argv:
        REFERENCE.write_text(rendered)
    else:
        sys.stdout.write(rendered)
