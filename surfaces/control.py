"""The control process's side of control commands: what `spine.control.ControlResponder` answers with.

`ControlDesk.answer` takes one request off the spine, checks it (`surfaces.commands`, then today's
universe), asks the control actor, writes the audit line (who, what, when, the answer) and replies with
what was done or one sentence saying why nothing was changed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pykka
from loguru import logger

from actors.directory import Directory
from messages.market import UniverseReady
from messages.universe import CurrentUniverse
from runtime.clock import Clock
from spine.wire import ControlReply
from surfaces.audit import AuditLog
from surfaces.commands import CommandError, parse_command

ASK_SECONDS = 3.0
NOBODY = "nats"
"""Who a request is recorded as when it names nobody."""
MAX_WHO = 64


class UniverseNames:
    """The day's universe, symbol -> (name, market), asked of the `universe` actor once per day."""

    def __init__(self, directory: Directory, clock: Clock) -> None:
        self._directory = directory
        self._clock = clock
        self._universe: UniverseReady | None = None

    def __call__(self) -> dict[str, tuple[str, str]]:
        today = self._clock.now().date()
        universe = self._universe
        if (universe is None or universe.day != today) and self._directory.ref("universe") is not None:
            try:
                answer = self._directory.ask(
                    "universe", CurrentUniverse(at=self._clock.now()), timeout=ASK_SECONDS
                )
            except pykka.Timeout:
                answer = None
            if isinstance(answer, UniverseReady):
                universe = self._universe = answer
        if universe is None:
            return {}
        return {p.symbol: (p.name, p.market) for p in universe.profiles}


class ControlDesk:
    """`system` is the running `app.system.ObserverSystem` of the control process."""

    def __init__(self, system: Any, audit: AuditLog) -> None:
        self._clock: Clock = system.context.clock
        self._picks_time = system.context.settings.triggers.manual.picks_time
        self._directory: Directory = system.directory
        self._names = UniverseNames(self._directory, self._clock)
        self._audit = audit

    def answer(self, name: str, data: bytes) -> ControlReply:
        """The reply to the request `data` for command `name`; audited whether done or refused."""
        now = self._clock.now()
        who, body = NOBODY, None
        try:
            body = _decoded(data)
            who = _who(body)
            done = self._carry_out(name, body, now)
        except CommandError as error:
            self._audit.append(who, name, body, ok=False, answer=error.sentence, at=now)
            return ControlReply(ok=False, command=name, status=error.status, error=error.sentence, at=now)
        self._audit.append(who, name, body, ok=True, answer=done, at=now)
        logger.info("control: {} by {}: {}", name, who, done)
        return ControlReply(ok=True, command=name, status=200, done=done, at=now)

    def _carry_out(self, name: str, body: Any, now: datetime) -> str:
        command = parse_command(name, body, now, self._picks_time)
        if command.symbols:
            names = self._names()
            if not names:
                raise CommandError(409, "the universe is not loaded yet: try again in a moment")
            missing = [symbol for symbol in command.symbols if symbol not in names]
            if missing:
                raise CommandError(422, f"{missing[0]} is not in today's universe ({len(names)} symbols)")
        if self._directory.ref(command.actor) is None:
            raise CommandError(503, f"the {command.actor} actor is not running: nothing was changed")
        try:
            done = self._directory.ask(command.actor, command.message, timeout=ASK_SECONDS)
        except pykka.Timeout as error:
            sentence = f"the {command.actor} actor did not answer within {ASK_SECONDS:g} s"
            raise CommandError(504, sentence) from error
        return str(done) if done is not None else f"{name} sent to {command.actor}"


def _decoded(data: bytes) -> Any:
    try:
        return json.loads(data or b"{}")
    except ValueError:
        raise CommandError(400, "the request body is not valid JSON") from None


def _who(body: Any) -> str:
    """Who the request names (taken out of `body`), or NOBODY."""
    if not isinstance(body, dict) or "who" not in body:
        return NOBODY
    who = body.pop("who")
    if who is None:
        return NOBODY
    if not isinstance(who, str) or not who.strip() or len(who) > MAX_WHO or not who.isprintable():
        raise CommandError(400, f"who must be a name of 1 to {MAX_WHO} printable characters")
    return who.strip()
