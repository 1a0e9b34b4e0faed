"""Tick pipeline: throughput and latency through the real actors, socket to trigger evaluation.

The path is the production one: the blaster's frames arrive on `WSConnectionActor`'s session (receive
thread: `kis.ws_codec.decode`, one `TicksReceived` per socket read stamped `received_mono`), the actor fans
each out to `recorder` (`RecorderActor`: one JSONL line per tick), `triggers` (`TriggerActor`:
`TickDetector` per tick) and `gaps` (`GapRecoveryActor`: `GapDetector` per tick). `notifier` is the real
log-only NotifierActor; `slots` is a sink (the slot manager would change the subscriptions mid-run).

Throughput is measured twice: with frames as the simulator's feed cuts them (one frame per symbol per
50 ms feed step, so `rate x 0.05 / 41` records, at least 1) and with one record per frame (the per-frame
costs at their worst). Latency is measured during a Track A scan, DESIGN.md section 8's condition: the real
ScannerActor makes back-to-back passes over the 1,000-symbol universe, and its ScanCompleted messages reach
the recorder and the trigger actor, as in production; an idle window is the baseline.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from actors.directory import Directory
from actors.gap_recovery import GapRecoveryActor
from actors.notifier import NotifierActor
from actors.recorder import RecorderActor
from actors.scanner import ScannerActor
from actors.triggers import TriggerActor
from actors.ws_connection import WSConnectionActor
from config.settings import ScanSettings, Settings
from kis.fields import H0STCNT0_FIELDS
from kis.protocol import TrId
from kis.ticks import Decoded, TradeFrame
from kis.ws_codec import decode
from kis.ws_session import KisWebSocketSession
from messages.streaming import SetSubscriptions
from runtime.clock import SimulatedClock
from runtime.latency import LatencyRecorder, LatencySummary
from tools.bench.blaster import FrameBook
from tools.bench.harness import (
    ACCOUNT,
    BenchServer,
    Sink,
    Started,
    bench_context,
    timed,
    universe_message,
    wait_for,
    warm_up,
)
from tools.bench.report import Result
from tools.bench.server import BENCH_DATE, BENCH_START, BLAST_TRADE_RATE, SEED
from tools.kis_sim.market import Market

RECORD_WRITTEN = "record_written"
TRIGGER_EVALUATED = "trigger_evaluated"
GAPS_CHECKED = "gaps_checked"
STAGES = (RECORD_WRITTEN, TRIGGER_EVALUATED, GAPS_CHECKED)
FEED_STEP_SECONDS = 0.05
TARGET_THROUGHPUT = 20_000.0
NOMINAL_RATE = 82.0  # 41 symbols x 2 trades/s per key
HIGH_RATE = 5_000.0
P99_NOMINAL_MS = 10.0  # DESIGN.md section 8: arrival -> journal during a scan
P99_HIGH_MS = 20.0
MIN_SEND_SHARE = 0.95  # the blaster must really have offered the rate
SCAN_INTERVAL_SECONDS = 1.0  # passes back to back while the scan benchmark runs
BACKLOG_GROWTH_SECONDS = 0.1  # more backlog growth than this much traffic over a window = not sustained


def records_per_frame(rate: float, symbols: int) -> int:
    return max(1, min(999, round(rate * FEED_STEP_SECONDS / symbols)))


@dataclass(frozen=True, slots=True)
class Step:
    """One offered rate held for a window."""

    rate: float
    records_per_frame: int
    sent_rate: float
    processed_rate: float
    backlog_growth: int
    sustained: bool


class Pipeline:
    """The actors of the tick path, subscribed to the blaster's symbols, with latency stamps per stage."""

    def __init__(self, root: Path, server: BenchServer) -> None:
        self.server = server
        self.root = root
        self.latency = LatencyRecorder()
        self.clock = SimulatedClock(BENCH_START, speed=1.0)
        scan = ScanSettings(interval_seconds=SCAN_INTERVAL_SECONDS)
        settings = Settings().model_copy(update={"scan": scan})
        self.context = bench_context(root, self.clock, rest_url=server.rest_url, ws_url=server.blaster_url,
                                     settings=settings)
        self.scans = 0
        facts = server.info["blast_symbols"]
        self.symbols = tuple(f["symbol"] for f in facts)
        self.actors = Started(Directory(self.clock))
        ws = f"ws.{ACCOUNT}"
        self._sent_before = int(server.command(cmd="status")["records"])
        self.scan_universe = universe_message(self.clock, server.info["universe"])  # outside any window
        try:
            self.actors.start("recorder", timed(RecorderActor, RECORD_WRITTEN, self.latency), self.context)
            self.actors.start("notifier", NotifierActor, self.context)
            self.actors.start("triggers", timed(TriggerActor, TRIGGER_EVALUATED, self.latency), self.context)
            self.actors.start("slots", Sink)
            self.actors.start("universe", Sink)
            self.actors.start("gaps", timed(GapRecoveryActor, GAPS_CHECKED, self.latency), self.context)
            self.actors.start(ws, WSConnectionActor, self.context, ACCOUNT)
            universe = universe_message(self.clock, facts)
            directory = self.actors.directory
            directory.tell("recorder", universe)
            directory.tell("triggers", universe)
            directory.tell(ws, SetSubscriptions(at=self.clock.now(), account=ACCOUNT,
                                                             symbols=self.symbols))
            wait_for(lambda: server.command(cmd="status")["sessions"] >= 1, 20.0, "the blaster subscription")
            time.sleep(0.3)  # the remaining acks
        except BaseException:
            self.actors.stop()
            raise

    def processed(self) -> int:
        """Records every stage has handled (the slowest stage's count)."""
        return min(self.latency.records(stage) for stage in STAGES)

    def sent(self) -> int:
        """Records the blaster sent since this pipeline subscribed (it counts from its own start)."""
        return int(self.server.command(cmd="status")["records"]) - self._sent_before

    def blast(self, rate: float, frame_records: int | None = None) -> int:
        """Offer `rate` records/s in frames of `frame_records` (default: as the simulator's feed frames)."""
        k = frame_records or records_per_frame(rate, len(self.symbols))
        self.server.command(cmd="blast", rate=rate, records_per_frame=k)
        return k

    def quiet(self, timeout: float = 60.0) -> None:
        """Stop the blaster and wait until every stage has caught up with what was sent."""
        self.server.command(cmd="blast", rate=0)
        sent = self.sent()
        wait_for(lambda: self.processed() >= sent, timeout, "the pipeline to drain", pause=0.01)

    def hold(self, rate: float, window: float, warmup: float, frame_records: int | None = None) -> Step:
        """Offer `rate` for `warmup` + `window` seconds; sustained = offered in full, backlog flat."""
        k = self.blast(rate, frame_records)
        time.sleep(warmup)
        sent0, done0, t0 = self.sent(), self.processed(), time.monotonic()
        time.sleep(window)
        sent1, done1, t1 = self.sent(), self.processed(), time.monotonic()
        elapsed = t1 - t0
        growth = (sent1 - done1) - (sent0 - done0)
        sent_rate, processed_rate = (sent1 - sent0) / elapsed, (done1 - done0) / elapsed
        sustained = sent_rate >= MIN_SEND_SHARE * rate and growth <= BACKLOG_GROWTH_SECONDS * rate + 2 * k
        self.quiet()
        return Step(rate, k, sent_rate, processed_rate, growth, sustained)

    def start_scanner(self) -> None:
        """The real ScannerActor, still without a universe."""
        self.actors.start("scanner", ScannerActor, self.context)

    def scan(self) -> None:
        """Passes over the 1,000-symbol universe back to back from now on; their ScanCompleted go to the
        recorder and the trigger actor as in production."""
        self.actors.directory.tell("scanner", self.scan_universe)

    def stop_scanner(self) -> None:
        self.scans += self.context.metrics.count("scans")
        self.actors.stop_one("scanner")

    def stop(self) -> None:
        self.server.command(cmd="blast", rate=0)
        self.actors.stop()


