"""FetchWorker: a pass's Track A batches made and parsed in a child process, each in a slot from the parent.

Real child processes, real loopback sockets to the KIS simulator. The client's own `requests` session is
observed through a response hook, so a call the child made is one this session never saw.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import threading
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
from kis.fetch_worker import REST_AFTER_FAILURE_SECONDS, SLOTS_PER_ASK, Answer, Failed, FetchWorker, Parsed
from kis.protocol import TrId
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from tools.kis_sim.server import KisSimulator, SimConfig

KEY = "PSworkerAppKey00000000000000000000001"
SECRET = "workerAppSecret+very/secret=="
NO_RETRIES = RateLimitSettings(retry_backoff_seconds=(0.05,), max_retries=0)


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """A manual clock: quotes do not move between the worker's calls and the client's."""
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


class Plan:
    """One `fetch_plan`: the slots asked for and given (as many as asked, or `grant` in all; each at
    `time.monotonic()` + the next of `delays`, or now), the answers."""

    def __init__(self, grant: int | None = None, delays: tuple[float, ...] = ()) -> None:
        self.grant = grant
        self.delays = list(delays)
        self.asks: list[int] = []
        self.slots: list[float] = []
        self.answers: dict[int, Answer] = {}

    def reserve(self, count: int) -> tuple[float, ...]:
        self.asks.append(count)
        if self.grant is not None:
            count = max(0, min(count, self.grant - len(self.slots)))
        now = time.monotonic()
        given = tuple(now + (self.delays.pop(0) if self.delays else 0.0) for _ in range(count))
        self.slots.extend(given)
        return given

    def run(self, worker: FetchWorker, requests_: list[Any]) -> bool:
        return worker.fetch_plan(requests_, self.reserve, self.answers.__setitem__)


class FixedToken:
    """A token source that needs no server, so the batch calls themselves meet what the test set up."""

    def current(self) -> SecretStr:
        return SecretStr("fixed-token")

    def refresh(self, rejected: SecretStr) -> SecretStr:
        return rejected


def client_for(url: str, seen: Seen, *, clock: Any = None, tokens: Any = None) -> KisRestClient:
    account = Account(app_key=SecretStr(KEY), app_secret=SecretStr(SECRET), account_no="12345678")
    return KisRestClient(account, base_url=url, clock=clock, rate_limits=NO_RETRIES,
                         limiters=RateLimiterRegistry(), session=seen.session, tokens=tokens)


def batches_of(sim: KisSimulator, batches: int, size: int = 30) -> list[list[str]]:
    codes = sorted(sim.market.listings)[: batches * size]
    return [codes[first : first + size] for first in range(0, len(codes), size)]


def multi_price_calls(sim: KisSimulator) -> int:
    """intstock-multprice calls the simulator answered successfully."""
    return sim._rest.app.counts()[0].get(TrId.MULTI_PRICE, 0)


def test_the_rows_the_worker_makes_equal_the_rows_made_in_process(
    kis_sim: KisSimulator, worker: FetchWorker
) -> None:
    through, alone = Seen(), Seen()
    client = client_for(kis_sim.rest_url, through, clock=kis_sim.clock)
    in_process = client_for(kis_sim.rest_url, alone, clock=kis_sim.clock, tokens=client.tokens)
    batches = batches_of(kis_sim, 3)
    plan = Plan()

    assert plan.run(worker, client.multi_quote_requests(batches))

    assert sorted(plan.answers) == [0, 1, 2] and plan.asks == [3]  # one ask for the whole plan
    for index, batch in enumerate(batches):
        answer = plan.answers[index]
        assert isinstance(answer, Parsed)
        assert answer.rows == in_process.multi_quote_batch(batch)
        assert answer.lines == tuple(row.json_fields().encode() for row in answer.rows)
        assert [row.symbol for row in answer.rows] == batch
    assert protocol.MULTI_PRICE_PATH not in through.paths  # the child made them, not this session
    assert protocol.TOKEN_PATH in through.paths  # the token stays the parent's business
    assert alone.paths.count(protocol.MULTI_PRICE_PATH) == 3


def test_no_call_is_made_without_a_slot_and_none_given_ends_the_plan(
    kis_sim: KisSimulator, worker: FetchWorker
) -> None:
    client = client_for(kis_sim.rest_url, Seen(), clock=kis_sim.clock)
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 8, size=2))
    before = multi_price_calls(kis_sim)
    plan = Plan(grant=2)

    assert plan.run(worker, requests_)

    assert len(plan.answers) == 2 and all(isinstance(a, Parsed) for a in plan.answers.values())
    assert multi_price_calls(kis_sim) - before == 2
    assert plan.asks == [SLOTS_PER_ASK, min(SLOTS_PER_ASK, 8 - 2)]  # two given; asked again after those

    again = Plan()  # the child takes the next plan as if nothing happened
    assert again.run(worker, requests_[:2]) and len(again.answers) == 2


def test_each_call_starts_in_its_slot_not_before(kis_sim: KisSimulator, worker: FetchWorker) -> None:
    """Slots 0.4 s apart: at no moment has the child made more calls than the slots already begun."""
    client = client_for(kis_sim.rest_url, Seen(), clock=kis_sim.clock)
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 3, size=1))
    before = multi_price_calls(kis_sim)
    plan = Plan(delays=(0.4, 0.8, 1.2))
    samples: list[tuple[float, int]] = []
    running = threading.Event()
    running.set()

    def watch() -> None:
        while running.is_set():
            samples.append((time.monotonic(), multi_price_calls(kis_sim) - before))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert plan.run(worker, requests_)
    finally:
        running.clear()
        watcher.join()

    assert len(plan.answers) == 3 and len(plan.slots) == 3
    for moment, made in samples:
        assert made <= sum(slot <= moment for slot in plan.slots)
    assert multi_price_calls(kis_sim) - before == 3
    assert any(moment < min(plan.slots) for moment, _made in samples)  # the check above saw the first wait


def test_the_worker_runs_at_the_lowest_cpu_priority(worker: FetchWorker) -> None:
    assert worker.pid is not None and worker.pid != os.getpid()
    if hasattr(os, "SCHED_IDLE"):
        assert os.sched_getscheduler(worker.pid) == os.SCHED_IDLE
    else:
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == 19


def test_an_error_answer_is_failed_with_its_status_and_code_and_no_secret(
    kis_sim: KisSimulator, worker: FetchWorker
) -> None:
    client = client_for(kis_sim.rest_url, Seen(), clock=kis_sim.clock)
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 4, size=1))  # the token first
    kis_sim.faults.rate_limit_burst(5)
    plan = Plan()

    assert plan.run(worker, requests_)

    assert 1 <= len(plan.answers) <= 2  # the first failure ends the calls (the other may be in flight)
    for answer in plan.answers.values():
        assert isinstance(answer, Failed)
        assert "EGW00201" in answer.description and answer.description.startswith("HTTP ")
        assert KEY not in answer.description and SECRET not in answer.description


def test_nothing_listening_is_a_failed_answer_naming_no_secret(worker: FetchWorker) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen = Seen()
    client = client_for(f"http://127.0.0.1:{port}", seen, tokens=FixedToken())
    plan = Plan()

    assert plan.run(worker, client.multi_quote_requests([["005930"]]))

    answer = plan.answers[0]
    assert isinstance(answer, Failed) and "connection failed" in answer.description
    assert KEY not in answer.description and SECRET not in answer.description and "fixed-token" not in (
        answer.description)
    assert seen.paths == []


def test_a_dead_worker_ends_the_plan_and_starts_again_only_after_its_rest(
    kis_sim: KisSimulator, warnings: list[str]
) -> None:
    now = [1000.0]
    worker = FetchWorker(1, name="test-fetch", monotonic=lambda: now[0])
    worker.start()
    client = client_for(kis_sim.rest_url, Seen(), clock=kis_sim.clock)
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 4, size=1))
    pid = worker.pid
    assert pid is not None
    plan = Plan()

    def kill_at_the_ask(count: int) -> tuple[float, ...]:
        os.kill(pid, signal.SIGKILL)
        return plan.reserve(count)

    try:
        assert not worker.fetch_plan(requests_, kill_at_the_ask, plan.answers.__setitem__)
        assert plan.answers == {}
        assert worker.pid is None
        assert any("test-fetch" in line and "in process" in line for line in warnings)
        assert not Plan().run(worker, requests_)  # no child: nothing made

        now[0] += REST_AFTER_FAILURE_SECONDS - 1
        worker.start()
        assert worker.pid is None  # still resting: a starved machine is not asked again at once

        now[0] += 1
        worker.start()
        assert worker.pid not in (None, pid)
        again = Plan()
        assert again.run(worker, requests_) and len(again.answers) == 4
    finally:
        worker.close()


def test_close_during_a_plan_ends_it_without_a_warning(kis_sim: KisSimulator, warnings: list[str]) -> None:
    worker = FetchWorker(1, name="test-fetch")
    worker.start()
    client = client_for(kis_sim.rest_url, Seen(), clock=kis_sim.clock)
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 3, size=1))
    pid = worker.pid
    plan = Plan()
    closer = threading.Thread(target=worker.close)

    def close_at_the_ask(count: int) -> tuple[float, ...]:
        closer.start()
        time.sleep(0.2)
        return plan.reserve(count)

    assert not worker.fetch_plan(requests_, close_at_the_ask, plan.answers.__setitem__)
    closer.join(10)

    assert worker.pid is None and not warnings
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
