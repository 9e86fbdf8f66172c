"""`make run`'s processes share one breaker: web (admin), a 2-process Celery worker and beat.

On the embedded default (no Redis) the breaker state lives in the database; with REDIS_URL set the
stack shares it through Redis. Either way, failures seen by both worker processes add up in one
breaker, and admin, served by the web process that never calls Green API, shows it open.
"""

from __future__ import annotations

import ast
import os
import re

import pytest
import requests

from tests.e2e.test_message_path import _wait_for

pytestmark = pytest.mark.e2e


def _admin(stack) -> requests.Session:
    session = requests.Session()
    login = f"{stack.web_url}/admin/login/"
    session.get(login, timeout=10)
    resp = session.post(
        login,
        data={
            "username": os.environ.get("HOTELBOT_ADMIN_USERNAME", "admin"),
            "password": os.environ.get("HOTELBOT_ADMIN_PASSWORD", "admin"),
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": login},
        timeout=10,
    )
    assert resp.ok, resp.text[-500:]
    assert "sessionid" in session.cookies, resp.text[-500:]
    return session


def _live_state(session: requests.Session, stack) -> str:
    page = session.get(f"{stack.web_url}/admin/reliability/breakerconfig/", timeout=10).text
    row = next(r for r in re.findall(r"<tr.*?</tr>", page, re.S) if ">green_api<" in r)
    match = re.search(r'class="field-live_state">([^<]*)<', row)
    assert match, row
    return match.group(1)


def test_eight_503s_on_send_open_one_green_api_breaker_that_admin_shows_open(stack):
    admin = _admin(stack)
    assert _live_state(admin, stack).startswith("closed")
    stack.fake(
        "green",
        "POST",
        "faults",
        json={"mode": "error", "status": 503, "count": 8, "match": {"path_regex": "sendMessage"}},
    )
    try:
        for i in range(4):  # replies for four guests: both worker processes send
            stack.fake(
                "green",
                "POST",
                "inbound",
                json={"chatId": f"7900555020{i}@c.us", "text": "Is there parking?", "senderName": "Ed"},
            )
        state = _wait_for(
            lambda: (lambda s: s if s.startswith("open") else "")(_live_state(admin, stack)),
            60,
            "admin to show the green_api breaker open",
            stack,
        )
        assert re.fullmatch(r"open \(retry in \d+s\)", state), state
        failed = stack.fake("green", "GET", "requests", params={"method_name": "sendMessage"})
        assert sum(1 for e in failed if e.get("status") == 503) <= 8
        opened = ast.literal_eval(
            stack.shell(
                "from reliability.models import BreakerEvent; print(list(BreakerEvent.objects.filter("
                "breaker='green_api', to_state='open').values_list('source', 'reason')))"
            )
        )
        expected = "redis" if os.environ.get("REDIS_URL") else "database"
        # Decided once, cluster-wide, by the shared store. Which rule fires first (5 consecutive
        # failures, or the failure rate once the window holds its minimum) depends on how the two
        # worker processes' successes and failures interleave.
        assert len(opened) == 1, opened
        assert opened[0][0] == expected
        assert opened[0][1] in {"consecutive_failures", "failure_rate"}, opened
    finally:
        stack.fake("green", "DELETE", "faults")
        assert stack.manage("breakers", "close", "green_api").returncode == 0