def throughput(pipeline: Pipeline, *, window: float, max_rate: float, parse_rates: dict[str, float],
               frame_records: int | None = None) -> Result:
    """The highest offered rate the pipeline sustained: 5k, 10k, 20k, then +50 % a step until one fails
    (each rate gets a second try, the machine may be busy) or `max_rate` is passed, then one bisection
    between the last two. Frames as the simulator's feed makes them, or of `frame_records` records."""
    steps: list[Step] = []

    def held(rate: float) -> Step:
        for _ in range(2):
            step = pipeline.hold(rate, window, warmup=0.5, frame_records=frame_records)
            steps.append(step)
            if step.sustained:
                break
        return step

    best: Step | None = None
    failed: Step | None = None
    rate = 5_000.0
    while rate <= max_rate:
        step = held(rate)
        if not step.sustained:
            failed = step
            break
        best = step
        rate = rate * 2 if rate < TARGET_THROUGHPUT else rate * 1.5
    if best is not None and failed is not None:
        step = held((best.rate + failed.rate) / 2)
        if step.sustained:
            best = step
    figure = best.rate if best is not None else 0.0
    capped = " (the ladder's cap: more may be possible)" if failed is None else ""
    name = "tick_pipeline_throughput" + (f"_{frame_records}_record_frames" if frame_records else "")
    framing = (f"{frame_records} record(s) per frame" if frame_records
               else f"frames as the simulator's feed cuts them ({FEED_STEP_SECONDS:g} s of one symbol)")
    ceiling = ""
    if "receive" in parse_rates:
        ceiling = (f" the session's receive loop alone (socket, framing and decode, no actors) took in "
                   f"{parse_rates['receive']:,.0f} frames/s of {max_rate:,.0f} offered;")
    tried = "; ".join(
        f"{s.rate:,.0f}/s x{s.records_per_frame}/frame: sent {s.sent_rate:,.0f}/s, processed "
        f"{s.processed_rate:,.0f}/s, backlog {s.backlog_growth:+,d} -> {'ok' if s.sustained else 'no'}"
        for s in steps
    )
    return Result(
        name=name, figure=figure, unit="records/s",
        target=f">= {TARGET_THROUGHPUT:,.0f}", baseline=parse_rates["naive"], met=figure >= TARGET_THROUGHPUT,
        detail=f"{framing}{capped}; baseline: naive parse only (split + zip dicts) of the same frames, one "
               f"thread; kis.ws_codec.decode alone {parse_rates['codec']:,.0f} records/s;{ceiling} "
               f"steps: {tried}",
    )


