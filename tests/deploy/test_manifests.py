"""Deployment files: the Kubernetes manifests validate against the 1.30 schemas (offline, strict),
probe the right health URLs, and run exactly one beat; the systemd units restart always."""

from __future__ import annotations

import configparser
import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_name(kind: str, name: str) -> dict[str, Any]:
    return next(doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def test_every_manifest_validates_strictly() -> None:
    docs = documents()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job", "PodDisruptionBudget"} <= kinds
    validated = []
    for filename, doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError when invalid
        validated.append(f"{filename}:{doc['kind']}/{doc['metadata']['name']}")
    assert len(validated) == len(docs) >= 9


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d["spec"].__setitem__("replicas", "two"), "wrong type"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("livenesProbe", {}), "typo"),
        (lambda d: d["spec"].pop("selector"), "missing required field"),
    ],
)
def test_an_invalid_manifest_fails_validation(mutate: Any, why: str) -> None:
    doc = copy.deepcopy(by_name("Deployment", "hotelbot-web"))
    mutate(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_web_probes_use_live_and_ready() -> None:
    container = by_name("Deployment", "hotelbot-web")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live/"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready/"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live/"


def test_exactly_one_beat_recreated_not_rolled() -> None:
    beat = by_name("Deployment", "hotelbot-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_systemd_units_restart_always() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert [u.name for u in units] == [
        "hotelbot-beat.service",
        "hotelbot-web.service",
        "hotelbot-worker.service",
    ]
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        assert parser["Service"]["Restart"] == "always"
        assert parser["Service"]["ExecStart"].startswith("/opt/hotelbot/.venv/bin/")
