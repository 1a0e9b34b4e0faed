"""The derivatives minute job against the simulator over real sockets, its matrix checked against the chain
it came from, and its rows written twice to a real PostgreSQL (the replay writes nothing)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime
from datetime import time as clock_time

import psycopg
import pytest
from pydantic import SecretStr

from config.accounts import Account
from core.option_matrix import atm_strike
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from pipeline.derivatives_minute import CHAIN_TABLE, derivatives_minute
from runtime.clock import KST
from store.postgres import migrate, upsert
from store.tables import DOLPHA1_SIGNAL, KOSPI200_FUTURES_TABLE, KOSPI200_MATRIX_TABLE, TABLES, to_table
from tests.kis.test_rest_client import Recorder
from tools.kis_sim.futures import Derivatives
from tools.kis_sim.server import KisSimulator, SimConfig
from tools.pg_server import postgres_server

NOW = datetime(2024, 3, 4, 11, 0, 30, tzinfo=KST)
MINUTE = datetime(2024, 3, 4, 10, 59, tzinfo=KST)


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    return dataclasses.replace(kis_sim_config, speed=0.0, start=clock_time(11, 0, 30))


@pytest.fixture
def client(kis_sim: KisSimulator) -> Iterator[KisRestClient]:
    account = Account(app_key=SecretStr("PSjobKey"), app_secret=SecretStr("job-secret"))
    with KisRestClient(account, base_url=kis_sim.rest_url, clock=kis_sim.clock,
                       limiters=RateLimiterRegistry()) as rest:
        yield rest


def test_one_minute_of_futures_board_and_matrix(kis_sim: KisSimulator, client: KisRestClient) -> None:
    rows = derivatives_minute(client, kis_sim.clock)
    assert rows.minute == MINUTE
    futures = rows.tables[KOSPI200_FUTURES_TABLE]
    assert [(row["symbol"], row["timestamp"]) for row in futures] == [("101V03", MINUTE), ("101V06", MINUTE)]
    derivatives = Derivatives(kis_sim.market)
    assert futures[0]["close"] == derivatives.bars(derivatives.listed["101V03"], NOW)[-1].close
    chain = rows.tables[CHAIN_TABLE]
    assert len(chain) == 122 and {row["month"] for row in chain} == {"202403"}
    matrix = {row["metric_type"]: row for row in rows.tables[KOSPI200_MATRIX_TABLE]}
    assert list(matrix) == ["price", "iv", "delta", "open_interest", "volume"]
    index = derivatives.index_at(NOW)
    atm = atm_strike(index)
    assert matrix["price"]["underlying_price"] == index and matrix["price"]["atm_strike"] == atm
    by_side_strike = {(row["side"], row["strike"]): row for row in chain}
    for metric, field in (("price", "price"), ("iv", "iv"), ("delta", "delta"),
                          ("open_interest", "open_interest"), ("volume", "volume")):
        row = matrix[metric]
        assert row["c_atm"] == by_side_strike[("C", atm)][field]
        assert row["c_itm3"] == by_side_strike[("C", atm - 7.5)][field]
        assert row["c_otm10"] == by_side_strike[("C", atm + 25.0)][field]
        assert row["p_itm2"] == by_side_strike[("P", atm + 5.0)][field]
        assert row["p_otm1"] == by_side_strike[("P", atm - 2.5)][field]


def test_outside_the_session_there_is_no_minute_and_no_call(kis_sim: KisSimulator) -> None:
    recorder = Recorder()
    account = Account(app_key=SecretStr("PSjobKey"), app_secret=SecretStr("job-secret"))
    outside = (datetime(2024, 3, 4, 8, 45, 30, tzinfo=KST), datetime(2024, 3, 4, 15, 46, 5, tzinfo=KST))
    with KisRestClient(account, base_url=kis_sim.rest_url, clock=kis_sim.clock,
                       limiters=RateLimiterRegistry(), session=recorder.session) as client:
        for moment in outside:
            kis_sim.clock.set(moment)
            rows = derivatives_minute(client, kis_sim.clock)
            assert all(batch == [] for batch in rows.tables.values())
    recorder.session.close()
    assert recorder.exchanges == []


def test_the_rows_go_to_postgres_and_parquet_and_a_replay_writes_nothing(
    kis_sim: KisSimulator, client: KisRestClient
) -> None:
    rows = derivatives_minute(client, kis_sim.clock)
    for table, batch in rows.tables.items():
        assert to_table(TABLES[table], batch).num_rows == len(batch)
    assert to_table(DOLPHA1_SIGNAL, []).num_rows == 0
    with postgres_server() as server, psycopg.connect(server.url, autocommit=True) as conn:
        migrate(conn)
        written = {table: upsert(conn, table, batch) for table, batch in rows.tables.items()}
        assert written == {table: len(batch) for table, batch in rows.tables.items()}
        again = derivatives_minute(client, kis_sim.clock)
        assert {table: upsert(conn, table, batch) for table, batch in again.tables.items()} == \
            dict.fromkeys(rows.tables, 0)
        stamp = conn.execute("SELECT DISTINCT timestamp FROM option_matrices_kospi200").fetchall()
        assert stamp == [(datetime(2024, 3, 4, 10, 59),)]