def receive_ceiling(server: BenchServer, *, seconds: float, rate: float) -> float:
    """Frames/s that `KisWebSocketSession`'s receive loop alone takes in (socket, framing and decode, a
    counter for a callback, no actor) while the blaster offers `rate` one-record frames/s: the ceiling of
    any tick path built on it. Measured before the pipeline's actors subscribe (the blaster feeds every
    subscribed session)."""
    frames = [0]

    def count(value: Decoded) -> None:
        if isinstance(value, TradeFrame):
            frames[0] += 1

    session = KisWebSocketSession(server.blaster_url, SecretStr("bench-receive-ceiling"), count,
                                  name="bench-receive")
    session.connect()
    try:
        session.subscribe(TrId.TRADE.value, server.info["blast_symbols"][0]["symbol"])
        wait_for(lambda: server.command(cmd="status")["sessions"] >= 1, 20.0, "the ceiling's subscription")
        server.command(cmd="blast", rate=rate, records_per_frame=1)
        time.sleep(0.5)
        counted, started = frames[0], time.monotonic()
        time.sleep(seconds)
        received = (frames[0] - counted) / (time.monotonic() - started)
    finally:
        server.command(cmd="blast", rate=0)
        server.command(cmd="disconnect")  # before the close: its handshake would wait behind the backlog
        session.close()
    wait_for(lambda: server.command(cmd="status")["sessions"] == 0, 20.0, "the ceiling's session to end")
    return received


def parse_baseline(pipeline: Pipeline, seconds: float, frame_records: int | None = None) -> dict[str, float]:
    """Records/s of the naive parse (one dict per record from split and zip) and of `kis.ws_codec.decode`,
    on frames built like the blaster's at the target rate, on one thread."""
    market = Market(seed=SEED, trading_date=BENCH_DATE, n_symbols=1200, trade_rate=BLAST_TRADE_RATE)
    book = FrameBook(market, pipeline.symbols, BENCH_START, 10.0)
    frames = book.frames(frame_records or records_per_frame(TARGET_THROUGHPUT, len(pipeline.symbols)))
    return {"naive": _rate_of(naive_parse, frames, seconds), "codec": _rate_of(decode, frames, seconds)}


