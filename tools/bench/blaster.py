"""A KIS-compatible WebSocket server that sends pre-built H0STCNT0 frames at a set rate (the tick benchmarks).

The simulator's own feed follows its market clock, so it cannot offer, say, exactly 20,000 records/s.
The blaster acks subscribes the way KIS does and, when told `blast(rate, records_per_frame)`, writes
frames to every subscribed session so that `rate` records/s leave on average (checked every `STEP`
seconds). Frames are formatted once, up front, from the simulator's market model, one symbol per frame
as KIS sends them, and replayed in a cycle. Writes never wait for the client: a client that falls behind
shows up as a growing backlog (records sent minus records processed), which is what the throughput
benchmark looks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from core.subscriptions import AckCode
from kis.protocol import TrId
from tools.kis_sim.frames import TradeFormatter
from tools.kis_sim.market import Market
from tools.kis_sim.ws import ack_text

STEP = 0.002
MAX_CLIENT_BUFFER = 256 * 1024 * 1024


class FrameBook:
    """Formatted H0STCNT0 records of some symbols over a stretch of the simulated day, and the frame cycles
    built from them (one list of frames per records-per-frame)."""

    def __init__(self, market: Market, symbols: Sequence[str], start: datetime, seconds: float) -> None:
        formatter = TradeFormatter(market.listings)
        end = start + timedelta(seconds=seconds)
        self.symbols = tuple(symbols)
        self.records = {
            code: [formatter.record(trade) for trade in market.trades(code, start, end)] for code in symbols
        }
        self._cycles: dict[int, list[str]] = {}

    def frames(self, records_per_frame: int) -> list[str]:
        """Frames of `records_per_frame` records of one symbol each, the symbols taking turns."""
        if not 1 <= records_per_frame <= 999:
            raise ValueError(f"records per frame must be 1..999, got {records_per_frame}")
        cycle = self._cycles.get(records_per_frame)
        if cycle is None:
            k = records_per_frame
            per_symbol = [
                [f"0|{TrId.TRADE.value}|{k:03d}|" + "^".join(records[i:i + k])
                 for i in range(0, len(records) - k + 1, k)]
                for records in self.records.values()
            ]
            cycle = [frame for turn in _interleave(per_symbol) for frame in turn]
            if not cycle:
                raise ValueError("the frame book holds no records; widen the stretch or raise the trade rate")
            self._cycles[records_per_frame] = cycle
        return cycle


def _interleave(lists: list[list[str]]) -> list[list[str]]:
    longest = max((len(items) for items in lists), default=0)
    return [[items[i] for items in lists if i < len(items)] for i in range(longest)]


class FrameBlaster:
    """The server. `start()` listens on loopback; `blast` and `status` may be called from any thread."""

    def __init__(self, book: FrameBook, host: str = "127.0.0.1", port: int = 0) -> None:
        self._book = book
        self._host = host
        self._port = port
        self._sessions: set[ServerConnection] = set()
        self._subscribed: set[ServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self.records_sent = 0
        self.frames_sent = 0
        self.max_buffer = 0

    @property
    def url(self) -> str:
        return f"ws://{self._host}:{self._port}"

    def start(self, timeout: float = 10.0) -> FrameBlaster:
        self._thread = threading.Thread(target=self._run, name="bench-blaster", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the frame blaster did not start in time")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10.0)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10.0)

    def blast(self, rate: float, records_per_frame: int) -> None:
        """Send `rate` records/s from now on (0 stops), in frames of `records_per_frame` records."""
        frames = self._book.frames(records_per_frame)
        self._call(self._start_blast(rate, frames, records_per_frame))

    def disconnect(self) -> None:
        """Abort every client connection at once, whatever is still buffered for it (a close handshake
        behind megabytes of unsent frames can take many seconds)."""
        self._call(self._abort_all())

    def status(self) -> dict[str, int]:
        return {"records": self.records_sent, "frames": self.frames_sent, "max_buffer": self.max_buffer,
                "sessions": len(self._subscribed)}

    def _call(self, coroutine: object) -> None:
        if self._loop is None:
            raise RuntimeError("the frame blaster is not running")
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10.0)  # type: ignore[arg-type]

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        loop.run_until_complete(self._open())
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _open(self) -> None:
        self._server = await serve(self._handle, self._host, self._port, compression=None,
                                   ping_interval=None, max_size=64 * 1024)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _abort_all(self) -> None:
        for ws in list(self._sessions):
            ws.transport.abort()

    async def _shutdown(self) -> None:
        await self._start_blast(0.0, [], 1)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _handle(self, ws: ServerConnection) -> None:
        self._sessions.add(ws)
        try:
            async for message in ws:
                answer = self._answer(ws, message)
                if answer:
                    await ws.send(answer)
        except ConnectionClosed:
            pass
        finally:
            self._sessions.discard(ws)
            self._subscribed.discard(ws)

    def _answer(self, ws: ServerConnection, message: str | bytes) -> str | None:
        """KIS acks: every subscribe succeeds (the blaster sends its own symbols regardless)."""
        try:
            request = json.loads(message)
            header = request["header"]
            if header.get("tr_id") == TrId.PINGPONG.value:
                return None
            body_input = request["body"]["input"]
            tr_id, tr_key = str(body_input["tr_id"]), str(body_input["tr_key"])
            subscribe = str(header.get("tr_type")) == "1"
        except (ValueError, KeyError, TypeError, AttributeError):
            return ack_text("", "", AckCode.INTERNAL_ERROR, detail=" (JSON PARSING ERROR)")
        if subscribe:
            self._subscribed.add(ws)
            return ack_text(tr_id, tr_key, AckCode.SUBSCRIBE_SUCCESS, output=("0" * 32, "0" * 16))
        return ack_text(tr_id, tr_key, AckCode.UNSUBSCRIBE_SUCCESS, output=("0" * 32, "0" * 16))

    async def _start_blast(self, rate: float, frames: list[str], records_per_frame: int) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if rate > 0 and frames:
            self._task = asyncio.get_running_loop().create_task(
                self._blast(rate, frames, records_per_frame))

    async def _blast(self, rate: float, frames: list[str], k: int) -> None:
        """Keep the records sent at `rate` x elapsed time; never burst to catch up more than one step."""
        position = 0
        started = time.monotonic()
        sent = 0
        while True:
            await asyncio.sleep(STEP)
            now = time.monotonic()
            due = int(rate * (now - started))
            if due - sent > rate * 0.1:  # the loop was starved: give the missed time up, do not burst
                started = now - sent / rate
                due = sent
            clients = [ws for ws in self._subscribed if ws.state is State.OPEN]
            while sent < due:
                frame = frames[position]
                position = (position + 1) % len(frames)
                if clients:
                    broadcast(clients, frame)
                    self.frames_sent += len(clients)
                    self.records_sent += k * len(clients)
                sent += k
            for ws in clients:
                buffered = ws.transport.get_write_buffer_size()
                self.max_buffer = max(self.max_buffer, buffered)
                if buffered > MAX_CLIENT_BUFFER:
                    ws.transport.abort()
