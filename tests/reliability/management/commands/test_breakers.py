from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from reliability.breaker import State, registry
from reliability.models import BreakerConfig

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("breakers", *args, stdout=out)
    return out.getvalue()


def test_list_shows_every_breaker_with_live_state():
    out = run()
    for name in ("green_api", "deepseek", "redis"):  # redis guards broker publishes (issue 9)
        assert name in out
    assert "database" not in out  # guards nothing in the database (it cannot live there)
    assert "closed" in out


def test_force_open_for_minutes_then_close():
    assert "forced_open" in run("force-open", "deepseek", "--reason", "incident 42", "--minutes", "10")
    row = BreakerConfig.objects.get(name="deepseek")
    assert (row.mode, row.mode_reason) == ("forced_open", "incident 42")
    assert row.mode_until is not None
    assert "closed" in run("close", "deepseek")
    assert registry.breaker("deepseek").state == State.CLOSED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("force-open", "deepseek"), "Say why"),
        (("force-open",), "needs a breaker name"),
        (("reset", "nope"), "No breaker named"),
        (("disable", "deepseek", "--reason", "x", "--minutes", "0"), "between 1 and 43200"),
    ],
)
def test_bad_input_is_a_command_error(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
