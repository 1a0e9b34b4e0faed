"""The run's counts at exit (`--summary-json`), from the shared metrics and the supervisor."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors.supervisor import Supervisor
from runtime.metrics import Metrics

COUNTERS = (
    "ticks_recorded",
    "scans",
    "triggers",
    "slot_changes",
    "overflows",
    "gaps_detected",
    "gaps_recovered",
    "gaps_marked",
    "alerts_sent",
)


def build_summary(
    metrics: Metrics, supervisor: Supervisor, child_ids: Sequence[str], alive: Sequence[str]
) -> dict[str, Any]:
    """`alive`: the children running just before the stop (after it, none are)."""
    snapshot = metrics.snapshot()
    restarts = supervisor.restart_counts()
    summary: dict[str, Any] = {name: int(snapshot.get(name, 0)) for name in COUNTERS}
    summary["restarts"] = {child: int(restarts.get(child, 0)) for child in child_ids}
    summary["actors_alive"] = sum(1 for child in child_ids if child in alive)
    summary["actors_total"] = len(child_ids)
    summary["actors_down"] = [child for child in child_ids if child not in alive]
    summary["phases_seen"] = list(snapshot.get("phases_seen", []))
    summary["exit_code"] = supervisor.exit_code
    return summary


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