def naive_parse(frame: str) -> list[dict[str, str]]:
    """The naive way: split the frame, then one dict per record with zip."""
    _flag, _tr_id, count, payload = frame.split("|", 3)
    values = payload.split("^")
    width = len(H0STCNT0_FIELDS)
    return [dict(zip(H0STCNT0_FIELDS, values[i * width:(i + 1) * width], strict=True))
            for i in range(int(count))]


def _rate_of(parse: Any, frames: list[str], seconds: float) -> float:
    records = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for frame in frames:
            records += int(frame[11:14])
            parse(frame)
    return records / (time.perf_counter() - started)


def measure_latency(
    pipeline: Pipeline, rate: float, window: float, *, scanning: bool = False
) -> dict[str, LatencySummary]:
    """Latency summaries per stage for frames that arrived while `rate` was offered for `window` seconds,
    with full Track A scans back to back over the same window when `scanning`."""
    pipeline.blast(rate)
    if scanning:
        pipeline.start_scanner()
    time.sleep(0.5)
    try:
        pipeline.latency.reset()
        if scanning:
            pipeline.scan()
        time.sleep(window)
        summaries = {stage: pipeline.latency.summary(stage) for stage in STAGES}
    finally:
        if scanning:
            pipeline.stop_scanner()
    pipeline.quiet()
    return summaries


def latency_results(pipeline: Pipeline, window: float, rounds: int = 1) -> list[Result]:
    """p99 arrival -> record written and -> trigger evaluated during Track A scans, at the nominal and the
    high rate, against an absolute budget; the baseline is the same p99 with no scan.

    Each rate gets `rounds` rounds of two windows back to back (idle, scanning); a figure is the median of
    its rounds, so one burst of noise from the host moves no figure."""
    warm_up(pipeline.server, pipeline.root / "warm")
    results: list[Result] = []
    for rate, limit in ((NOMINAL_RATE, P99_NOMINAL_MS), (HIGH_RATE, P99_HIGH_MS)):
        idle: list[dict[str, LatencySummary]] = []
        busy: list[dict[str, LatencySummary]] = []
        for _ in range(rounds):
            idle.append(measure_latency(pipeline, rate, window))
            busy.append(measure_latency(pipeline, rate, window, scanning=True))
        framing = records_per_frame(rate, len(pipeline.symbols))
        for stage in (RECORD_WRITTEN, TRIGGER_EVALUATED):
            quiet, scanning = _Rounds(idle, stage), _Rounds(busy, stage)
            results.append(Result(
                name=f"tick_latency_p99_{stage}_at_{rate:.0f}_per_s_during_scan", figure=scanning.p99 * 1000,
                unit="ms", target=f"<= {limit:g}", baseline=quiet.p99 * 1000,
                met=scanning.p99 * 1000 <= limit,
                detail=f"p50 {scanning.p50 * 1000:.2f} ms, max {scanning.max * 1000:.2f} ms, "
                       f"{scanning.count} messages (socket reads) of frames of {framing} record(s), "
                       f"{pipeline.scans} scanner passes so far; {scanning}; baseline: the p99 with no scan "
                       f"({quiet})",
            ))
    return results


class _Rounds:
    """One stage's latency over several rounds' windows: medians of the rounds' p50 and p99, total count,
    overall max; `str` lists the rounds' p99."""

    def __init__(self, windows: list[dict[str, LatencySummary]], stage: str) -> None:
        self.summaries = [window[stage] for window in windows]
        self.p50 = _median([s.p50 for s in self.summaries])
        self.p99 = _median([s.p99 for s in self.summaries])
        self.max = max((s.max for s in self.summaries if s.count), default=math.nan)
        self.count = sum(s.count for s in self.summaries)

    def __str__(self) -> str:
        listed = ", ".join(f"{s.p99 * 1000:.2f}" for s in self.summaries)
        return f"median of {len(self.summaries)} round(s), p99 per round {listed} ms"


def _median(values: list[float]) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return statistics.median(finite) if finite else math.nan
