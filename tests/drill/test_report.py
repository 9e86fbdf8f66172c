"""The drill report's split of webhook 5xx: expected while the database is down (and while the
database breakers it opened stay open), a failure anywhere else; and the scenario list's modes."""

from __future__ import annotations

from drill import report
from drill.runner import ScenarioRun
from drill.scenarios import selected
from drill.traffic import Injected, Tally

T0 = 1_000_000.0


def _compute(runs: list[ScenarioRun], deliveries: list[dict], events: list[dict]) -> dict:
    injected = [Injected("79001@c.us", "wifi", runs[0].name, T0 + 1, "m1")]
    tal = Tally(answered={0: [{"textMessage": "sunny2026", "timestamp": T0 + 2}]}, unmatched=[])
    app = {"jobs": [], "inbound": ["m1"], "dead_letters": [], "breaker_events": events}
    return report.compute(
        runs=runs,
        injected=injected,
        poison=[],
        tal=tal,
        app=app,
        deliveries=deliveries,
        send_requests=[],
        breakers={},
        meta={"started": T0},
    )


def _run(**kw) -> ScenarioRun:
    return ScenarioRun(
        "postgres_restart", "PostgreSQL stopped", started=T0, fault_ended=T0 + 40, settled=T0 + 60, **kw
    )


def test_503_while_the_database_is_down_and_its_breaker_open_is_expected_elsewhere_a_failure():
    run = _run(db_outages=[(T0 + 10, T0 + 20)])
    # A request that met the outage opened a web process's breaker after the server was back;
    # that breaker answers 503 until it closes at T0 + 30.
    events = [
        {"breaker": "database", "to": "open", "at": T0 + 24, "reason": ""},
        {"breaker": "database", "to": "closed", "at": T0 + 30, "reason": ""},
    ]
    deliveries = [
        {"time": T0 + 12, "status": 503},  # server down
        {"time": T0 + 29, "status": 503},  # breaker still open
        {"time": T0 + 35, "status": 503},  # nothing explains it
        {"time": T0 + 36, "status": 200},
    ]
    results = _compute([run], deliveries, events)
    overall = results["overall"]
    assert (overall["webhook_5xx"], overall["webhook_5xx_db_outage"]) == (3, 2)
    assert overall["webhook_5xx_outside_db_outage"] == 1
    assert results["scenarios"][0]["db_outages"] == [[10.0, 32.0]]
    assert results["failures"] == ["1 webhook 5xx answer(s) outside a database outage"]
    assert "| 2 / 1 |" in report.markdown({**results, "meta": {**results["meta"], **META}})


def test_without_an_outage_every_webhook_5xx_fails_the_drill():
    results = _compute([_run()], [{"time": T0 + 12, "status": 500}], [])
    assert results["overall"]["webhook_5xx_outside_db_outage"] == 1
    assert not results["ok"]


def test_a_process_that_exited_on_its_own_fails_the_drill():
    results = _compute([_run(exits=[(T0 + 15, "worker-1", 1)])], [], [])
    assert results["scenarios"][0]["process_exits"] == [[15.0, "worker-1", 1]]
    assert results["failures"] == ["worker-1 exited on its own (status 1) at 15s during postgres_restart"]


def test_infrastructure_scenarios_run_in_services_mode_only_and_the_long_one_not_in_ci():
    def names(**kw) -> set[str]:
        return {s.name for s in selected(**kw)}

    infra = {"redis_sigkill_20s", "redis_sigkill_5min", "postgres_restart"}
    assert names(ci=True, embedded=False) & infra == {"redis_sigkill_20s", "postgres_restart"}
    assert names(ci=False, embedded=False) >= infra
    assert names(ci=False, embedded=True) & infra == set()
    assert names(ci=True, embedded=False, names=["redis_sigkill_5min"]) == {"redis_sigkill_5min"}


META = {
    "mode": "PostgreSQL + Redis",
    "ci": True,
    "started_iso": "-",
    "duration_s": 60.0,
    "rate": 1.0,
    "chats": 6,
    "processes": "-",
}


def test_a_database_breaker_that_opened_late_ends_the_outage_window_at_its_own_close():
    """Each web process has its own database breaker: another process's earlier close does not end
    the 503s of one that opened as the server came back (it answers 503 until it closes)."""
    from drill.report import DB_OUTAGE_SLACK, database_outages
    from drill.runner import ScenarioRun

    run = ScenarioRun("postgres_restart", "t", started=0.0)
    run.db_outages = [(100.0, 108.0)]
    events = [
        {"breaker": "database", "to": "open", "at": 101.0, "process": "vm:1"},
        {"breaker": "database", "to": "open", "at": 111.5, "process": "vm:2"},  # met it late
        {"breaker": "database", "to": "closed", "at": 112.5, "process": "vm:1"},
        {"breaker": "database", "to": "closed", "at": 116.6, "process": "vm:2"},
    ]
    assert database_outages([run], events) == [(100.0, 116.6 + DB_OUTAGE_SLACK)]
