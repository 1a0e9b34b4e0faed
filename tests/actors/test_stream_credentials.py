"""One owner of the credentials: the control process's token actor issues, renews and writes the token cache;
the stream process's connection reads it. Two contexts over one cache directory stand for the two processes
(they share nothing else), with the stream's credentials as `run.py --role stream` builds them."""

from __future__ import annotations

import dataclasses

import pytest

from actors.tokens import TokenActor
from app.system import credentials_for
from core.schedule import DayEvent
from kis.token_vault import TokenVault
from messages.schedule import DayEventFired
from messages.streaming import ConnectionChanged, ConnectionState, SetSubscriptions
from tests.actors.data_plane_support import WAIT, DataPlane, wait_until
from tools.kis_sim.server import SimConfig

PEERS = ("recorder", "triggers", "gaps", "slots", "notifier")


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """A manual clock, so the refresh can wait out KIS's one token a minute without waiting."""
    return dataclasses.replace(kis_sim_config, speed=0)


def test_the_stream_reads_what_control_writes_and_reconnects_with_the_refreshed_key(tmp_path, kis_sim):
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers(*PEERS)
    control = plane.context
    vault = control.vault
    assert isinstance(vault, TokenVault)
    stream = credentials_for("stream", control.settings, kis_sim.clock, kis_sim.rest_url)
    plane.context = dataclasses.replace(control, vault=stream)
    cache = vault.cache_path("acct1")
    symbols = plane.symbols(3)

    # Before the control side has written anything, the stream's connects fail: it issues nothing itself
    # and writes no cache file.
    plane.start_ws()
    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=symbols))
    states = lambda: [m.state for m in plane.received("slots", ConnectionChanged)]  # noqa: E731
    assert wait_until(lambda: ConnectionState.SUSPENDED in states(), WAIT)
    assert not cache.parent.exists()
    assert kis_sim.ws.session_approval_keys() == []

    # The control side's token actor issues and writes the cache; the stream's next attempt uses that key.
    plane.directory.register("tokens", TokenActor.start("tokens", plane.directory, control))
    plane.barrier("tokens")
    first = vault.approval_key("acct1").get_secret_value()
    plane.wait_confirmed(symbols)
    assert kis_sim.ws.session_approval_keys() == [first]

    # The 08:30 refresh renews the key on the control side and restarts the stream's session, which
    # presents the new key.
    kis_sim.clock.advance(120)
    plane.directory.ask("tokens", DayEventFired(at=kis_sim.clock.now(), event=DayEvent.TOKEN_REFRESH))
    renewed = vault.approval_key("acct1").get_secret_value()
    assert renewed != first
    written = cache.stat().st_mtime_ns
    assert wait_until(lambda: kis_sim.ws.session_approval_keys() == [renewed], WAIT), "old key presented"
    plane.wait_confirmed(symbols)
    assert cache.stat().st_mtime_ns == written  # the stream's reconnect read the file and left it alone
