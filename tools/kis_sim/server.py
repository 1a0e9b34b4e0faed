"""`KisSimulator`: one market, one fault switchboard and one clock behind a REST and a WebSocket server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from types import TracebackType

from runtime.clock import KST, Clock, SimulatedClock, SystemClock
from tools.kis_sim.accounts import FILL_SIDES, Accounts
from tools.kis_sim.faults import Faults
from tools.kis_sim.market import Market
from tools.kis_sim.rest import RestServer
from tools.kis_sim.scenario import Scenario
from tools.kis_sim.sent_log import SentLog
from tools.kis_sim.ws import PONG_TIMEOUT, Fill, WsServer

SIDES = FILL_SIDES


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that shapes a simulator run. `date=None` means today in KST; ports 0 pick free ones.

    `speed` is simulated seconds per real second (0: a manual clock moved only by `clock.advance`);
    `wall_clock` ignores date/start/speed and follows the real KST time. Intervals are real seconds.
    `require_pong_echo` closes a WebSocket session that leaves a PINGPONG unanswered (neither echoed nor
    returned in a pong frame) for `pong_timeout` seconds, as real KIS does (off by default, so raw test
    clients need not answer).
    """

    seed: int = 1
    date: date | None = None
    start: time = time(9, 0)
    speed: float = 1.0
    wall_clock: bool = False
    scenario: Path | None = None
    sent_log: Path | None = None
    n_symbols: int = 1200
    trade_rate: float = 2.0
    pingpong_interval: float = 10.0
    feed_interval: float = 0.05
    book_interval: float = 1.0
    host: str = "127.0.0.1"
    rest_port: int = 0
    ws_port: int = 0
    require_pong_echo: bool = False
    pong_timeout: float = PONG_TIMEOUT


class KisSimulator:
    """The KIS simulator: `start()` serves REST and WebSocket on loopback, `stop()` ends both (idempotent)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config = config or SimConfig()
        self.clock: Clock = _make_clock(config)
        trading_date = self.clock.now().date() if config.wall_clock or config.date is None else config.date
        scenario = Scenario.load(config.scenario) if config.scenario is not None else None
        self.market = Market(
            seed=config.seed,
            trading_date=trading_date,
            scenario=scenario,
            n_symbols=config.n_symbols,
            trade_rate=config.trade_rate,
        )
        self.faults = Faults()
        self.accounts = Accounts(self.market, self.faults, self.clock, seed=config.seed)
        self._sent_log: SentLog | None = None
        self._rest = RestServer(
            self.market, self.accounts, self.faults, self.clock, host=config.host, port=config.rest_port
        )
        self._ws: WsServer | None = None
        self._started = False

    @property
    def rest_url(self) -> str:
        return self._rest.url

    @property
    def ws_url(self) -> str:
        if self._ws is None:
            raise RuntimeError("the simulator is not started")
        return self._ws.url

    @property
    def ws(self) -> WsServer:
        if self._ws is None:
            raise RuntimeError("the simulator is not started")
        return self._ws

    def start(self) -> KisSimulator:
        if self._started:
            raise RuntimeError("KisSimulator already started")
        self._started = True
        config = self.config
        if config.sent_log is not None:
            self._sent_log = SentLog(config.sent_log)
        self._ws = WsServer(
            self.market,
            self.accounts,
            self.faults,
            self.clock,
            host=config.host,
            port=config.ws_port,
            pingpong_interval=config.pingpong_interval,
            feed_interval=config.feed_interval,
            book_interval=config.book_interval,
            sent_log=self._sent_log,
            require_pong_echo=config.require_pong_echo,
            pong_timeout=config.pong_timeout,
            derivatives=self._rest.app.derivatives,
        )
        try:
            self._rest.start()
            self._ws.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.stop()
        self._rest.stop()
        if self._sent_log is not None:
            self._sent_log.close()
            self._sent_log = None

    def ready_line(self) -> str:
        return f"READY rest={self.rest_url} ws={self.ws_url}"

    def fill(self, app_key: str, symbol: str, side: str, qty: int, price: int) -> int:
        """Report an execution of `qty` x `symbol` at `price` to `app_key`'s notice subscribers and book it
        into the account's holdings (the balance inquiry shows it; see `Accounts.apply_fill`).

        Returns how many encrypted H0STCNI0/H0STCNI9 frames were sent (0 when nobody subscribed). A sell of
        more than the account holds is refused with ValueError, before anything is booked or sent.
        """
        if side not in SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if qty <= 0 or price <= 0:
            raise ValueError(f"fill needs a positive quantity and price, got {qty} x {price}")
        listing = self.market.listings.get(symbol)
        if listing is None:
            raise ValueError(f"unknown symbol {symbol!r}")
        account = self.accounts.known(app_key)
        if account is None:
            raise ValueError("no account has used this app key yet")
        fill = Fill(
            symbol=symbol,
            side=side,
            qty=qty,
            price=price,
            at=self.clock.now(),
            order_no=self.ws.next_order_no(),
            account_no=f"{account.account_number}{account.product_code}",
            symbol_name=listing.name,
        )
        return self.ws.fill(app_key, fill)

    def __enter__(self) -> KisSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _make_clock(config: SimConfig) -> Clock:
    if config.wall_clock:
        return SystemClock()
    day = config.date or SystemClock().now().date()
    return SimulatedClock(datetime.combine(day, config.start, tzinfo=KST), speed=config.speed)
