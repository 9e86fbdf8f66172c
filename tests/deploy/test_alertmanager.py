"""deploy/alertmanager/alertmanager.yml routes every alert of deploy/prometheus/alerts.yml to a person
(a YAML-structure check: Debian's prometheus-alertmanager, whose amtool would check it, is not installed)."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _config() -> dict:
    return yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())


def _rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_receiver_named_by_a_route_exists_and_reaches_someone() -> None:
    config = _config()
    receivers = {r["name"]: r for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    for route in routes:
        assert route["receiver"] in receivers, route
    for receiver in receivers.values():
        targets = receiver.get("email_configs", []) + receiver.get("webhook_configs", [])
        assert targets, f"receiver {receiver['name']} reaches nobody"
        assert all(t.get("to") or t.get("url") for t in targets)


def test_every_alert_rule_has_a_severity_the_routes_match() -> None:
    config = _config()
    matched = {m.split("=", 1)[1].strip('"') for r in config["route"]["routes"] for m in r["matchers"]}
    severities = {rule["labels"]["severity"] for rule in _rules()}
    assert severities <= matched, severities - matched
    page_receivers = {r["receiver"] for r in config["route"]["routes"] if 'severity="page"' in r["matchers"]}
    assert "on-call" in page_receivers


def test_inhibit_rules_name_real_alerts() -> None:
    names = {rule["alert"] for rule in _rules()}
    for rule in _config()["inhibit_rules"]:
        for matcher in rule["source_matchers"]:
            if matcher.startswith("alertname="):
                assert matcher.split("=", 1)[1].strip('"') in names
