"""The control lease and the state copy on a real nats-server: one holder at a time, a clean release hands
over at once, a dead holder's lease expires, and a takeover starts from the newest copy of each document."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import nats

from config.settings import SpineSettings
from runtime.paths import DataPaths
from runtime.state_store import StateStore
from spine.kv import LEASE_KEY, ControlLease, StateReplica
from spine.server import NatsServer

TTL = 2.0
SPINE = SpineSettings(instance="test")


def lease(server: NatsServer, me: str) -> ControlLease:
    held = ControlLease(server.url, SPINE, me, TTL)
    held.start()
    return held


def test_one_holder_a_release_hands_over_at_once_and_a_dead_holder_expires(nats_server: NatsServer) -> None:
    first = lease(nats_server, "host-a:/data")
    assert first.held.wait(5.0)
    second = lease(nats_server, "host-b:/data")
    try:
        assert not second.held.wait(TTL * 1.5), "two holders"  # renewed by the first all along
        assert second.holder == "host-a:/data"

        released = time.monotonic()
        first.release()
        assert second.held.wait(5.0)
        print(f"\ntakeover after a release: {time.monotonic() - released:.2f} s")

        third = lease(nats_server, "host-c:/data")
        died = time.monotonic()
        second.stop()  # no release: as after a SIGKILL, the lease must expire
        assert third.held.wait(TTL + 5.0)
        waited = time.monotonic() - died
        print(f"takeover after the holder died: {waited:.2f} s (lease TTL {TTL:g} s)")
        assert waited >= TTL * 0.5, "taken while the dead holder's lease was still valid"
        third.release()
    finally:
        for each in (first, second):
            each.stop()


def test_a_restarted_holder_takes_its_own_lease_back_without_waiting(nats_server: NatsServer) -> None:
    before = lease(nats_server, "host-a:/data")
    assert before.held.wait(5.0)
    before.stop()  # killed: nothing released
    after = lease(nats_server, "host-a:/data")
    try:
        assert after.held.wait(TTL * 0.5)
    finally:
        after.release()


def test_an_active_control_steps_down_when_another_holds_the_lease(nats_server: NatsServer) -> None:
    """What an active control that stopped renewing (paused, cut off) finds when it comes back: another
    control took the expired lease. Played here by writing the other holder into the bucket directly."""
    active = lease(nats_server, "host-a:/data")
    try:
        assert active.held.wait(5.0)
        asyncio.run(take_over(nats_server.url, active.bucket, "host-b:/data"))
        assert active.lost.wait(TTL)
        assert not active.held.is_set()
    finally:
        active.stop()


async def take_over(url: str, bucket: str, holder: str) -> None:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        await kv.put(LEASE_KEY, json.dumps({"holder": holder}).encode())
    finally:
        await nc.close()


def test_a_takeover_restores_the_newest_copy_of_each_document(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    active_paths, standby_paths = DataPaths(tmp_path / "a"), DataPaths(tmp_path / "b")
    replica = StateReplica(nats_server.url, SPINE)
    replica.start()
    active = StateStore(active_paths.state_dir, replica=replica)
    active.save("slots", {"accounts": {"acct1": ["005930", "000660"]}})
    active.save("notifier", {"cooldowns": {"gap": "2024-03-04T09:31:00+09:00"}})
    standby = StateStore(standby_paths.state_dir)
    standby.save("scanner", {"stale": True})  # the standby's own, older than the active's copy
    os.utime(standby.path_for("scanner"), (1.0, 1.0))
    active.save("scanner", {"stale": False})
    time.sleep(0.05)
    standby.save("triggers", {"live": ["newer on this disk"]})  # newer than anything in the spine
    assert replica.flush(5.0)
    replica.stop()

    taking_over = StateReplica(nats_server.url, SPINE)
    taking_over.start()
    try:
        restored = taking_over.restore(standby_paths)
    finally:
        taking_over.stop()
    assert sorted(restored) == ["state.notifier", "state.scanner", "state.slots"]
    for name in ("slots", "notifier", "scanner"):
        assert standby.load(name) == active.load(name), name
        assert standby.path_for(name).stat().st_mtime == active.path_for(name).stat().st_mtime
    assert standby.load("triggers") == {"live": ["newer on this disk"]}

    # The disk's newer document went to the spine for the next takeover.
    third_paths = DataPaths(tmp_path / "c")
    third = StateReplica(nats_server.url, SPINE)
    third.start()
    try:
        third.restore(third_paths)
    finally:
        third.stop()
    restored = json.loads((third_paths.state_dir / "triggers.json").read_text())
    assert restored == {"live": ["newer on this disk"]}


def test_a_silenced_replica_writes_nothing_more(nats_server: NatsServer, tmp_path: Path) -> None:
    replica = StateReplica(nats_server.url, SPINE)
    replica.start()
    store = StateStore(DataPaths(tmp_path / "a").state_dir, replica=replica)
    store.save("slots", {"version": 1})
    assert replica.flush(5.0)
    replica.silence()
    store.save("slots", {"version": 2})  # after the lease was lost: the disk only
    replica.stop()
    reader = StateReplica(nats_server.url, SPINE)
    reader.start()
    try:
        reader.restore(DataPaths(tmp_path / "b"))
    finally:
        reader.stop()
    assert StateStore(DataPaths(tmp_path / "b").state_dir).load("slots") == {"version": 1}


def test_a_changed_time_to_live_reaches_the_existing_bucket(nats_server: NatsServer) -> None:
    first = lease(nats_server, "host-a:/data")
    assert first.held.wait(5.0)
    first.release()
    longer = ControlLease(nats_server.url, SPINE, "host-a:/data", TTL * 2)
    longer.start()
    try:
        assert longer.held.wait(5.0)
        assert asyncio.run(bucket_ttl(nats_server.url, longer.bucket)) == TTL * 2
    finally:
        longer.release()


async def bucket_ttl(url: str, bucket: str) -> float | None:
    nc = await nats.connect(url)
    try:
        return (await (await nc.jetstream().key_value(bucket)).status()).ttl
    finally:
        await nc.close()
