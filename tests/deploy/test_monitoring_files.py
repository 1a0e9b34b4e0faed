"""`deploy/`: the Prometheus alert rules load (with promtool when it is installed, else parsed and checked
here) and cover the design's monitoring checklist; the Grafana dashboard is valid JSON over observer_
metrics. That every metric they name is exported is checked against a real scrape in
tests/surfaces/test_http_api.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "observer-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "observer-dashboard.json"
CHECKLIST = {
    "ObserverTokenExpiring",
    "ObserverGapRateHigh",
    "ObserverActorRestarting",
    "ObserverSlotsUnusedInFullOperation",
    "ObserverDiskFilling",
}
METRIC = re.compile(r"\bobserver_[a-z_]+\b")


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_cover_the_checklist_and_are_well_formed() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} >= CHECKLIST
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert METRIC.search(rule["expr"]), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # parsed and checked above; `apt-get install prometheus` adds Prometheus's own checker
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_grafana_dashboard_charts_observer_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] == "Observer" and dashboard["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(METRIC.search(target["expr"]) for target in panel["targets"])


def referenced_metrics() -> set[str]:
    """Every observer_ metric the rules and the dashboard name (without the _total of counters' samples)."""
    names = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    names |= {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    return names
