"""The run's counts at exit (`--summary-json`), from the shared metrics and the supervisor."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors.supervisor import Supervisor
from runtime.metrics import COUNTERS, Metrics

EXIT_OK, EXIT_CHAOS_FAILED = 0, 3

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


RECONCILED = (
    "sim_ticks_sent",
    "ticks_recorded_matched",
    "ticks_in_recovered_gaps",
    "ticks_in_marked_gaps",
    "ticks_lost",
    "duplicate_alerts",
)


def chaos_verdict(summary: dict[str, Any]) -> list[str]:
    """What keeps a chaos day from passing (empty: it passed): a lost tick, an actor down, a duplicate
    alert, an escalation, a planned step that did not run."""
    failures = []
    if summary.get("ticks_lost", 0):
        sample = summary.get("ticks_lost_sample", [])[:3]
        failures.append(f"{summary['ticks_lost']} ticks lost, e.g. {sample}")
    if summary["actors_alive"] != summary["actors_total"]:
        failures.append(f"actors down: {', '.join(summary['actors_down'])}")
    if summary.get("duplicate_alerts", 0):
        failures.append(f"{summary['duplicate_alerts']} alerts inside their cooldown")
    if summary.get("exit_code") not in (0, None):
        failures.append(f"the supervisor stopped with exit code {summary['exit_code']}")
    if summary.get("chaos_missed"):
        failures.append(f"planned steps that did not run: {', '.join(summary['chaos_missed'])}")
    return failures


def conclude(summary: dict[str, Any], exit_code: int, chaos_steps: int | None) -> tuple[int, list[str]]:
    """The process's exit code, also written into `summary` as `exit_code`, and what failed the chaos day.

    The code is the supervisor's, or `EXIT_CHAOS_FAILED` when a chaos day (`chaos_steps`: how many of its
    steps ran; None: no chaos day) did not pass; the supervisor's own stays in `supervisor_exit_code`.
    """
    summary["supervisor_exit_code"] = summary.get("exit_code")
    failures: list[str] = []
    if chaos_steps is not None:
        summary["chaos_steps"] = chaos_steps
        failures = chaos_verdict(summary)
        summary["chaos_passed"] = not failures
        if failures and exit_code == EXIT_OK:
            exit_code = EXIT_CHAOS_FAILED
    summary["exit_code"] = exit_code
    return exit_code, failures


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The last lines printed at exit: the reconciliation (in simulator mode), actors and restarts, the
    processes restarted, and a chaos day's steps that ran and its verdict."""
    lines = []
    if "sim_ticks_sent" in summary:
        lines.append(" ".join(f"{name}={summary[name]}" for name in RECONCILED))
    restarted = {child: count for child, count in summary["restarts"].items() if count}
    restarts = ", ".join(f"{child} {count}" for child, count in restarted.items()) or "none"
    lines.append(
        f"ticks_recorded={summary['ticks_recorded']} actors_alive={summary['actors_alive']}/"
        f"{summary['actors_total']} restarts: {restarts}"
    )
    processes = {name: count for name, count in summary.get("process_restarts", {}).items() if count}
    if processes:
        lines.append("process restarts: " + ", ".join(f"{name} {count}" for name, count in processes.items()))
    if "chaos_passed" in summary:
        if "chaos_done" in summary:
            lines.append(f"chaos steps ran: {', '.join(summary['chaos_done']) or 'none'}")
        missed = summary.get("chaos_missed", [])
        lines.append(f"chaos day {'passed' if summary['chaos_passed'] else 'FAILED'} "
                     f"({summary['chaos_steps']} of {summary['chaos_steps'] + len(missed)} steps)")
    return lines


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
