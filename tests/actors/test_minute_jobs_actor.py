"""MinuteJobsActor against the simulator over real sockets: a few simulated minutes of streamed and watched
stock candles, futures bars, the option board and its matrix in Parquet; the same rows in a real PostgreSQL
that is stopped mid-run and restarted (nothing lost, nothing doubled); the candle check after the close."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from actors.minute_jobs import MinuteJobsActor
from config.settings import PipelineSettings
from core.dolpha1 import Bar, Level, signals
from messages.alerts import AlertRaised, SystemAlert
from messages.streaming import SetSubscriptions
from runtime.clock import KST
from store.tables import KEYS, KOSPI200_FUTURES_TABLE, KOSPI200_FUTURES_TRADES_TABLE, KOSPI200_MATRIX_TABLE
from tests.actors.data_plane_support import DataPlane, wait_until
from tools.kis_sim.server import KisSimulator, SimConfig
from tools.pg_server import PostgresServer, postgres_server

WAIT = 60.0
FRONT, NEXT = "101V03", "101V06"


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    return dataclasses.replace(kis_sim_config, start=clock_time(10, 0, 50), speed=30.0)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def start_jobs(plane: DataPlane, pipeline: PipelineSettings, postgres_url: str | None = None) -> Any:
    settings = plane.context.settings.model_copy(update={
        "pipeline": pipeline, "postgres_url": None if postgres_url is None else SecretStr(postgres_url),
    })
    plane.context = dataclasses.replace(plane.context, settings=settings)
    ref = MinuteJobsActor.start("minute_jobs", plane.directory, plane.context, tick_seconds=0.1)
    plane.directory.register("minute_jobs", ref)
    plane.barrier("minute_jobs")
    return ref


def stream(plane: DataPlane, symbols: tuple[str, ...]) -> None:
    plane.start_ws()
    plane.tell("ws.acct1", SetSubscriptions(at=plane.sim.clock.now(), account="acct1", symbols=symbols))
    plane.wait_confirmed(symbols)


def parquet(plane: DataPlane, table: str) -> list[dict[str, Any]]:
    folder = plane.context.paths.parquet_dir / table
    files = sorted(folder.glob("date=*/*.parquet"))
    if not files:
        return []
    return pa.concat_tables([pq.read_table(path) for path in files]).to_pylist()


def keys(table: str, rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(row[name] for name in KEYS[table]) for row in rows)


def test_a_few_minutes_of_candles_and_matrices_reach_parquet(tmp_path: Path, kis_sim: KisSimulator) -> None:
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers("recorder", "triggers", "gaps", "notifier")
    streamed, watched = plane.symbols(2), plane.symbols(1, skip=10)
    stream(plane, streamed)
    ref = start_jobs(plane, PipelineSettings(stock_candles=True, derivatives=True, candle_check=False,
                                             watchlist=watched))
    assert wait_until(lambda: plane.metrics.count(f"rows_{KOSPI200_FUTURES_TABLE}") >= 6, WAIT)
    ref.stop()

    stocks = parquet(plane, "stocks_1m")
    by_symbol: dict[str, list[datetime]] = {}
    for row in stocks:
        by_symbol.setdefault(row["symbol"], []).append(row["timestamp"])
    assert set(by_symbol) == {*streamed, *watched}
    minutes = sorted(by_symbol[watched[0]])
    assert len(minutes) >= 3 and minutes[0] <= datetime(2024, 3, 4, 10, 1)
    steps = [b - a for a, b in itertools.pairwise(minutes)]
    assert steps == [timedelta(minutes=1)] * (len(minutes) - 1)  # every closed minute once, none skipped
    assert all(sorted(found) == minutes for found in by_symbol.values())  # the same closed minutes each
    assert max(keys("stocks_1m", stocks).values()) == 1
    assert {row["source"] for row in stocks} == {"kis"}  # KIS's bar wins once it is there
    with plane.context.rest_client("acct1") as client:
        bar = client.minute_bars(streamed[0], since=minutes[0].time(), until=minutes[0].time())[0]
    first = next(row for row in stocks if row["symbol"] == streamed[0] and row["timestamp"] == minutes[0])
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        bar.open, bar.high, bar.low, bar.close, bar.volume)

    futures = parquet(plane, KOSPI200_FUTURES_TABLE)
    assert Counter(row["symbol"] for row in futures) == {FRONT: len(minutes), NEXT: len(minutes)}
    assert max(keys(KOSPI200_FUTURES_TABLE, futures).values()) == 1
    chain = parquet(plane, "option_chain_raw")
    assert {row["timestamp"] for row in chain} == set(minutes)
    matrix = parquet(plane, KOSPI200_MATRIX_TABLE)
    assert Counter(row["timestamp"] for row in matrix) == dict.fromkeys(minutes, 5)
    signals = parquet(plane, "dolpha1_signal")
    assert keys("dolpha1_signal", signals) == keys("dolpha1_signal", stocks) and signals


def test_postgres_outage_loses_nothing_and_doubles_nothing(
    tmp_path: Path, kis_sim: KisSimulator, postgres: PostgresServer
) -> None:
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers("recorder", "triggers", "gaps", "notifier")
    watched = plane.symbols(2)
    ref = start_jobs(
        plane,
        PipelineSettings(stock_candles=True, derivatives=True, candle_check=False, watchlist=watched,
                         flush_minutes=1, postgres_retry_seconds=(0.2, 0.5, 1.0)),
        postgres.url,
    )

    def in_postgres(table: str) -> int:
        with psycopg.connect(postgres.url, connect_timeout=2) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    assert wait_until(lambda: in_postgres(KOSPI200_FUTURES_TABLE) >= 4, WAIT)
    postgres.stop()
    written = plane.metrics.count(f"rows_{KOSPI200_FUTURES_TABLE}")
    assert wait_until(lambda: plane.metrics.count(f"rows_{KOSPI200_FUTURES_TABLE}") >= written + 4, WAIT)
    alerts = plane.received("notifier", SystemAlert)
    assert [alert.key for alert in alerts] == ["postgres"]
    postgres.start()
    total = plane.metrics.count(f"rows_{KOSPI200_FUTURES_TABLE}")
    assert wait_until(lambda: in_postgres(KOSPI200_FUTURES_TABLE) >= total, WAIT)
    ref.stop()

    assert len(plane.received("notifier", SystemAlert)) == 1  # one alert for the outage
    with psycopg.connect(postgres.url) as conn:
        for table in ("stocks_1m", KOSPI200_FUTURES_TABLE, "option_chain_raw", KOSPI200_MATRIX_TABLE,
                      "dolpha1_signal"):
            stored = parquet(plane, table)
            assert stored and max(keys(table, stored).values()) == 1
            columns = ", ".join(KEYS[table])
            found = Counter(conn.execute(f"SELECT {columns} FROM {table}").fetchall())
            assert found == keys(table, stored), table


def test_rows_a_run_stopped_during_an_outage_could_not_deliver_reach_postgres_at_the_next_start(
    tmp_path: Path, kis_sim: KisSimulator, postgres: PostgresServer
) -> None:
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers("recorder", "triggers", "gaps", "notifier")
    settings = PipelineSettings(stock_candles=False, derivatives=True, candle_check=False,
                                postgres_retry_seconds=(0.2, 0.5))
    postgres.stop()
    ref = start_jobs(plane, settings, postgres.url)
    assert wait_until(lambda: plane.metrics.count(f"rows_{KOSPI200_FUTURES_TABLE}") >= 4, WAIT)
    ref.stop()  # its waiting rows are only in Parquet now
    plane.directory.unregister("minute_jobs")
    postgres.start()
    ref = start_jobs(plane, settings, postgres.url)
    total = plane.metrics.count(f"rows_{KOSPI200_FUTURES_TABLE}") + 2
    assert wait_until(lambda: plane.metrics.count(f"rows_{KOSPI200_FUTURES_TABLE}") >= total, WAIT)
    ref.stop()
    with psycopg.connect(postgres.url) as conn:
        for table in (KOSPI200_FUTURES_TABLE, "option_chain_raw", KOSPI200_MATRIX_TABLE):
            stored = parquet(plane, table)
            found = Counter(conn.execute(f"SELECT {', '.join(KEYS[table])} FROM {table}").fetchall())
            assert found == keys(table, stored) and max(found.values()) == 1, table


def test_the_candle_check_refills_the_day_after_the_close(
    tmp_path: Path, kis_sim_config: SimConfig, postgres: PostgresServer
) -> None:
    config = dataclasses.replace(kis_sim_config, start=clock_time(15, 44, 20), speed=30.0)
    with KisSimulator(config) as sim:
        plane = DataPlane(tmp_path, sim)
        plane.peers("recorder", "triggers", "gaps", "notifier")
        ref = start_jobs(plane, PipelineSettings(stock_candles=False, derivatives=True, candle_check=True),
                         postgres.url)
        assert wait_until(lambda: "candle_checks" in plane.metrics.snapshot(), WAIT)
        snapshot = plane.metrics.snapshot()
        ref.stop()
    assert (snapshot["candle_checks"], snapshot["candle_checks_incomplete"]) == (2, 0)
    futures = parquet(plane, KOSPI200_FUTURES_TABLE)
    assert Counter(row["symbol"] for row in futures) == {FRONT: 420, NEXT: 420}
    assert max(keys(KOSPI200_FUTURES_TABLE, futures).values()) == 1
    day = {row["timestamp"] for row in futures}
    assert min(day) == datetime(2024, 3, 4, 8, 45) and max(day) == datetime(2024, 3, 4, 15, 44)
    assert all(stamp.tzinfo is None for stamp in day)  # the pipeline's tables hold KST wall time
    folder = plane.context.paths.parquet_dir / KOSPI200_FUTURES_TABLE
    assert [path.name for path in folder.glob("date=*/*.parquet")] == ["day.parquet"]  # compacted
    with psycopg.connect(postgres.url) as conn:
        status = conn.execute("SELECT component, status, message, data_count FROM system_status"
                              " ORDER BY component").fetchall()
        assert int(conn.execute(f"SELECT count(*) FROM {KOSPI200_FUTURES_TABLE}").fetchone()[0]) == 840
    assert status == [(f"candles:{KOSPI200_FUTURES_TABLE}:{code}", "ok", "420 of 420 candles", 420)
                      for code in (FRONT, NEXT)]
    report = json.loads(plane.context.paths.candle_report(datetime(2024, 3, 4).date()).read_text())
    assert report["incomplete"] == 0
    assert [(c["table"], c["symbol"], c["found"], c["missing"]) for c in report["checks"]] == [
        (KOSPI200_FUTURES_TABLE, code, 420, []) for code in (FRONT, NEXT)]


def test_dolpha1_signals_raise_alerts_as_computed_from_the_stored_candles(
    tmp_path: Path, kis_sim_config: SimConfig
) -> None:
    config = dataclasses.replace(kis_sim_config, start=clock_time(10, 0, 50), speed=60.0)
    with KisSimulator(config) as sim:
        plane = DataPlane(tmp_path, sim)
        plane.peers("recorder", "triggers", "gaps", "notifier")
        watched = plane.symbols(8, skip=20)
        settings = PipelineSettings(stock_candles=True, derivatives=False, candle_check=False,
                                    watchlist=watched, signal_alerts="monitor")
        ref = start_jobs(plane, settings)
        assert wait_until(lambda: plane.metrics.count("stock_candles") >= 8 * 12, WAIT)
        ref.stop()  # a restart: the next incarnation goes on from the day's stored candles
        plane.directory.unregister("minute_jobs")
        ref = start_jobs(plane, settings)
        assert wait_until(lambda: plane.metrics.count("stock_candles") >= 8 * 26, WAIT)
        ref.stop()
        plane.barrier("notifier")
    stocks = sorted(parquet(plane, "stocks_1m"), key=lambda row: row["timestamp"])
    expected = set()
    for symbol in watched:
        mine = [row for row in stocks if row["symbol"] == symbol]
        bars = [Bar(r["timestamp"].replace(tzinfo=KST), r["high"], r["low"], r["close"], r["volume"])
                for r in mine]
        expected |= {(symbol, f"dolpha1_{s.level}_{s.side}", s.minute + timedelta(minutes=1))
                     for s in signals(symbol, bars) if s.changed and s.level is not Level.NONE}
    raised = {(m.alert.symbol, m.alert.signal, m.alert.at) for m in plane.received("notifier", AlertRaised)}
    assert expected and raised == expected
    stored = {(row["symbol"], row["timestamp"]): row["vwap"] for row in parquet(plane, "dolpha1_signal")}
    for symbol in watched:
        mine = [row for row in stocks if row["symbol"] == symbol]
        bars = [Bar(r["timestamp"], r["high"], r["low"], r["close"], r["volume"]) for r in mine]
        for signal in signals(symbol, bars):  # the session's VWAP across the restart
            assert stored[(symbol, signal.minute)] == pytest.approx(signal.vwap)


def test_the_front_future_streams_on_a_free_registration_and_yields_to_stocks(
    tmp_path: Path, kis_sim: KisSimulator
) -> None:
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers("recorder", "triggers", "gaps", "notifier")
    start_jobs(plane, PipelineSettings(stock_candles=False, derivatives=False, candle_check=False,
                                       futures_trades=True))
    few = plane.symbols(2)
    stream(plane, few)
    assert wait_until(lambda: kis_sim.ws.registered("H0IFCNT0") == {FRONT}, WAIT)
    assert wait_until(lambda: plane.metrics.count(f"rows_{KOSPI200_FUTURES_TRADES_TABLE}") >= 6, WAIT)

    full = plane.symbols(41)  # the key's 41 registrations all go to stocks: the future is released first
    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=full))
    plane.wait_confirmed(full)
    assert kis_sim.ws.registered("H0IFCNT0") == set() and plane.status().refused == ()
    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=few))
    plane.wait_confirmed(few)
    assert wait_until(lambda: kis_sim.ws.registered("H0IFCNT0") == {FRONT}, WAIT)  # room again
    plane.barrier("ws.acct1")
    plane.directory.ref("minute_jobs").stop()

    trades = parquet(plane, KOSPI200_FUTURES_TRADES_TABLE)
    assert trades and {row["symbol"] for row in trades} == {FRONT}
    assert max(keys(KOSPI200_FUTURES_TRADES_TABLE, trades).values()) == 1
    assert all(row["timestamp"].tzinfo is None and row["timestamp"].second % 15 == 0 for row in trades)
    ordered = sorted(trades, key=lambda row: row["cum_volume"])
    assert [row["timestamp"] for row in ordered] == sorted(row["timestamp"] for row in trades)
    assert all(row["low"] <= row["price"] <= row["high"] for row in trades)
