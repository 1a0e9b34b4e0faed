"""The actor tree of the user's design card, in start order (the supervisor stops it in reverse), and which
process each child runs in: the stream process (WebSocket sessions and the tick journal) or the control
process (everything else); role "all" runs both in one process.

A process imports the modules of the actors it runs and no others: the control actors bring pyarrow and
psycopg (the minute jobs), about 60 MB of memory the stream process has no use for."""

from __future__ import annotations

from collections.abc import Sequence

from actors.context import ObserverContext
from actors.supervisor import ChildSpec, Restart
from runtime.backoff import Backoff

ROLES = ("all", "control", "stream")


def ws_actor_id(account: str) -> str:
    return f"ws.{account}"


def role_of(child_id: str) -> str:
    """"stream" for the tick path (the recorder and every connection actor), else "control"."""
    return "stream" if child_id == "recorder" or child_id.startswith("ws.") else "control"


def child_specs(context: ObserverContext, role: str = "all") -> list[ChildSpec]:
    """The children `role` runs. Recorder first (everyone writes through it), scheduler last (its first
    tick reaches everyone)."""
    shared = {"context": context}
    ws = context.settings.websocket
    connection_backoff = Backoff(steps=ws.reconnect_backoff_seconds, jitter=ws.backoff_jitter)
    stream, control = role in ("all", "stream"), role in ("all", "control")
    specs: list[ChildSpec] = []
    if stream:
        from actors.recorder import RecorderActor
        from actors.ws_connection import WSConnectionActor

        specs.append(ChildSpec("recorder", actor_class=RecorderActor, kwargs=shared, shutdown_timeout=10.0))
    if control:
        from actors.gap_recovery import GapRecoveryActor
        from actors.minute_jobs import MinuteJobsActor
        from actors.notifier import NotifierActor
        from actors.scanner import ScannerActor
        from actors.scheduler import SchedulerActor
        from actors.slot_manager import SlotManagerActor
        from actors.tokens import TokenActor
        from actors.triggers import TriggerActor
        from actors.universe import UniverseActor

        specs += [
            ChildSpec("notifier", actor_class=NotifierActor, kwargs=shared),
            ChildSpec("tokens", actor_class=TokenActor, kwargs=shared, start_timeout=120.0),
            ChildSpec("universe", actor_class=UniverseActor, kwargs=shared, start_timeout=30.0),
            ChildSpec("scanner", actor_class=ScannerActor, kwargs=shared),
            ChildSpec("triggers", actor_class=TriggerActor, kwargs=shared),
            ChildSpec("slots", actor_class=SlotManagerActor, kwargs=shared),
            ChildSpec("gaps", actor_class=GapRecoveryActor, kwargs=shared),
            ChildSpec("minute_jobs", actor_class=MinuteJobsActor, kwargs=shared, shutdown_timeout=15.0),
        ]
    if stream:
        specs += [
            ChildSpec(
                ws_actor_id(account.name),
                actor_class=WSConnectionActor,
                kwargs={**shared, "account": account.name},
                restart=Restart.PERMANENT,
                backoff=connection_backoff,
            )
            for account in context.accounts
        ]
    if control:
        specs.append(ChildSpec("scheduler", actor_class=SchedulerActor, kwargs=shared))
    return specs


def child_ids_for(account_names: Sequence[str]) -> tuple[str, ...]:
    """The ids `child_specs` gives the whole tree with these accounts, without a context: what a process
    that runs none of them (`run.py --role all`'s parent) needs to plan a chaos day."""
    services = ("recorder", "notifier", "tokens", "universe", "scanner", "triggers", "slots", "gaps",
                "minute_jobs")
    return (*services, *(ws_actor_id(name) for name in account_names), "scheduler")


def all_child_ids(context: ObserverContext) -> tuple[str, ...]:
    """Every child id of the whole tree, whichever process runs it."""
    return child_ids_for([account.name for account in context.accounts])
