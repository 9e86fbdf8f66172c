"""Typed readers of environment variables, shared by every settings module.

Each reader takes the variable's name and its default; an empty value counts as unset for the typed
readers (a copied ``.env.example`` line ``NAME=`` keeps the default). Renamed variables
(``hotelbot.envvars.RENAMED``) are still read under their old name when the new one is unset; the
system check ``hotelbot.W010`` names each old name that is set. Every name read here is listed by
``hotelbot.envvars`` (which reads these modules' source), so an unknown variable is a check error.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from hotelbot import envvars

_OLD_NAME = {new: old for old, new in envvars.RENAMED.items()}


def _raw(name: str) -> tuple[str, str | None]:
    """(the name actually read, its value): the new name, else its deprecated old name."""
    raw = os.environ.get(name)
    old = _OLD_NAME.get(name)
    if raw is None and old is not None and old in os.environ:
        return old, os.environ[old]
    return name, raw


def env_str(name: str, default: str = "") -> str:
    raw = _raw(name)[1]
    return default if raw is None else raw


def env_bool(name: str, default: bool) -> bool:
    name, raw = _raw(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_float(name: str, default: float) -> float:
    name, raw = _raw(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as e:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from e


def env_int(name: str, default: int) -> int:
    return int(env_float(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]
