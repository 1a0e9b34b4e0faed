"""The store role (`python -m store`) against a real nats-server and PostgreSQL: what is published on the
spine lands in Parquet (and the database) row for row, and neither a kill -9 of the store nor a database
outage loses or doubles a row."""

from __future__ import annotations

import asyncio
from collections import Counter

import nats
import psycopg
import pytest

from spine.server import NatsServer
from spine.subjects import Subjects
from store.parquet import COMPACTED
from store.role import DATABASE_ALERT_KEY
from tests.e2e.support import wait_for
from tests.store.spine_facts import (
    INSTANCE,
    expected_tables,
    facts,
    parquet_rows,
    parquet_table,
    publish,
    stop,
    store_process,
    stored_rows,
)
from tools.pg_server import postgres_server

EVENT_TABLES = ("ticks", "snapshots", "triggers", "slot_changes", "overflow", "gaps", "alerts",
                "phase_changes", "health")


@pytest.mark.timeout(120)
def test_published_rows_land_in_parquet_row_for_row(nats_server: NatsServer, tmp_path) -> None:
    items = list(facts(0, 2_000))
    publish(nats_server.url, items)
    expected = expected_tables(items)
    assert set(expected) == set(EVENT_TABLES)
    data = tmp_path / "data"
    process = store_process(nats_server.url, data, tmp_path / "store.out")
    try:
        assert wait_for(
            lambda: all(parquet_rows(data, t) == len(expected[t]) for t in expected), timeout=60
        ), (tmp_path / "store.out").read_text()
    finally:
        assert stop(process) == 0, (tmp_path / "store.out").read_text()
    for table, rows in expected.items():
        assert stored_rows(data, table) == rows, table
        files = list((data / "observer" / "parquet" / table).glob("date=*/*.parquet"))
        assert [path.name for path in files] == [COMPACTED], table  # compacted at the stop
    ticks = parquet_table(data, "ticks")
    assert ticks.schema.field("symbol").type == "string" and "000000" in ticks["symbol"].to_pylist()
    times = ticks["exchange_time"].to_pylist()
    assert times == sorted(times)  # the day's file is in time order
    assert str(ticks.schema.field("exchange_time").type) == "timestamp[us, tz=Asia/Seoul]"


@pytest.mark.timeout(180)
def test_a_store_killed_mid_stream_catches_up_with_nothing_lost_or_doubled(
    nats_server: NatsServer, tmp_path
) -> None:
    first, second = list(facts(0, 20_000)), list(facts(20_000, 3_000))
    publish(nats_server.url, first)
    data, out = tmp_path / "data", tmp_path / "store.out"
    process = store_process(nats_server.url, data, out)
    try:
        assert wait_for(lambda: parquet_rows(data, "ticks") > 0, timeout=60), out.read_text()
    finally:
        process.kill()
        process.wait(timeout=10)
    assert parquet_rows(data, "ticks") < 20_000 + 40, "the store had finished before it was killed"
    publish(nats_server.url, second)
    expected = expected_tables(first + second)
    process = store_process(nats_server.url, data, out)
    try:
        assert wait_for(
            lambda: all(parquet_rows(data, t) == len(expected[t]) for t in expected), timeout=90
        ), out.read_text()
    finally:
        assert stop(process) == 0, out.read_text()
    for table, rows in expected.items():
        assert stored_rows(data, table) == rows, table
    leftovers = [path for path in (data / "observer").rglob("*.parquet") if path.name != COMPACTED]
    assert not leftovers  # the killed run's parts were compacted with the rest at the stop


