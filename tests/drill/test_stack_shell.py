"""``Stack.shell``: one long-lived Django shell (drill/shell_server.py) answers the drill's and the
end-to-end tests' looks into a stack, as a new ``manage.py shell`` each time did."""

from __future__ import annotations

import pytest

from drill.stack import base_env, make_stack

pytestmark = pytest.mark.slow  # starts a Django process (not in make test-fast)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One stack (no processes) for the module: most tests reuse its shell, as the e2e tests do."""
    tmp = tmp_path_factory.mktemp("shell")
    env, web_url = base_env(tmp, embedded=True)
    s = make_stack(tmp, env, web_url)
    yield s
    s.stop_all()


def test_one_process_answers_every_call_with_what_the_code_printed(stack):
    first = stack.shell("import os\nprint(os.getpid())")
    assert stack.shell("import os\nprint(os.getpid())") == first
    assert stack.shell("print('a')\nprint('b')") == "a\nb"
    assert stack.shell("from django.conf import settings\nprint(settings.REPLY_SWEEP_INTERVAL)") == "2.0"


def test_a_failing_script_raises_with_its_traceback_and_the_next_call_is_answered(stack):
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        stack.shell("print('before')\n1 / 0")
    with pytest.raises(RuntimeError, match="SystemExit"):
        stack.shell("raise SystemExit(3)")
    assert stack.shell("print(40 + 2)") == "42"


def test_names_of_one_script_do_not_leak_into_the_next(stack):
    stack.shell("leaked = 1")
    with pytest.raises(RuntimeError, match="NameError"):
        stack.shell("print(leaked)")


def test_a_changed_environment_starts_a_new_shell_with_it(stack):
    before = stack.shell("import os\nprint(os.getpid())")
    stack.env["REPLY_SWEEP_INTERVAL"] = "7"
    try:
        assert stack.shell("from django.conf import settings\nprint(settings.REPLY_SWEEP_INTERVAL)") == "7.0"
        assert stack.shell("import os\nprint(os.getpid())") != before
    finally:
        stack.env["REPLY_SWEEP_INTERVAL"] = "2"


def test_a_dead_shell_is_started_again(stack):
    pid = int(stack.shell("import os\nprint(os.getpid())"))
    with pytest.raises(RuntimeError, match="no answer"):
        stack.shell("import os\nos._exit(1)")
    assert int(stack.shell("import os\nprint(os.getpid())")) != pid


def test_stop_all_ends_the_shell(stack):
    stack.shell("print(1)")
    proc = stack._shell
    assert proc is not None
    stack.stop_all()
    assert proc.poll() is not None
