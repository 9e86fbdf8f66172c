"""deploy/prometheus (rules + unit tests) and deploy/grafana: valid, and naming only real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "hotelbot.json"
PROMTOOL = "/usr/bin/promtool"
#: The runbook's headings (docs/runbook.md, written in another branch): every alert links to one.
RUNBOOK_ANCHORS = {
    "BreakerOpenTooLong",
    "BreakerFlapping",
    "DeadLettersGrowing",
    "QuarantinedNotifications",
    "DegradationSevere",
    "HealthCheckFailing",
    "RetryBudgetExhausted",
    "BeatHeartbeatStale",
    "ReplySLOBurn",
    "DeliverySLOBurn",
    "InstanceNotAuthorized",
    "DatabaseDown",
    "RedisDown",
    "HotelbotGuestsWaitingPastTarget",
}
#: Metrics another branch of issue 10 declares (health checks); named in a rule before the merge.
DECLARED_ELSEWHERE: set[str] = set()

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> Iterator[str]:
    def walk(panels: list[dict]) -> Iterator[dict]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(json.loads(DASHBOARD.read_text())["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]


def metric_names(expr: str) -> set[str]:
    """The metric (and recording-rule) names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]|[eE]\d+|Inf|NaN", name):
            continue
        names.add(name)
    return names


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every series name the application can export, recording rules included."""
    from django_prometheus.middleware import Metrics

    from reliability.metrics import CONVERSATIONS_HANDLED, CONVERSATIONS_WAITING, DEAD_LETTERS

    Metrics.get_instance()  # django-prometheus registers its HTTP metrics with the first middleware
    names: set[str] = set()
    for family in [*REGISTRY.collect()]:
        base, kind = family.name, family.type
        if kind == "counter":
            names |= {f"{base}_total", f"{base}_created"}
        elif kind == "histogram":
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
        elif kind == "summary":
            names |= {f"{base}_sum", f"{base}_count", base}
        else:
            names.add(base)
    with pytest.MonkeyPatch.context() as mp:  # the dead-letter gauge without a database
        mp.setattr("reliability.metrics._dead_letter_counts", lambda: [])
        DEAD_LETTERS.reset()
        names |= {family.name for family in DEAD_LETTERS.collect()}
        for sourced in (CONVERSATIONS_WAITING, CONVERSATIONS_HANDLED):  # (without a database)
            mp.setattr(sourced, "_source", lambda: (0, 0))
            sourced.reset()
            names |= {family.name for family in sourced.collect()}
    for collector in (DEAD_LETTERS, CONVERSATIONS_WAITING, CONVERSATIONS_HANDLED):
        collector.reset()
    names |= {rule["record"] for rule in rules() if "record" in rule}
    return names


def test_metric_name_parser_finds_metrics_not_functions_labels_or_keywords():
    expr = (
        'histogram_quantile(0.95, sum by (le, dependency) (rate(a_bucket{x="y z"}[5m])))'
        " / on (k) b:rule offset 5m > 3"
    )
    assert metric_names(expr) == {"a_bucket", "b:rule"}


def test_rules_pass_promtool_check_rules():
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path: Path):
    result = subprocess.run(
        [PROMTOOL, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_summary_description_and_a_runbook_anchor():
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "BreakerOpenTooLong",
        "BreakerFlapping",
        "DeadLettersGrowing",
        "QuarantinedNotifications",
        "HealthCheckFailing",
        "RetryBudgetExhausted",
        "BeatHeartbeatStale",
        "ReplySLOBurnFast",
        "ReplySLOBurnSlow",
        "DeliverySLOBurnFast",
        "DeliverySLOBurnSlow",
    }
    for alert in alerts:
        notes = alert["annotations"]
        assert notes["summary"], alert["alert"]
        assert notes["description"], alert["alert"]
        base = re.sub(r"(Fast|Slow)$", "", alert["alert"])
        assert base in RUNBOOK_ANCHORS, alert["alert"]
        assert notes["runbook_url"] == f"docs/runbook.md#{base.lower()}"
        assert alert["labels"]["severity"] in {"page", "ticket"}


def test_every_metric_in_the_rules_is_exported(exported: set[str]):
    named = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    assert named - exported - DECLARED_ELSEWHERE == set()
    assert "hotelbot_reply_latency_seconds_bucket" in named  # the parser found the real ones


def test_dashboard_is_importable_and_queries_only_exported_metrics(exported: set[str]):
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 39
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    exprs = list(dashboard_exprs())
    assert len(exprs) >= 15
    named = set().union(*(metric_names(e) for e in exprs))
    assert named - exported == set()
    for needed in (
        "hotelbot_reply_latency_seconds_bucket",
        "circuit_breaker_state",
        "hotelbot_breaker_transitions_total",
        "retry_attempts_total",
        "dlq_messages_total",
        "django_http_requests_latency_seconds_by_view_method_bucket",
        "hotelbot_dependency_requests_total",
    ):
        assert needed in named
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