@pytest.mark.timeout(240)
def test_a_database_outage_costs_no_row_doubles_none_and_alerts_once(
    nats_server: NatsServer, tmp_path
) -> None:
    batches = [list(facts(0, 3_000)), list(facts(3_000, 3_000)), list(facts(6_000, 3_000))]
    data, out = tmp_path / "data", tmp_path / "store.out"
    with postgres_server() as server:
        process = store_process(nats_server.url, data, out, "--postgres", server.url)
        try:

            def in_database(table: str) -> int:
                try:
                    with psycopg.connect(server.url, connect_timeout=3) as conn:
                        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                except psycopg.Error:
                    return -1

            publish(nats_server.url, batches[0])
            assert wait_for(lambda: in_database("ticks") == 3_000 + 6, timeout=60), out.read_text()
            server.stop("fast")
            publish(nats_server.url, batches[1])
            assert wait_for(lambda: "unreachable" in out.read_text(), timeout=30), out.read_text()
            assert wait_for(lambda: parquet_rows(data, "ticks") == 6_000 + 12, timeout=60)  # Parquet goes on
            server.start()
            publish(nats_server.url, batches[2])
            expected = expected_tables([item for batch in batches for item in batch])
            alert = 1  # the store's own alert of the outage, stored like any other
            assert wait_for(lambda: in_database("ticks") == len(expected["ticks"]), timeout=90), (
                out.read_text()
            )
            assert wait_for(lambda: in_database("alerts") == len(expected["alerts"]) + alert, timeout=30)
            with psycopg.connect(server.url) as conn:
                for table in EVENT_TABLES:
                    count, distinct = conn.execute(
                        f"SELECT count(*), count(DISTINCT stream_seq) FROM {table}"
                    ).fetchone()
                    extra = alert if table == "alerts" else 0
                    assert count == distinct == len(expected[table]) + extra, table
                alerts = conn.execute(
                    "SELECT text FROM alerts WHERE key = %s", (DATABASE_ALERT_KEY,)
                ).fetchall()
                assert len(alerts) == 1 and "unreachable" in alerts[0][0]
                assert "observer-test" not in alerts[0][0]  # the password never leaves the URL

            def status() -> dict[str, tuple[str, int]]:
                with psycopg.connect(server.url) as conn:
                    rows = conn.execute("SELECT component, status, data_count FROM system_status").fetchall()
                return {component: (state, count) for component, state, count in rows}

            rows = sum(len(rows) for rows in expected.values()) + alert
            assert wait_for(lambda: status().get("store.postgres") == ("running", rows), timeout=15), status()
            assert status()["store.parquet"][0] == "running"
        finally:
            assert stop(process) == 0, out.read_text()
    log = (tmp_path / "store.log").read_text()  # everything; the console has the warnings only
    assert log.count("is unreachable") == 1 and out.read_text().count("is unreachable") == 1, log
    assert "is back after" in log
    assert [row["key"] for row in stored_rows(data, "alerts")].count(DATABASE_ALERT_KEY) == 1


@pytest.mark.timeout(120)
def test_a_stream_made_anew_numbers_from_1_and_its_rows_are_still_taken(
    nats_server: NatsServer, tmp_path
) -> None:
    data, out = tmp_path / "data", tmp_path / "store.out"
    before, after = list(facts(0, 300)), list(facts(300, 200))
    for published in (before, before + after):
        publish(nats_server.url, published[len(before) if published is not before else 0 :])
        ticks = len(expected_tables(published)["ticks"])
        process = store_process(nats_server.url, data, out)
        try:
            assert wait_for(lambda: parquet_rows(data, "ticks") == ticks, timeout=60), out.read_text()  # noqa: B023
        finally:
            assert stop(process) == 0, out.read_text()
        asyncio.run(delete_stream(nats_server.url))
    expected = expected_tables(before + after)
    for table, rows in expected.items():
        stored = parquet_table(data, table).drop_columns(["stream_seq"]).to_pylist()
        assert Counter(tuple(row.items()) for row in stored) == Counter(tuple(row.items()) for row in rows), (
            table
        )
    assert "was made anew" in out.read_text()


async def delete_stream(url: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().delete_stream(Subjects(INSTANCE).stream_name)
    await nc.close()
