"""Store workers (`python -m store --shared`): two processes pull from one durable consumer, each message
written by one of them into a real PostgreSQL; one SIGKILLed mid-run costs no row and doubles none."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from spine.server import NatsServer
from store.__main__ import parse_args
from store.postgres import MIGRATIONS, migrate
from store.role import StoreOptions
from store.tables import EVENT_TABLES
from tests.e2e.support import wait_for
from tests.store.spine_facts import INSTANCE, REPO, expected_tables, facts, publish, stop
from tools.pg_server import PostgresServer, postgres_server

ACK_WAIT = "2"


def worker(nats_url: str, postgres_url: str, log_dir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "store", "--nats", nats_url, "--postgres", postgres_url, "--shared",
               "--ack-wait", ACK_WAIT, "--instance", INSTANCE, "--log-dir", str(log_dir)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("OBSERVER_")}
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "console.out").open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def count(url: str, table: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except psycopg.Error:
        return -1


def workers_rows(url: str) -> dict[str, int]:
    """Each worker's status row: how many rows it wrote."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            rows = conn.execute("SELECT component, data_count FROM system_status "
                                "WHERE component LIKE 'store.postgres@%'").fetchall()
    except psycopg.Error:
        return {}
    return {component: count for component, count in rows}


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as running:
        yield running


def fresh_database(server: PostgresServer, name: str) -> str:
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.timeout(120)
def test_two_workers_share_the_consumer_and_one_killed_loses_and_doubles_no_row(
    nats_server: NatsServer, server: PostgresServer, tmp_path: Path
) -> None:
    first, second = list(facts(0, 4_000)), list(facts(4_000, 16_000))
    expected = expected_tables(first + second)
    url = fresh_database(server, "workers")
    one = worker(nats_server.url, url, tmp_path / "one")
    two = worker(nats_server.url, url, tmp_path / "two")
    try:
        assert wait_for(lambda: len(workers_rows(url)) == 2, timeout=60)  # both pulling
        publish(nats_server.url, first)
        first_ticks = len(expected_tables(first)["ticks"])
        assert wait_for(lambda: count(url, "ticks") == first_ticks, timeout=60)
        assert wait_for(lambda: sum(workers_rows(url).values()) == sum(
            len(rows) for rows in expected_tables(first).values()), timeout=15), workers_rows(url)
        assert all(rows > 0 for rows in workers_rows(url).values()), "one worker did all"

        publishing = threading.Thread(target=publish, args=(nats_server.url, second))
        publishing.start()
        assert wait_for(lambda: count(url, "ticks") > first_ticks + 2_000, timeout=60)
        one.kill()
        one.wait(10)
        publishing.join(60)
        assert wait_for(lambda: count(url, "ticks") == len(expected["ticks"]), timeout=60), (
            (tmp_path / "two" / "store.log").read_text()[-3000:])
    finally:
        if one.poll() is None:
            one.kill()
        assert stop(two) == 0
    with psycopg.connect(url) as conn:
        ticks, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol, exchange_time, cum_volume)) FROM ticks").fetchone()
        assert ticks == distinct == len(expected["ticks"])
        for table in EVENT_TABLES:
            rows, distinct = conn.execute(
                f"SELECT count(*), count(DISTINCT stream_seq) FROM {table}").fetchone()
            assert rows == distinct == len(expected.get(table, [])), table


def test_a_worker_needs_postgres_and_no_data_dir(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as both:
        parse_args(["--nats", "nats://x:4222", "--shared", "--data-dir", str(tmp_path)])
    assert both.value.code == 2
    with pytest.raises(ValueError, match="meet in PostgreSQL"):
        StoreOptions(nats_url="nats://x:4222", data_dir=None, shared=True)
    with pytest.raises(SystemExit):
        parse_args(["--nats", "nats://x:4222"])


def test_stores_starting_together_migrate_the_schema_once(server: PostgresServer) -> None:
    url = fresh_database(server, "together")

    def start() -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            return migrate(conn)

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: start(), range(4)))
    assert versions == [len(MIGRATIONS)] * 4
    with psycopg.connect(url) as conn:
        applied = [row[0] for row in conn.execute("SELECT version FROM observer_migrations ORDER BY 1")]
    assert applied == list(range(1, len(MIGRATIONS) + 1))
