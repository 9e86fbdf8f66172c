"""The README and docs/ name only what exists: make targets, manage.py commands and their options,
settings, URLs, relative links and their anchors. A rename that forgets the docs fails here.

Only what the text shows as code counts (an inline `span` or a fenced block): prose may say "make it".
"""

from __future__ import annotations

import argparse
import re
from functools import cache
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MAKE = re.compile(r"(?:^|[\s;&(])make ([a-z][a-z0-9-]*)")
MANAGE = re.compile(r"manage\.py\s+([a-z][a-z0-9_]*)([^#\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
SETTING = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
LOCAL_URL = re.compile(
    r"(?:^|[\s(<])(?:https?://127\.0\.0\.1:8000)?(/(?:admin|api|health|webhooks|metrics)(?:[^\s`<>)?]|<\w+>)*)"
)


def _ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


@cache
def _code(page: Path) -> list[str]:
    """The page's code: each fenced block's lines and each inline code span outside the blocks."""
    text = page.read_text()
    out: list[str] = []
    for block in FENCE.findall(text):
        out.extend(block.splitlines())
    out.extend(INLINE.findall(FENCE.sub("", text)))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", text, re.M))


def test_the_readme_is_short_and_opens_with_the_quick_start():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    opening = lines[:6]
    assert any(line.startswith("make run ") for line in opening), opening
    assert any(line.startswith("make test ") for line in opening), opening


def test_the_readme_links_every_page_of_docs():
    text = README.read_text()
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in text, f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_make_target_named_exists(page: Path):
    targets = _make_targets()
    named = {m for code in _code(page) for m in MAKE.findall(code)}
    assert named - targets == set(), f"{page.name} names make targets the Makefile lacks"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of a parser and of its subcommands' parsers."""
    options = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _options(sub)
    return options


def _check_command(page: Path, name: str, rest: str) -> None:
    commands = get_commands()
    assert name in commands, f"{page.name}: manage.py {name} is no command"
    options = _options(load_command_class(commands[name], name).create_parser("manage.py", name))
    for option in OPTION.findall(rest):
        assert option in options, f"{page.name}: manage.py {name} has no option {option}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_manage_py_command_and_option_named_exists(page: Path):
    for code in _code(page):
        for name, rest in MANAGE.findall(code):
            _check_command(page, name, rest)


def test_every_command_of_the_operations_table_exists():
    page = ROOT / "docs" / "operations.md"
    section = page.read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z][a-z0-9_]*)([^`]*)`", section, re.M)
    assert len(rows) >= 10, "the commands table is not found"
    for name, rest in rows:
        _check_command(page, name, rest)


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_relative_link_resolves(page: Path):
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: the link {target} points at nothing"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: {linked.name} has no heading #{anchor}"


#: Upper-case names in docs/ that are not environment variables: make variables, Django settings
#: without a variable of their own, code constants, other programs' variables.
NOT_ENV = frozenset(
    {
        "BROKER_TEST_URL", "PG_URL", "REDIS_TEST_URL", "COV_FLOOR",  # Makefile
        "E2E_REDIS_OUTAGE_SECONDS",  # tests/e2e/test_redis_outage.py
        "CELERY_BEAT_SCHEDULE", "CELERY_WORKER_CONSUMER", "SECRET_KEY",  # Django settings
        "METRICS_FLUSH_INTERVAL", "METRICS_FLUSH_IDLE_INTERVAL",  # reliability/breaker/circuit.py
        "ORDER_WAIT",  # messaging/services/replies.py
        "EVALUATED_AT_STALE_SECONDS",  # reliability/degradation/services.py
        "OPENAI_BASE_URL", "TEXT_TYPES",  # the providers' SDKs (docs/providers.md)
    }
)  # fmt: skip


def test_every_setting_the_readme_names_is_in_env_example():
    named = {code for code in _code(README) if SETTING.match(code)}
    assert named, "the README names no setting: the pattern is wrong"
    assert named - _env_example() == set(), "README.md names settings .env.example does not list"


@pytest.mark.parametrize("page", PAGES[1:], ids=_ids(PAGES[1:]))
def test_every_variable_the_docs_name_is_in_env_example(page: Path):
    """A renamed variable (hotelbot/envvars.py RENAMED) must not live on under its old name in the docs."""
    named = {name for code in _code(page) for name in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", code)}
    assert named - _env_example() - NOT_ENV == set(), (
        f"{page.name} names variables .env.example does not list"
    )


def _env_example() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))


def test_every_url_the_readme_names_is_served():
    paths = {m for code in [*_code(README), README.read_text()] for m in LOCAL_URL.findall(code)}
    assert "/health/ready/" in paths, "the URL pattern finds nothing"
    served = {path for path in paths if _served(path)}
    for path in sorted(paths - served):
        # A mount point (``/api/v1/``) is fine when a page under it is served.
        assert any(other.startswith(path) for other in served), f"README.md names {path}: nothing serves it"


def _served(path: str) -> bool:
    """A view of ours answers the path (placeholders filled in), not the API's catch-all 404."""
    try:
        match = resolve(re.sub(r"<[^>]+>|\{[^}]+\}", "1", path))
    except Resolver404:
        return False
    return match.url_name != "unknown"


TEST_FILE = re.compile(r"(?<![\w/.])tests/[\w/]+\.py\b")
TEST_FILE_NAME = re.compile(r"(?<![\w/.])test_\w+\.py\b")  # a name alone: some test file has it
SOURCE_FOLDERS = (
    "console",
    "messaging",
    "reliability",
    "hotelbot",
    "fakes",
    "drill",
    "bench",
    "deploy",
    "tests",
)


def test_every_test_file_named_exists():
    """The docs and the code name test files by path (``tests/<package>/.../test_<module>.py``) or by
    name: a test moved or renamed without its mentions fails here."""
    texts = [*PAGES, ROOT / "Makefile", ROOT / "pyproject.toml"]
    texts += [p for folder in SOURCE_FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    missing = sorted(
        f"{path.relative_to(ROOT)}: {named}"
        for path in texts
        for named in set(TEST_FILE.findall(path.read_text()))
        if not (ROOT / named).exists()
    )
    names = {p.name for p in (ROOT / "tests").rglob("test_*.py")}
    missing += sorted(
        f"{path.relative_to(ROOT)}: {named}"
        for path in texts
        for named in set(TEST_FILE_NAME.findall(path.read_text()))
        if named not in names
    )
    assert not missing, "test files named but not found:\n" + "\n".join(missing)
