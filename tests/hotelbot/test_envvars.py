"""Environment variables: one registry of every variable we read (hotelbot/envvars.py), a check that
names a set variable nothing reads (hotelbot.E010) or an old name (hotelbot.W010), and a generated
configuration reference that cannot go stale."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotelbot import checks as hotelbot_checks
from hotelbot import envvars
from hotelbot.settings.env import env_float

ROOT = Path(__file__).resolve().parents[2]


def _for(name: str, messages: list) -> list:
    return [m for m in messages if name in m.msg]


def test_the_configuration_reference_is_generated_from_the_registry():
    assert (ROOT / "docs" / "configuration.md").read_text() == envvars.render_reference(), (
        "docs/configuration.md is stale: run python -m hotelbot.envvars --write"
    )


def test_every_variable_read_is_in_env_example_and_every_entry_is_read():
    documented = {
        entry.name
        for _, sections in envvars.parse_env_example((ROOT / ".env.example").read_text())
        for _, entries in sections
        for entry in entries
    }
    known = envvars.known_variables()
    assert envvars.missing_from_env_example() == set()
    assert documented - set(known) == set(), ".env.example lists variables nothing reads"


def test_the_first_tier_is_what_production_must_set():
    tiers = envvars.parse_env_example((ROOT / ".env.example").read_text())
    first = {entry.name for _, entries in tiers[0][1] for entry in entries}
    assert tiers[0][0].startswith("Production essentials")
    assert {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL"} <= first
    assert len(first) <= 16


def test_variables_read_on_one_branch_only_are_known():
    """PostgreSQL's pool, a mail host's login and the embedded broker are read on their branch only."""
    known = envvars.known_variables()
    for name in (
        "DB_POOL_MIN_SIZE",
        "EMAIL_HOST_USER",
        "CELERY_FILESYSTEM_POLLING_INTERVAL",
        "GUNICORN_BIND",
    ):
        assert name in known, name
    assert known["REPLY_SWEEP_INTERVAL"].default == "15.0"
    assert known["REPLY_SWEEP_INTERVAL"].reader == "settings/beat.py"


def test_a_misspelt_variable_is_an_error_naming_it_and_the_right_name(monkeypatch):
    monkeypatch.setenv("REPLY_SWEEP_INTERVL", "3")
    messages = _for("REPLY_SWEEP_INTERVL", hotelbot_checks.environment_variables())
    assert [m.id for m in messages] == ["hotelbot.E010"]
    assert messages[0].is_serious()
    assert "Did you mean REPLY_SWEEP_INTERVAL?" in messages[0].hint
    # A typo of an old name points at the new one.
    assert envvars.unknown_variables({"GREEN_API_SEND_RAT": "1"}, []) == [
        ("GREEN_API_SEND_RAT", "REPLY_DRAIN_RATE")
    ]


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("SITE_URI", "SITE_URL"),
        ("ADMIN", "ADMINS"),
        ("DATBASE_URL", "DATABASE_URL"),
        ("WORKER_HEARTBEAT_FIL", "WORKER_HEARTBEAT_FILE"),
    ],
)
def test_a_typo_without_our_prefix_is_caught_as_a_close_match(typo, suggestion):
    found = dict(envvars.unknown_variables({typo: "x"}, envvars.known_variables()))
    assert found == {typo: suggestion}


def test_other_programs_variables_and_service_links_are_not_ours():
    environ = {
        "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
        "DJANGO_SUPERUSER_PASSWORD": "x",
        "CELERY_RDB_HOST": "0.0.0.0",
        "CELERY_LOG_LEVEL": "20",
        "GUNICORN_FD": "3",
        # Kubernetes service links of services named redis, postgres and hotelbot.
        "REDIS_PORT": "tcp://10.0.0.1:6379",
        "REDIS_SERVICE_HOST": "10.0.0.1",
        "POSTGRES_PORT_5432_TCP_ADDR": "10.0.0.2",
        "HOTELBOT_SERVICE_PORT": "8000",
        "HOTELBOT_PORT_8000_TCP": "tcp://10.0.0.3:8000",
        # Generic names other software sets: not our prefixes, not close to one of our names.
        "DB_HOST": "db",
        "REDIS_PASSWORD": "x",
        "HOME": "/root",
        "lowercase_proxy": "x",
    }
    assert envvars.unknown_variables(environ, envvars.known_variables()) == []


def test_a_renamed_variable_is_still_read_under_its_old_name_with_a_warning(monkeypatch):
    monkeypatch.delenv("REPLY_DRAIN_RATE", raising=False)
    monkeypatch.setenv("GREEN_API_SEND_RATE", "7")
    assert env_float("REPLY_DRAIN_RATE", 20.0) == 7.0
    messages = _for("GREEN_API_SEND_RATE", hotelbot_checks.environment_variables())
    assert [m.id for m in messages] == ["hotelbot.W010"]
    assert "renamed REPLY_DRAIN_RATE." in messages[0].msg

    monkeypatch.setenv("REPLY_DRAIN_RATE", "9")
    assert env_float("REPLY_DRAIN_RATE", 20.0) == 9.0
    messages = _for("GREEN_API_SEND_RATE", hotelbot_checks.environment_variables())
    assert "ignored: the new name is set too" in messages[0].msg


@pytest.mark.slow
def test_manage_py_check_fails_on_a_typo(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update({"DJANGO_DEBUG": "1", "HOTELBOT_VAR_DIR": str(tmp_path), "REPLY_SWEEP_INTERVL": "3"})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "hotelbot.E010" in result.stderr
    assert "REPLY_SWEEP_INTERVL" in result.stderr
    assert "REPLY_SWEEP_INTERVAL" in result.stderr
