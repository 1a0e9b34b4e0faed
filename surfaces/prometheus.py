"""`/metrics`: the surface's figures in the Prometheus text format, every name prefixed `observer_`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.schedule import Phase
from surfaces.api import ObserverSurface

GAP_KINDS = ("detected", "recovered", "marked")


class ObserverCollector(Collector):
    """Reads `surface.figures()` at each scrape (no state of its own, so it never drifts from the run)."""

    def __init__(self, surface: ObserverSurface) -> None:
        self._surface = surface

    def collect(self) -> Iterator[Metric]:
        f = self._surface.figures()
        yield GaugeMetricFamily(
            "observer_control_active", "1 for the active control process, 0 for a standby one",
            value=1 if f["control_active"] else 0,
        )
        yield from _process(f)
        if f["control_active"]:  # a standby runs no actor: its slots, tokens... would raise false alerts
            yield from _observer(f)


def _observer(f: dict[str, Any]) -> Iterator[Metric]:
    """What the running observer does: slots, ticks, gaps, REST calls, tokens, alerts, actors, phase."""
    snap: dict[str, Any] = f["snapshot"]
    in_use = GaugeMetricFamily(
        "observer_slots_in_use", "Symbols holding a WebSocket slot", labels=["account"]
    )
    capacity = GaugeMetricFamily("observer_slots_capacity", "WebSocket tick slots", labels=["account"])
    for account, (used, cap) in sorted(f["slots"].items()):
        in_use.add_metric([account], used)
        capacity.add_metric([account], cap)
    yield in_use
    yield capacity
    ticks = CounterMetricFamily("observer_ticks", "Trade ticks received", labels=["account"])
    for account, count in sorted(f["account_ticks"].items()):
        ticks.add_metric([account], count)
    yield ticks
    yield CounterMetricFamily(
        "observer_ticks_recorded",
        "Ticks written to the tick files",
        value=int(snap.get("ticks_recorded", 0)),
    )
    gaps = CounterMetricFamily("observer_gaps", "Gaps in the tick stream by kind", labels=["kind"])
    for kind in GAP_KINDS:
        gaps.add_metric([kind], int(snap.get(f"gaps_{kind}", 0)))
    yield gaps
    yield GaugeMetricFamily(
        "observer_gap_rate", "Share of detected gaps not recovered (marked)", value=f["gap_rate"]
    )
    recoveries = CounterMetricFamily("observer_recoveries", "Gap recoveries by result", labels=["result"])
    recoveries.add_metric(["success"], int(snap.get("gaps_recovered", 0)))
    recoveries.add_metric(["failure"], int(snap.get("gaps_marked", 0)))
    yield recoveries
    calls = CounterMetricFamily("observer_rest_calls", "REST calls per app key", labels=["account"])
    limited = CounterMetricFamily(
        "observer_rest_rate_limited", "Rate-limit answers per app key", labels=["account"]
    )
    for account, (made, refused) in sorted(f["rest"].items()):
        calls.add_metric([account], made)
        limited.add_metric([account], refused)
    yield calls
    yield limited
    expiry = GaugeMetricFamily(
        "observer_token_expiry_seconds", "Seconds until the access token expires", labels=["account"]
    )
    for account, seconds in sorted(f["tokens"].items()):
        expiry.add_metric([account], -1 if seconds is None else seconds)
    yield expiry
    yield CounterMetricFamily(
        "observer_overflows", "Overflow ledger lines", value=int(snap.get("overflows", 0))
    )
    alerts = CounterMetricFamily("observer_alerts", "Alerts by outcome", labels=["outcome"])
    for outcome in ("sent", "suppressed", "failed", "dropped"):
        alerts.add_metric([outcome], int(snap.get(f"alerts_{outcome}", 0)))
    yield alerts
    restarts = CounterMetricFamily("observer_restarts", "Restarts per actor", labels=["actor"])
    for actor, count in sorted(f["restarts"].items()):
        restarts.add_metric([actor], count)
    yield restarts
    for name, help_text in (
        ("scans", "Track A passes"),
        ("triggers", "New triggers"),
        ("slot_changes", "Subscribe and unsubscribe decisions"),
        ("reconnects", "WebSocket reconnects"),
        ("frame_errors", "Unreadable frames"),
    ):
        yield CounterMetricFamily(f"observer_{name}", help_text, value=int(snap.get(name, 0)))
    phase = GaugeMetricFamily("observer_phase", "1 for the current operation phase", labels=["phase"])
    for value in Phase:
        phase.add_metric([value.value], 1 if f["phase"] == value.value else 0)
    yield phase


def _process(f: dict[str, Any]) -> Iterator[Metric]:
    """This process: alive, its memory, CPU and disk, its spine connection."""
    yield GaugeMetricFamily(
        "observer_process_resident_memory_bytes", "Resident memory", value=f["rss_bytes"]
    )
    yield CounterMetricFamily(
        "observer_process_cpu_seconds", "User and system CPU time", value=f["cpu_seconds"]
    )
    yield GaugeMetricFamily(
        "observer_data_dir_free_bytes", "Free disk under the data dir", value=f["disk_free_bytes"]
    )
    yield GaugeMetricFamily(
        "observer_up", "1 while the actor tree is alive (a standby control is)", value=1 if f["alive"] else 0
    )
    yield GaugeMetricFamily(
        "observer_spine_connected", "1 when the spine (NATS) is connected",
        value=1 if f["spine_connected"] else 0,
    )


def metrics_text(surface: ObserverSurface) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ObserverCollector(surface))
    return generate_latest(registry)
