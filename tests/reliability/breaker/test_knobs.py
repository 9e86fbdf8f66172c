"""A breaker knob is declared once (reliability/breaker/knobs.py): every CircuitBreakerConfig field
is a column, an admin field and an API field (or code-only, with why), and reaches the shared stores
(or is applied in process, with why), at a position derived from one declaration."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin

from reliability.breaker import CircuitBreakerConfig, knobs
from reliability.breaker.stores import redis as redis_store
from reliability.breaker.stores import rules
from reliability.models import BreakerConfig

FIELDS = [f.name for f in dataclasses.fields(CircuitBreakerConfig)]
LUA = Path(redis_store.__file__).with_name("lua")


def _admin_fields() -> set[str]:
    model_admin = admin.site._registry[BreakerConfig]
    return {str(name) for _, options in model_admin.fieldsets or () for name in options["fields"]}


def test_every_field_is_tunable_or_code_only_and_the_lists_hold_no_stale_names():
    assert set(knobs.CODE_ONLY) <= set(FIELDS)
    assert set(knobs.IN_PROCESS) <= set(FIELDS)
    assert set(knobs.TUNABLE) == set(FIELDS) - set(knobs.CODE_ONLY)


@pytest.mark.parametrize("name", knobs.TUNABLE)
def test_a_tunable_knob_is_a_column_an_admin_field_and_an_api_field(name: str):
    from console.api.serializers import BreakerConfigSerializer

    assert name in {f.name for f in BreakerConfig._meta.get_fields()}, f"{name}: no BreakerConfig column"
    assert name in _admin_fields(), f"{name}: not in the BreakerConfig admin's fieldsets"
    assert name in BreakerConfigSerializer.Meta.fields, f"{name}: not in the API's BreakerConfigSerializer"


@pytest.mark.parametrize("name", knobs.TUNABLE)
def test_the_runtime_config_takes_each_tunable_knob_from_its_column(name: str):
    row = BreakerConfig(name="knob-test", window_type="time", window_size=60)
    changed: dict[str, Any] = {
        "failure_threshold": 7,
        "recovery_timeout": 12.5,
        "success_threshold": 2,
        "slow_call_duration": 3.5,
        "window_size": 90,
        "minimum_requests": 4,
        "window_type": "count",
        "failure_rate_threshold": 40.0,
        "slow_call_rate_threshold": 80.0,
        "half_open_max_calls": 3,
        "half_open_max_wait": 20.0,
        "recovery_timeout_multiplier": 2.0,
        "max_recovery_timeout": 600.0,
        "failure_statuses": "500-503",
    }
    assert set(changed) == set(knobs.TUNABLE), "give the new knob a non-default value here"
    setattr(row, name, changed[name])
    expected = {500, 501, 502, 503} if name == "failure_statuses" else changed[name]
    assert getattr(row.to_config(), name) == expected


def test_every_field_reaches_the_stores_or_is_applied_in_process():
    carried = {arg.field for arg in knobs.STORE_ARGS if arg.field is not None}
    assert carried.isdisjoint(knobs.IN_PROCESS)
    assert carried | set(knobs.IN_PROCESS) == set(FIELDS)


def test_store_argument_positions_are_derived_for_redis_lua_and_the_python_port():
    config = CircuitBreakerConfig(
        failure_threshold=7, window_type="time", window_size=60, max_recovery_timeout=None
    )
    args = redis_store._config_args(config, redis_store.RedisStoreOptions())
    assert len(args) == knobs.NARGS
    decoded = knobs.decode_store_args(args)
    for arg in knobs.STORE_ARGS:
        if arg.field is not None:
            value = getattr(config, arg.field)
            assert decoded[arg.name] == (arg.when_none if value is None else value), arg.name
    # Lua reads each argument under its declared name at its declared position ...
    header = knobs.lua_header()
    for i, arg in enumerate(knobs.STORE_ARGS, start=1):
        assert re.search(rf"^local {arg.name} = (tonumber\()?ARGV\[{i}\]\)?$", header, re.M), arg.name
    # ... every script's own arguments come after them, never at a literal position ...
    for path in LUA.glob("*.lua"):
        assert not re.search(r"ARGV\[\d+\]", path.read_text()), f"{path.name}: a literal ARGV position"
    for source in redis_store.SCRIPTS.values():
        assert source.startswith(header)
    # ... and the Python port reads the same names.
    script = rules._Script({}, [*args, ""], 0)
    for arg in knobs.STORE_ARGS:
        if arg.name != "TTL":  # the database store's rows do not expire
            assert getattr(script, arg.name) == decoded[arg.name], arg.name
