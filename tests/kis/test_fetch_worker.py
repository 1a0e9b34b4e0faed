"""The REST client with a FetchWorker: the Track A batch made and parsed in a child process.

Real child processes, real loopback sockets to the KIS simulator. The client's own `requests` session is
observed through a response hook, so a call that went through the worker is one this session never saw.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import time as clock_time
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from config.accounts import Account
from config.settings import RateLimitSettings
from kis import protocol
from kis.errors import KisRateLimited, KisTransportError
from kis.fetch_worker import REST_AFTER_FAILURE_SECONDS, FetchWorker
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from tools.kis_sim.server import KisSimulator, SimConfig

KEY = "PSworkerAppKey00000000000000000000001"
SECRET = "workerAppSecret+very/secret=="
NO_RETRIES = RateLimitSettings(retry_backoff_seconds=(0.05,), max_retries=0)


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """A manual clock: quotes do not move between the two clients' calls."""
    return dataclasses.replace(kis_sim_config, speed=0.0, start=clock_time(11, 0))


@pytest.fixture
def worker() -> Iterator[FetchWorker]:
    with FetchWorker(2, name="test-fetch") as started:
        yield started


class Seen:
    """The paths a client's own session called."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.paths: list[str] = []
        self.session.hooks["response"].append(lambda response, *_a, **_k: self.paths.append(
            requests.utils.urlparse(response.url).path))


def client_for(url: str, seen: Seen, *, worker: FetchWorker | None, clock: Any = None,
               tokens: Any = None) -> KisRestClient:
    account = Account(app_key=SecretStr(KEY), app_secret=SecretStr(SECRET), account_no="12345678")
    return KisRestClient(account, base_url=url, clock=clock, rate_limits=NO_RETRIES,
                         limiters=RateLimiterRegistry(), session=seen.session, worker=worker, tokens=tokens)


def symbols_of(sim: KisSimulator, n: int) -> list[str]:
    return sorted(sim.market.listings)[:n]


def test_rows_made_in_the_worker_equal_the_rows_made_in_process(
    kis_sim: KisSimulator, worker: FetchWorker
) -> None:
    codes = symbols_of(kis_sim, 30)
    through, alone = Seen(), Seen()
    via_worker = client_for(kis_sim.rest_url, through, worker=worker, clock=kis_sim.clock)
    in_process = client_for(kis_sim.rest_url, alone, worker=None, clock=kis_sim.clock,
                            tokens=via_worker.tokens)

    rows = via_worker.multi_quote_batch(codes)

    assert rows == in_process.multi_quote_batch(codes)
    assert [row.symbol for row in rows] == codes
    assert protocol.MULTI_PRICE_PATH not in through.paths  # the worker made it, not this session
    assert protocol.TOKEN_PATH in through.paths  # the token stays the parent's business
    assert alone.paths.count(protocol.MULTI_PRICE_PATH) == 1


def test_the_worker_runs_at_the_lowest_cpu_priority(kis_sim: KisSimulator, worker: FetchWorker) -> None:
    client_for(kis_sim.rest_url, Seen(), worker=worker, clock=kis_sim.clock).multi_quote_batch(
        symbols_of(kis_sim, 3))

    assert worker.pid is not None and worker.pid != os.getpid()
    if hasattr(os, "SCHED_IDLE"):
        assert os.sched_getscheduler(worker.pid) == os.SCHED_IDLE
    else:
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == 19


def test_an_error_answer_comes_back_raw_and_raises_as_in_process(
    kis_sim: KisSimulator, worker: FetchWorker
) -> None:
    seen = Seen()
    client = client_for(kis_sim.rest_url, seen, worker=worker, clock=kis_sim.clock)
    client.multi_quote_batch(symbols_of(kis_sim, 1))  # token first
    kis_sim.faults.rate_limit_burst(5)

    with pytest.raises(KisRateLimited) as caught:
        client.multi_quote_batch(symbols_of(kis_sim, 30))

    assert caught.value.msg_cd == "EGW00201"
    assert protocol.MULTI_PRICE_PATH not in seen.paths
    assert KEY not in str(caught.value) and SECRET not in str(caught.value)


def test_nothing_listening_is_a_transport_error_naming_no_secret(worker: FetchWorker) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen = Seen()
    client = client_for(f"http://127.0.0.1:{port}", seen, worker=worker, tokens=FixedToken())
    with pytest.raises(KisTransportError) as caught:
        client.multi_quote_batch(["005930"])

    text = str(caught.value)
    assert "connection failed" in text and protocol.MULTI_PRICE_PATH in text
    assert KEY not in text and SECRET not in text
    assert seen.paths == []


class FixedToken:
    """A token source that needs no server, so the batch call itself meets the closed port."""

    def current(self) -> SecretStr:
        return SecretStr("fixed-token")

    def refresh(self, rejected: SecretStr) -> SecretStr:
        return rejected


def test_a_dead_worker_leaves_the_calls_to_the_client_and_starts_again_after_its_rest(
    kis_sim: KisSimulator, warnings: list[str]
) -> None:
    now = [1000.0]
    worker = FetchWorker(2, name="test-fetch", monotonic=lambda: now[0])
    worker.start()
    seen = Seen()
    client = client_for(kis_sim.rest_url, seen, worker=worker, clock=kis_sim.clock)
    codes = symbols_of(kis_sim, 30)
    first = client.multi_quote_batch(codes)
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while worker.pid is not None and time.monotonic() < deadline:
        time.sleep(0.01)

    try:
        assert client.multi_quote_batch(codes) == first
        assert seen.paths.count(protocol.MULTI_PRICE_PATH) == 1  # made in process this time
        assert any("test-fetch" in line and "in process" in line for line in warnings)

        now[0] += REST_AFTER_FAILURE_SECONDS - 1
        worker.start()
        assert worker.pid is None  # still resting: a starved machine is not asked again at once
        assert client.multi_quote_batch(codes) == first
        assert seen.paths.count(protocol.MULTI_PRICE_PATH) == 2

        now[0] += 1
        worker.start()
        assert worker.pid not in (None, pid)
        assert client.multi_quote_batch(codes) == first
        assert seen.paths.count(protocol.MULTI_PRICE_PATH) == 2  # the new child made it
    finally:
        worker.close()


def test_close_ends_the_child(kis_sim: KisSimulator) -> None:
    worker = FetchWorker(1)
    worker.start()
    client_for(kis_sim.rest_url, Seen(), worker=worker, clock=kis_sim.clock).multi_quote_batch(
        symbols_of(kis_sim, 2))
    pid = worker.pid
    assert pid is not None

    worker.close()

    assert worker.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
