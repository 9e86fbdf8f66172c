"""Safe by default (issue 16, item 6): DEBUG off unless set; without it, public development values
are system check errors that stop manage.py, gunicorn, the Celery worker and beat, naming the
variable; `check --deploy` is clean with deploy/k8s's settings; missing alert recipients warn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core import checks
from django.test import override_settings

from hotelbot import checks as safe

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz!@#$%"


def _ids(messages: list[checks.CheckMessage]) -> set[str]:
    return {str(m.id) for m in messages}


def test_pytest_sets_debug_before_the_settings_load() -> None:
    import hotelbot.settings as loaded  # the module as loaded (Django's test setup turns DEBUG off)

    assert os.environ["DJANGO_DEBUG"] in {"1", "true", "yes", "on"}
    assert loaded.DEBUG is True


@override_settings(DEBUG=False, SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS=["hotelbot.example.com"])
def test_production_values_pass(settings) -> None:
    settings.GREEN_API_WEBHOOK_TOKEN = ""
    assert safe.security_settings() == []


@pytest.mark.parametrize(
    ("overrides", "error_id", "variable"),
    [
        (
            {"SECRET_KEY": "django-insecure-dev-only-key-do-not-use-in-production-0123456789abcdef"},
            "hotelbot.E001",
            "DJANGO_SECRET_KEY",
        ),
        ({"SECRET_KEY": ""}, "hotelbot.E001", "DJANGO_SECRET_KEY"),
        ({"GREEN_API_WEBHOOK_TOKEN": "dev-webhook-token"}, "hotelbot.E002", "GREEN_API_WEBHOOK_TOKEN"),
        ({"ALLOWED_HOSTS": ["hotelbot.example.com", "*"]}, "hotelbot.E003", "DJANGO_ALLOWED_HOSTS"),
    ],
)
def test_each_public_value_is_an_error_naming_its_variable(settings, overrides, error_id, variable) -> None:
    settings.DEBUG, settings.SECRET_KEY, settings.ALLOWED_HOSTS = False, GOOD_KEY, ["hotelbot.example.com"]
    settings.GREEN_API_WEBHOOK_TOKEN = ""
    for name, value in overrides.items():
        setattr(settings, name, value)
    errors = safe.security_settings()
    assert _ids(errors) == {error_id}
    assert errors[0].level == checks.ERROR
    assert variable in errors[0].msg
    settings.DEBUG = True  # development: the same values are allowed
    assert safe.security_settings() == []


def test_alert_warnings_without_admins_or_a_real_mail_backend(settings, monkeypatch) -> None:
    settings.DEBUG = False
    settings.ADMINS = []
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    assert _ids(safe.alert_recipients()) == {"hotelbot.W001", "hotelbot.W002"}
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    monkeypatch.delenv("EMAIL_URL", raising=False)
    monkeypatch.delenv("EMAIL_HOST", raising=False)
    assert _ids(safe.alert_recipients()) == {"hotelbot.W002"}  # smtp to localhost:25 by default
    monkeypatch.setenv("EMAIL_URL", "smtp+tls://u:p@smtp.example.com:587")
    assert safe.alert_recipients() == []
    assert all(m.level == checks.WARNING for m in safe.alert_recipients())


# --- the real processes ---------------------------------------------------------------------------------
def _unsafe_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "COV_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GREEN_API_WEBHOOK_TOKEN"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hotelbot.settings",
            "HOTELBOT_VAR_DIR": str(tmp_path / "var"),
            "DJANGO_ALLOWED_HOSTS": "*",  # and no DJANGO_SECRET_KEY, no DJANGO_DEBUG
            "GREEN_API_WEBHOOK_TOKEN": "dev-webhook-token",
            "GUNICORN_BIND": "127.0.0.1:0",
        }
    )
    return env


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "hotelbot.wsgi",
            "--config",
            "deploy/gunicorn.conf.py",
        ],
        [str(Path(sys.executable).parent / "celery"), "-A", "hotelbot", "worker", "--concurrency=1"],
        [str(Path(sys.executable).parent / "celery"), "-A", "hotelbot", "beat"],
        [sys.executable, "manage.py", "migrate", "--noinput"],
    ],
    ids=["gunicorn", "celery-worker", "celery-beat", "manage.py"],
)
def test_the_real_processes_refuse_to_start_naming_the_variables(argv: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        argv, cwd=ROOT, env=_unsafe_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    for variable in ("DJANGO_SECRET_KEY", "GREEN_API_WEBHOOK_TOKEN", "DJANGO_ALLOWED_HOSTS"):
        assert variable in output, output[-2000:]
    if "manage.py" not in argv:
        assert proc.returncode == 1
        assert "refusing to start" in output


@pytest.mark.slow
def test_check_deploy_is_clean_with_the_k8s_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "COV_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ADMINS", "EMAIL_URL", "EMAIL_HOST"):
        env.pop(name, None)
    for manifest in ("configmap.yaml", "secret.example.yaml"):
        doc = yaml.safe_load((ROOT / "deploy" / "k8s" / manifest).read_text())
        env.update({k: str(v) for k, v in (doc.get("data") or doc.get("stringData")).items()})
    assert env["DJANGO_DEBUG"] == "false"
    env["HOTELBOT_VAR_DIR"] = str(tmp_path / "var")  # the pod's /tmp paths, here
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout, proc.stdout
