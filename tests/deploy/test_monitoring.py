"""deploy/monitoring: the alert rules carry the seed's thresholds and, like the dashboard, name
only families the code exports; Kubernetes gets both as ConfigMaps that match the files."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import libs.common.metrics  # noqa: F401  # registers every checkout_* family
import services.gateway.app  # noqa: F401  # registers the gateway_* families
from services.gateway.routes.admin_metrics import UP
from tests.deploy import cluster
from tests.deploy.conftest import ROOT
from tests.deploy.kustomize import Manifest
from tools import gen_monitoring

MONITORING = ROOT / "deploy" / "monitoring"
DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# The seed's "Key Metrics to Monitor": alert -> the threshold its expression compares with.
SEED = {
    "CheckoutSlowQueries": "> 0.1",
    "CheckoutPoolNearlyExhausted": "> 0.8",
    "CheckoutPartitionTooLarge": "> 50e6",
    "CheckoutShardImbalance": "> 0.3",
    "CheckoutReplicationLag": "> 1",
}


def exported() -> set[str]:
    """Every sample name this code base can export (a family with no samples yet included)."""
    names = {UP}
    for family in REGISTRY.collect():
        if family.name.startswith(("checkout_", "gateway_")):
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def referenced(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (ours: checkout_* and gateway_*)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(?:checkout|gateway)_[a-zA-Z0-9_]+\b", unquoted))


def check_expr(expr: str) -> None:
    """What promtool would refuse first: unbalanced brackets, a bad range, no metric at all."""
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            assert depth[closing[char]] >= 0, expr
    assert not any(depth.values()), expr
    for window in re.findall(r"\[([^\]]*)\]", expr):
        assert DURATION.match(window), (window, expr)
    assert referenced(expr), expr


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    assert set(document) == {"groups"}
    groups = document["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_are_well_formed_and_name_only_exported_families(rules: list[dict[str, Any]]) -> None:
    names = exported()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Checkout[A-Za-z]+", rule["alert"])
        check_expr(rule["expr"])
        assert referenced(rule["expr"]) <= names, (rule["alert"], referenced(rule["expr"]) - names)
        assert "for" not in rule or DURATION.match(rule["for"])
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["action"]


def test_the_seeds_five_alerts_use_its_thresholds(rules: list[dict[str, Any]]) -> None:
    by_name = {r["alert"]: " ".join(r["expr"].split()) for r in rules}
    for alert, threshold in SEED.items():
        assert threshold in by_name[alert], (alert, by_name[alert])


def test_dashboard_panels_query_exported_families_and_cover_the_seed() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    names = exported()
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queried: set[str] = set()
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            check_expr(target["expr"])
            assert referenced(target["expr"]) <= names, (panel["title"], referenced(target["expr"]) - names)
            queried |= referenced(target["expr"])
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    seed_families = {
        name for g in rules for r in g["rules"] if r["alert"] in SEED for name in referenced(r["expr"])
    }
    assert seed_families <= queried


def test_kubernetes_carries_the_rules_and_dashboard_as_generated_config_maps(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert (ROOT / "deploy" / "k8s" / "base" / "monitoring.yaml").read_text() == gen_monitoring.render(), (
        "run `make monitoring`"
    )
    for overlay in ("dev", "prod"):
        rules = cluster.one(rendered[overlay], "ConfigMap", "checkout-prometheus-rules")
        assert rules["data"]["checkout-alerts.yml"] == (MONITORING / "alerts.yml").read_text()
        dashboard = cluster.one(rendered[overlay], "ConfigMap", "checkout-grafana-dashboard")
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(dashboard["data"]["checkout-platform.json"])["uid"] == "checkout-platform"
