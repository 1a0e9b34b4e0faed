"""FetchWorker: a pass's Track A batches made and parsed in a child process, each after a permit.

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
from kis.fetch_worker import REST_AFTER_FAILURE_SECONDS, Answer, Failed, FetchWorker, Parsed
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
    """One `fetch_plan`: the permits asked and granted (all of them, or the first `grant`), the answers."""

    def __init__(self, grant: int | None = None) -> None:
        self.grant = grant
        self.asked = 0
        self.answers: dict[int, Answer] = {}

    def permit(self) -> bool:
        self.asked += 1
        return self.grant is None or self.asked <= self.grant

    def run(self, worker: FetchWorker, requests_: list[Any]) -> bool:
        return worker.fetch_plan(requests_, self.permit, self.answers.__setitem__)


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

    assert sorted(plan.answers) == [0, 1, 2] and plan.asked == 3
    for index, batch in enumerate(batches):
        answer = plan.answers[index]
        assert isinstance(answer, Parsed)
        assert answer.rows == in_process.multi_quote_batch(batch)
        assert [row.symbol for row in answer.rows] == batch
    assert protocol.MULTI_PRICE_PATH not in through.paths  # the child made them, not this session
    assert protocol.TOKEN_PATH in through.paths  # the token stays the parent's business
    assert alone.paths.count(protocol.MULTI_PRICE_PATH) == 3


def test_no_call_is_made_without_a_permit_and_a_refusal_ends_the_plan(
    kis_sim: KisSimulator, worker: FetchWorker
) -> None:
    client = client_for(kis_sim.rest_url, Seen(), clock=kis_sim.clock)
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 6, size=2))
    before = multi_price_calls(kis_sim)
    plan = Plan(grant=2)

    assert plan.run(worker, requests_)

    assert len(plan.answers) == 2 and all(isinstance(a, Parsed) for a in plan.answers.values())
    assert multi_price_calls(kis_sim) - before == 2
    assert plan.asked <= 2 + 2  # after the refusal, at most the other caller's ask was pending

    again = Plan()  # the child takes the next plan as if nothing happened
    assert again.run(worker, requests_[:2]) and len(again.answers) == 2


def test_each_call_waits_for_its_own_permit(kis_sim: KisSimulator) -> None:
    """One call in flight: at every ask, the calls made so far are exactly the permits granted before it."""
    client = client_for(kis_sim.rest_url, Seen(), clock=kis_sim.clock)
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 4, size=1))
    before = multi_price_calls(kis_sim)
    plan = Plan()
    seen_at_ask: list[tuple[int, int]] = []

    def watching_permit() -> bool:
        seen_at_ask.append((len(plan.answers), multi_price_calls(kis_sim) - before))
        return plan.permit()

    with FetchWorker(1, name="test-fetch") as worker:
        assert worker.fetch_plan(requests_, watching_permit, plan.answers.__setitem__)

    assert seen_at_ask == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert len(plan.answers) == 4 and multi_price_calls(kis_sim) - before == 4


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
    requests_ = client.multi_quote_requests(batches_of(kis_sim, 1))  # the token first
    kis_sim.faults.rate_limit_burst(5)
    plan = Plan()

    assert plan.run(worker, requests_)

    answer = plan.answers[0]
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

    def kill_after_the_first() -> bool:
        if plan.asked == 1:
            os.kill(pid, signal.SIGKILL)
        return plan.permit()

    try:
        assert not worker.fetch_plan(requests_, kill_after_the_first, plan.answers.__setitem__)
        assert len(plan.answers) <= 1  # whatever came before the kill, and nothing after it
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

    def close_at_the_second() -> bool:
        if plan.asked == 1:
            closer.start()
            time.sleep(0.2)
        return plan.permit()

    assert not worker.fetch_plan(requests_, close_at_the_second, plan.answers.__setitem__)
    closer.join(10)

    assert worker.pid is None and not warnings
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
