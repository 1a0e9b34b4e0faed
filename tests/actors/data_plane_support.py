"""Shared pieces of the data-plane tests (connection, recorder, gap recovery) against the KIS simulator."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pykka

from actors.context import ObserverContext
from actors.directory import Directory
from actors.gap_recovery import GapRecoveryActor
from actors.recorder import RecorderActor
from actors.ws_connection import ConnectionStatus, WSConnectionActor
from config.accounts import Account
from config.settings import Settings, WebSocketSettings
from core.settings import GapSettings, RecoverySettings
from messages.system import Ping
from tests.actors.control_plane_support import (
    Journal,
    RecordingActor,
    make_context,
    sim_account,
    start_recorders,
    wait_until,
)
from tools.kis_sim.server import KisSimulator

WAIT = 10.0
FAST_WS = WebSocketSettings(
    reconnect_backoff_seconds=(0.2, 0.4, 0.8),
    backoff_jitter=0.1,
    silence_timeout_seconds=1.5,
    suspend_track_b_after_seconds=1.0,
)

__all__ = ["FAST_WS", "WAIT", "DataPlane", "Journal", "wait_until"]


class DataPlane:
    """A directory with the simulator-backed context, real data-plane actors and recording peers."""

    def __init__(
        self,
        tmp_path: Path,
        sim: KisSimulator,
        *,
        accounts: tuple[Account, ...] | None = None,
        websocket: WebSocketSettings = FAST_WS,
        gaps: GapSettings | None = None,
        recovery: RecoverySettings | None = None,
    ) -> None:
        self.sim = sim
        self.accounts = accounts or (sim_account("acct1"),)
        settings = Settings().model_copy(update={
            "websocket": websocket,
            "gaps": gaps or GapSettings(),
            "recovery": recovery or RecoverySettings(),
        })
        context = make_context(
            tmp_path, sim.clock, rest_url=sim.rest_url, accounts=self.accounts, settings=settings
        )
        self.context: ObserverContext = dataclasses.replace(context, ws_url=sim.ws_url)
        self.directory = Directory(sim.clock)
        self.journals: dict[str, Journal] = {}

    @property
    def metrics(self) -> Any:
        return self.context.metrics

    def peers(self, *names: str) -> None:
        self.journals.update(start_recorders(self.directory, *names))

    def watch_ends(self) -> Journal:
        """A recording actor in the supervisor's place: it gets each incarnation's end report, sent once
        its thread is done (on_failure/on_stop finished), which is when a supervisor would restart it."""
        journal = Journal()
        self.directory.attach_supervisor(RecordingActor.start("supervisor", self.directory, journal))
        return journal

    def start_recorder(self) -> None:
        self._register("recorder", RecorderActor.start("recorder", self.directory, self.context))

    def start_gaps(self) -> None:
        self._register("gaps", GapRecoveryActor.start("gaps", self.directory, self.context))

    def start_ws(self, account: str = "acct1") -> str:
        name = f"ws.{account}"
        self._register(name, WSConnectionActor.start(name, self.directory, self.context, account))
        return name

    def _register(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        self.directory.register(name, ref)
        self.barrier(name)

    def tell(self, name: str, message: Any) -> None:
        assert self.directory.tell(name, message)

    def barrier(self, name: str) -> None:
        assert self.directory.ask(name, Ping(at=self.sim.clock.now()), timeout=WAIT) == name

    def status(self, name: str = "ws.acct1") -> ConnectionStatus:
        return self.directory.proxy(name).status().get(timeout=WAIT)

    def received(self, peer: str, kind: type | tuple[type, ...] = object) -> list[Any]:
        return self.journals[peer].received(kind)

    def symbols(self, count: int, skip: int = 0) -> tuple[str, ...]:
        return tuple(sorted(self.sim.market.listings))[skip : skip + count]

    def wait_confirmed(self, symbols: tuple[str, ...], name: str = "ws.acct1") -> ConnectionStatus:
        wanted = set(symbols)
        assert wait_until(lambda: set(self.status(name).confirmed) == wanted, WAIT), self.status(name)
        return self.status(name)
