"""KOSPI200 futures and options for the simulator, priced from the simulated stock market.

The KOSPI200 index is the market-cap-weighted move of the largest `INDEX_MEMBERS` KOSPI listings since their
previous close, scaled to `prev_level`; it moves once a minute, with the minute closes of the stock market.
Futures are the index carried to their expiry (F = S e^((r-q)T)) plus a small deterministic basis noise,
rounded to 0.05 points; options are Black-Scholes prices of the index with a volatility smile, rounded to
KRX's option ticks (0.01 below 10 points, 0.05 from 10). Everything is deterministic from the market's seed
and trading date, so the same minute always answers the same.

Futures trades for the WebSocket (H0IFCNT0, `trades` and `trade_record`): each minute's bar played as
four trades at `TRADE_SECONDS` (open, the extremes, close) whose volumes sum to the bar's, so candles built
from the stream equal the REST bars of the same minutes (a bar of fewer than four contracts skips trades).

Served: the quarterly futures and monthly option months still trading (expiries on the second Thursday,
moved before a closed day), the regular derivatives session 08:45-15:45 (an expiring contract stops at 15:20),
completed minutes only (the minute in progress is not served), today's bars only (earlier dates hold no
data here), one-minute bars only (FID_HOUR_CLS_CODE 60).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from core.derivatives import ALL_MONTHS, QUARTER_MONTHS, Contract, Kind, listed_contracts
from kis import protocol
from kis.fields import H0IFCNT0_FIELDS
from runtime.clock import KST
from tools.kis_sim.listings import KOSPI, SESSION_MINUTES
from tools.kis_sim.market import Market

INDEX_MEMBERS = 200
PREV_LEVEL = 350.0
RATE, DIVIDEND_YIELD = 0.03, 0.015
STRIKE_STEP = 2.5
STRIKES_EACH_SIDE = 30
CONTRACT_MULTIPLIER = 250_000
"""KRW per index point of one KOSPI200 futures or options contract."""
DERIV_OPEN, DERIV_CLOSE, LAST_DAY_CLOSE = time(8, 45), time(15, 45), time(15, 20)
SESSION_LEAD = 15
"""Derivatives minutes before the stock session opens (08:45-09:00)."""
FUTURES_PRICE_STEP = 0.05
MARKET_FUTURES, MARKET_OPTIONS = "F", "O"
CALL_BOARD, PUT_BOARD = "CO", "PO"
NO_DATA = ("KIOK0560", "조회할 자료가 없습니다.", "7")
MINUTE = timedelta(minutes=1)
TRADE_SECONDS = (0, 15, 30, 45)
"""Where in its minute each of a bar's trades falls."""
_YEAR_SECONDS = 365.0 * 86_400


class QueryError(Exception):
    """A request the endpoint refuses with a business error: (msg_cd, msg1, rt_cd)."""

    def __init__(self, msg_cd: str, msg1: str, rt_cd: str = "2") -> None:
        super().__init__(msg_cd)
        self.msg_cd, self.msg1, self.rt_cd = msg_cd, msg1, rt_cd


def _missing(name: str) -> QueryError:
    return QueryError("OPSQ2001", f"ERROR INPUT FIELD NOT FOUND [{name}]")


def _invalid(what: str) -> QueryError:
    return QueryError("OPSQ2001", f"ERROR : INPUT INVALID_CHECK_{what}")


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def round_to(value: float, step: float) -> float:
    return round(round(value / step) * step, 2)


def option_tick(price: float) -> float:
    return 0.01 if price < 10 else 0.05


def smile(strike: float, spot: float) -> float:
    """The day's implied volatility at a strike: a skew, higher below the index, and a smile on both wings."""
    x = math.log(strike / spot)
    return min(0.8, max(0.08, 0.17 - 0.25 * x + 0.9 * x * x))


@dataclass(frozen=True, slots=True)
class Greeks:
    price: float
    delta: float
    gamma: float
    vega: float
    theta: float
    rho: float


def black_scholes(kind: Kind, spot: float, strike: float, years: float, vol: float) -> Greeks:
    """European price and greeks on the index with a continuous dividend yield (vega and rho per 1 %, theta
    per calendar day)."""
    years = max(years, 60.0 / _YEAR_SECONDS)
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (RATE - DIVIDEND_YIELD + vol * vol / 2) * years) / root
    d2 = d1 - root
    carry, discount = math.exp(-DIVIDEND_YIELD * years), math.exp(-RATE * years)
    gamma = carry * _normal_pdf(d1) / (spot * root)
    vega = spot * carry * _normal_pdf(d1) * math.sqrt(years) / 100
    decay = -spot * carry * _normal_pdf(d1) * vol / (2 * math.sqrt(years))
    if kind is Kind.CALL:
        price = spot * carry * _normal_cdf(d1) - strike * discount * _normal_cdf(d2)
        delta = carry * _normal_cdf(d1)
        theta = decay - RATE * strike * discount * _normal_cdf(d2) + DIVIDEND_YIELD * delta * spot
        rho = strike * years * discount * _normal_cdf(d2) / 100
    else:
        price = strike * discount * _normal_cdf(-d2) - spot * carry * _normal_cdf(-d1)
        delta = -carry * _normal_cdf(-d1)
        theta = decay + RATE * strike * discount * _normal_cdf(-d2) + DIVIDEND_YIELD * delta * spot
        rho = -strike * years * discount * _normal_cdf(-d2) / 100
    return Greeks(price, delta, gamma, vega, theta / 365, rho)


@dataclass(frozen=True, slots=True)
class Bar:
    """One derivatives minute starting at `start`; prices in index points."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    cum_volume: int


@dataclass(frozen=True, slots=True)
class FuturesTick:
    """One simulated futures trade: `cum_volume` counts the day's contracts up to and with it, `high` and
    `low` are the day's so far."""

    code: str
    at: datetime
    price: float
    volume: int
    cum_volume: int
    open: float
    high: float
    low: float


@dataclass(frozen=True, slots=True)
class Listed:
    """One listed futures or option contract of the day."""

    code: str
    kind: Kind
    contract: Contract
    strike: float = 0.0


class Kospi200:
    """The index from the simulated KOSPI listings, one level per stock-session minute."""

    def __init__(self, market: Market, prev_level: float = PREV_LEVEL, members: int = INDEX_MEMBERS) -> None:
        kospi = [listing for listing in market.listings.values() if listing.market == KOSPI]
        chosen = sorted(kospi, key=lambda listing: (-listing.market_cap, listing.code))[:members]
        total = sum(listing.market_cap for listing in chosen) or 1
        self._market = market
        self._weights = [(item.code, item.market_cap / total / item.prev_close) for item in chosen]
        self.prev_level = prev_level
        self._levels: list[float] = []
        self._lock = threading.Lock()

    def level(self, minute: int) -> float:
        """The level at the close of stock minute `minute` (0 is 09:00); before the open, the last close."""
        if minute < 0 or not self._weights:
            return self.prev_level
        minute = min(minute, SESSION_MINUTES - 1)
        with self._lock:
            if len(self._levels) <= minute:
                first = len(self._levels)
                closes = [(self._market.minute_closes(code, minute), w) for code, w in self._weights]
                for m in range(first, minute + 1):
                    self._levels.append(round(self.prev_level * sum(c[m] * w for c, w in closes), 2))
            return self._levels[minute]


class Derivatives:
    """The simulated KOSPI200 futures and options of the market's trading day."""

    def __init__(self, market: Market, prev_level: float = PREV_LEVEL) -> None:
        self.market = market
        self.day: date = market.trading_date
        self.index = Kospi200(market, prev_level)
        self.open = datetime.combine(self.day, DERIV_OPEN, tzinfo=KST)
        futures = listed_contracts(self.day, QUARTER_MONTHS, 3)
        months = listed_contracts(self.day, ALL_MONTHS, 3)
        self._futures_order = [contract.futures_code for contract in futures]
        atm = round(prev_level / STRIKE_STEP) * STRIKE_STEP
        self.strikes = [atm + STRIKE_STEP * k for k in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1)]
        self.listed = {c.futures_code: Listed(c.futures_code, Kind.FUTURES, c) for c in futures}
        for month in months:
            for strike in self.strikes:
                for kind in (Kind.CALL, Kind.PUT):
                    code = month.option_code(kind, strike)
                    self.listed[code] = Listed(code, kind, month, strike)
        self.option_months = {month.option_month: month for month in months}
        self._bars: dict[str, list[Bar]] = {}
        self._lock = threading.Lock()

    # ---- time ----------------------------------------------------------------------------------------

    def _last_minute(self, listed: Listed) -> int:
        """The contract's last derivatives minute of the day (0 is 08:45)."""
        close = LAST_DAY_CLOSE if listed.contract.last_trading_day == self.day else DERIV_CLOSE
        return (close.hour * 60 + close.minute) - (DERIV_OPEN.hour * 60 + DERIV_OPEN.minute) - 1

    def completed_minutes(self, at: datetime) -> int:
        """How many derivatives minutes have closed by `at`."""
        elapsed = (at.astimezone(KST) - self.open) // MINUTE
        total = (DERIV_CLOSE.hour * 60 + DERIV_CLOSE.minute) - (DERIV_OPEN.hour * 60 + DERIV_OPEN.minute)
        return max(0, min(int(elapsed), total))

    def _index_at_close_of(self, minute: int) -> float:
        """The index at the close of derivatives minute `minute`; -1 is before the session."""
        return self.index.level(minute - SESSION_LEAD if minute >= 0 else -1)

    def index_at(self, at: datetime) -> float:
        """The index as of `at`: its level at the close of the last completed minute."""
        return self._index_at_close_of(self.completed_minutes(at) - 1)

    def _years_left(self, listed: Listed, moment: datetime) -> float:
        end = datetime.combine(listed.contract.last_trading_day, LAST_DAY_CLOSE, tzinfo=KST)
        return max(0.0, (end - moment).total_seconds()) / _YEAR_SECONDS

    # ---- prices --------------------------------------------------------------------------------------

    def fair_price(self, listed: Listed, spot: float, moment: datetime) -> float:
        years = self._years_left(listed, moment)
        if listed.kind is Kind.FUTURES:
            return round_to(spot * math.exp((RATE - DIVIDEND_YIELD) * years), FUTURES_PRICE_STEP)
        greeks = black_scholes(listed.kind, spot, listed.strike, years, smile(listed.strike, spot))
        return max(0.01, round_to(greeks.price, option_tick(greeks.price)))

    def greeks(self, listed: Listed, at: datetime) -> tuple[Greeks, float]:
        """The option's greeks and implied volatility as of `at`."""
        spot = self.index_at(at)
        vol = smile(listed.strike, spot)
        return black_scholes(listed.kind, spot, listed.strike, self._years_left(listed, at), vol), vol

    def prev_close(self, listed: Listed) -> float:
        previous = self.open - timedelta(days=1)
        return self.fair_price(listed, self.index.prev_level, previous.replace(hour=15, minute=45))

    @staticmethod
    def _step(listed: Listed, price: float) -> float:
        return FUTURES_PRICE_STEP if listed.kind is Kind.FUTURES else option_tick(price)

    def bars(self, listed: Listed, at: datetime) -> list[Bar]:
        """The contract's completed one-minute bars of the day as of `at`, oldest first."""
        count = min(self.completed_minutes(at), self._last_minute(listed) + 1)
        with self._lock:
            bars = self._bars.setdefault(listed.code, [])
            if len(bars) < count:
                self._extend(listed, bars, count)
            return bars[:count]

    def _extend(self, listed: Listed, bars: list[Bar], count: int) -> None:
        """Walk the contract's minutes from where `bars` ends to `count` bars (deterministic per minute)."""
        previous = bars[-1].close if bars else self.prev_close(listed)
        cum_volume = bars[-1].cum_volume if bars else 0
        base_volume = self._volume_scale(listed)
        for minute in range(len(bars), count):
            start = self.open + minute * MINUTE
            rng = random.Random(f"fuop:{self.market.seed}:{self.day.isoformat()}:{listed.code}:{minute}")
            fair = self.fair_price(listed, self._index_at_close_of(minute), start + MINUTE)
            step = self._step(listed, fair)
            noise = round_to(rng.gauss(0.0, 0.6) * step, step) if listed.kind is Kind.FUTURES else 0.0
            close = max(step, round(fair + noise, 2))
            open_ = previous
            high = round(max(open_, close) + round_to(abs(rng.gauss(0.0, 1.0)) * step, step), 2)
            low = round(max(step, min(open_, close) - round_to(abs(rng.gauss(0.0, 1.0)) * step, step)), 2)
            volume = max(1, int(base_volume * math.exp(rng.gauss(0.0, 0.5))))
            cum_volume += volume
            bars.append(Bar(start, open_, high, low, close, volume, cum_volume))
            previous = close

    def trades(self, code: str, start: datetime, end: datetime) -> list[FuturesTick]:
        """A futures contract's trades at `start <= time < end` (empty for an unknown or option code): each
        minute of its session as four trades at `TRADE_SECONDS`, open, the extreme nearer the open, the other,
        close, with volumes that sum to the minute's bar."""
        listed = self.listed.get(code)
        if listed is None or listed.kind is not Kind.FUTURES:
            return []
        last = min(self.completed_minutes(end) + 1, self._last_minute(listed) + 1)
        first = max(self.completed_minutes(start), 0)
        if first >= last:
            return []
        with self._lock:
            bars = self._bars.setdefault(listed.code, [])
            if len(bars) < last:
                self._extend(listed, bars, last)
            day = bars[:last]
        ticks = []
        for minute in range(first, last):
            bar = day[minute]
            before = day[minute - 1].cum_volume if minute else 0
            high_before = max((b.high for b in day[:minute]), default=bar.open)
            low_before = min((b.low for b in day[:minute]), default=bar.open)
            middle = (bar.high, bar.low) if bar.close < bar.open else (bar.low, bar.high)
            prices = (bar.open, *middle, bar.close)
            share, rest = divmod(bar.volume, len(TRADE_SECONDS))
            high, low, cum = high_before, low_before, before
            for number, (second, price) in enumerate(zip(TRADE_SECONDS, prices, strict=True)):
                volume = share + (1 if number < rest else 0)
                high, low = max(high, price), min(low, price)
                if volume == 0:
                    continue
                cum += volume
                at = bar.start + timedelta(seconds=second)
                if start <= at < end:
                    ticks.append(FuturesTick(code, at, price, volume, cum, day[0].open, high, low))
        return ticks

    def trade_record(self, tick: FuturesTick) -> str:
        """One H0IFCNT0 record of a trade (KIS's 50 columns, `^`-separated)."""
        listed = self.listed[tick.code]
        prev = self.prev_close(listed)
        spot = self.index_at(tick.at)
        theory = self.fair_price(listed, spot, tick.at)
        step = FUTURES_PRICE_STEP
        change = tick.price - prev
        open_hour = self.open.strftime("%H%M%S")
        values = {
            "FUTS_SHRN_ISCD": tick.code, "BSOP_HOUR": tick.at.strftime("%H%M%S"),
            "FUTS_PRDY_VRSS": f"{change:.2f}", "PRDY_VRSS_SIGN": _sign(change),
            "FUTS_PRDY_CTRT": _rate(change, prev), "FUTS_PRPR": f"{tick.price:.2f}",
            "FUTS_OPRC": f"{tick.open:.2f}", "FUTS_HGPR": f"{tick.high:.2f}", "FUTS_LWPR": f"{tick.low:.2f}",
            "LAST_CNQN": str(tick.volume), "ACML_VOL": str(tick.cum_volume),
            "ACML_TR_PBMN": str(int(tick.cum_volume * tick.price * CONTRACT_MULTIPLIER) // 1_000_000),
            "HTS_THPR": f"{theory:.2f}", "MRKT_BASIS": f"{tick.price - spot:.2f}",
            "DPRT": _rate(tick.price - theory, theory), "HTS_OTST_STPL_QTY": str(self.open_interest(listed)),
            "OPRC_HOUR": open_hour, "OPRC_VRSS_PRPR_SIGN": _sign(tick.price - tick.open),
            "OPRC_VRSS_NMIX_PRPR": f"{tick.price - tick.open:.2f}",
            "HGPR_VRSS_PRPR_SIGN": _sign(tick.price - tick.high),
            "HGPR_VRSS_NMIX_PRPR": f"{tick.price - tick.high:.2f}",
            "LWPR_VRSS_PRPR_SIGN": _sign(tick.price - tick.low),
            "LWPR_VRSS_NMIX_PRPR": f"{tick.price - tick.low:.2f}",
            "ESDG": f"{tick.price - theory:.2f}", "THPR_BASIS": f"{theory - spot:.2f}",
            "FUTS_ASKP1": f"{tick.price + step:.2f}", "FUTS_BIDP1": f"{tick.price:.2f}",
            "DYNM_MXPR": f"{tick.price * 1.015:.2f}", "DYNM_LLAM": f"{tick.price * 0.985:.2f}",
            "DYNM_PRC_LIMT_YN": "N",
        }
        blank = {name: "000000" if name.endswith("_HOUR") else "0" for name in H0IFCNT0_FIELDS}
        return "^".join(values.get(name, blank[name]) for name in H0IFCNT0_FIELDS)

    def _volume_scale(self, listed: Listed) -> float:
        """Contracts a minute: the front futures most, the next far less, options by nearness to the money."""
        if listed.kind is Kind.FUTURES:
            return 600.0 / (10 ** self._futures_order.index(listed.code))
        distance = abs(math.log(listed.strike / self.index.prev_level))
        return 400.0 * math.exp(-distance * 25)

    def open_interest(self, listed: Listed) -> int:
        rng = random.Random(f"oi:{self.market.seed}:{self.day.isoformat()}:{listed.code}")
        return int(self._volume_scale(listed) * 60 * rng.uniform(0.7, 1.3))

    # ---- the endpoints -------------------------------------------------------------------------------

    def minute_chart(self, query: Mapping[str, str], at: datetime) -> dict[str, Any]:
        """inquire-time-fuopchartprice: up to 102 one-minute bars ending at FID_INPUT_DATE_1/HOUR_1, newest
        first, with the contract's current state in output1."""
        for name in ("FID_COND_MRKT_DIV_CODE", "FID_INPUT_ISCD", "FID_HOUR_CLS_CODE", "FID_PW_DATA_INCU_YN",
                     "FID_FAKE_TICK_INCU_YN", "FID_INPUT_DATE_1", "FID_INPUT_HOUR_1"):
            if name not in query:
                raise _missing(name)
        market_code = query["FID_COND_MRKT_DIV_CODE"]
        if market_code not in (MARKET_FUTURES, MARKET_OPTIONS):
            raise _invalid("MRKT_DIV_CODE")
        if query["FID_HOUR_CLS_CODE"] != "60":
            raise _invalid("HOUR_CLS_CODE")
        listed = self.listed.get(query["FID_INPUT_ISCD"])
        if listed is None or (market_code == MARKET_FUTURES) != (listed.kind is Kind.FUTURES):
            raise QueryError(*NO_DATA)
        day_text, hour_text = query["FID_INPUT_DATE_1"], query["FID_INPUT_HOUR_1"]
        until = _until(day_text, hour_text, self.day)
        bars = self.bars(listed, at)
        chosen = [bar for bar in bars if until is not None and bar.start <= until]
        chosen = chosen[-protocol.FUOP_MINUTE_BARS_PER_CALL :]
        day = self.day.strftime("%Y%m%d")
        output2 = [
            {
                "stck_bsop_date": day,
                "stck_cntg_hour": bar.start.strftime("%H%M%S"),
                "futs_prpr": f"{bar.close:.2f}",
                "futs_oprc": f"{bar.open:.2f}",
                "futs_hgpr": f"{bar.high:.2f}",
                "futs_lwpr": f"{bar.low:.2f}",
                "cntg_vol": str(bar.volume),
                "acml_tr_pbmn": str(int(bar.cum_volume * bar.close * CONTRACT_MULTIPLIER) // 1000),
            }
            for bar in reversed(chosen)
        ]
        return {"output1": self._chart_summary(listed, bars, at), "output2": output2}

    def _chart_summary(self, listed: Listed, bars: list[Bar], at: datetime) -> dict[str, str]:
        prev = self.prev_close(listed)
        price = bars[-1].close if bars else prev
        volume = bars[-1].cum_volume if bars else 0
        spot, prev_spot = self.index_at(at), self.index.prev_level
        limit = round_to(prev * 0.08, FUTURES_PRICE_STEP)
        oi = self.open_interest(listed)
        theory = self.fair_price(listed, spot, at)
        return {
            "futs_prdy_vrss": f"{price - prev:.2f}",
            "prdy_vrss_sign": _sign(price - prev),
            "futs_prdy_ctrt": _rate(price - prev, prev),
            "futs_prdy_clpr": f"{prev:.2f}",
            "prdy_nmix": f"{prev_spot:.2f}",
            "acml_vol": str(volume),
            "acml_tr_pbmn": str(int(volume * price * CONTRACT_MULTIPLIER) // 1000),
            "hts_kor_isnm": _name(listed),
            "futs_prpr": f"{price:.2f}",
            "futs_shrn_iscd": listed.code,
            "prdy_vol": str(int(self._volume_scale(listed) * 420)),
            "futs_mxpr": f"{prev + limit:.2f}",
            "futs_llam": f"{max(0.01, prev - limit):.2f}",
            "futs_oprc": f"{bars[0].open:.2f}" if bars else "0.00",
            "futs_hgpr": f"{max(bar.high for bar in bars):.2f}" if bars else "0.00",
            "futs_lwpr": f"{min(bar.low for bar in bars):.2f}" if bars else "0.00",
            "futs_prdy_oprc": f"{prev:.2f}",
            "futs_prdy_hgpr": f"{prev:.2f}",
            "futs_prdy_lwpr": f"{prev:.2f}",
            "futs_askp": f"{price + self._step(listed, price):.2f}",
            "futs_bidp": f"{price:.2f}",
            "basis": f"{price - spot:.2f}",
            "kospi200_nmix": f"{spot:.2f}",
            "kospi200_prdy_vrss": f"{spot - prev_spot:.2f}",
            "kospi200_prdy_ctrt": _rate(spot - prev_spot, prev_spot),
            "kospi200_prdy_vrss_sign": _sign(spot - prev_spot),
            "hts_otst_stpl_qty": str(oi),
            "otst_stpl_qty_icdc": "0",
            "tday_rltv": "100.00",
            "hts_thpr": f"{theory:.2f}",
            "dprt": _rate(price - theory, theory),
        }

    def board(self, query: Mapping[str, str], at: datetime) -> dict[str, Any]:
        """display-board-callput: the month's calls (output1) and puts (output2) at every listed strike, from
        the highest strike down, at most 100 each."""
        for name in ("FID_COND_MRKT_DIV_CODE", "FID_COND_SCR_DIV_CODE", "FID_MRKT_CLS_CODE", "FID_MTRT_CNT",
                     "FID_MRKT_CLS_CODE1"):
            if name not in query:
                raise _missing(name)
        if query["FID_COND_MRKT_DIV_CODE"] != MARKET_OPTIONS:
            raise _invalid("MRKT_DIV_CODE")
        if query["FID_MRKT_CLS_CODE"] != CALL_BOARD or query["FID_MRKT_CLS_CODE1"] != PUT_BOARD:
            raise _invalid("MRKT_CLS_CODE")
        month = self.option_months.get(query["FID_MTRT_CNT"])
        if month is None:
            return {"output1": [], "output2": []}
        spot = self.index_at(at)
        limit = protocol.OPTION_BOARD_MAX_ROWS
        strikes = sorted(self.strikes, reverse=True)[:limit]
        calls = [self.listed[month.option_code(Kind.CALL, strike)] for strike in strikes]
        puts = [self.listed[month.option_code(Kind.PUT, strike)] for strike in strikes]
        return {
            "output1": [self._board_row(listed, spot, at) for listed in calls],
            "output2": [self._board_row(listed, spot, at) for listed in puts],
        }

    def _board_row(self, listed: Listed, spot: float, at: datetime) -> dict[str, str]:
        greeks, vol = self.greeks(listed, at)
        bars = self.bars(listed, at)
        price = bars[-1].close if bars else self.prev_close(listed)
        prev = self.prev_close(listed)
        volume = bars[-1].cum_volume if bars else 0
        intrinsic = max(0.0, spot - listed.strike if listed.kind is Kind.CALL else listed.strike - spot)
        tick = option_tick(price)
        theory = max(0.0, greeks.price)
        atm = abs(listed.strike - spot) <= STRIKE_STEP / 2
        in_money = intrinsic > 0
        opened = bars[0].open if bars else 0.0
        return {
            "acpr": f"{listed.strike:.2f}",
            "unch_prpr": f"{price:.2f}",
            "optn_shrn_iscd": listed.code,
            "optn_prpr": f"{price:.2f}",
            "optn_prdy_vrss": f"{price - prev:.2f}",
            "prdy_vrss_sign": _sign(price - prev),
            "optn_prdy_ctrt": _rate(price - prev, prev),
            "optn_bidp": f"{max(0.01, price - tick):.2f}",
            "optn_askp": f"{price + tick:.2f}",
            "tmvl_val": f"{max(0.0, price - intrinsic):.2f}",
            "nmix_sdpr": f"{self.index.prev_level:.2f}",
            "acml_vol": str(volume),
            "seln_rsqn": "0",
            "shnu_rsqn": "0",
            "acml_tr_pbmn": str(int(volume * price * CONTRACT_MULTIPLIER) // 1000),
            "hts_otst_stpl_qty": str(self.open_interest(listed)),
            "otst_stpl_qty_icdc": "0",
            "delta_val": f"{greeks.delta:.4f}",
            "gama": f"{greeks.gamma:.4f}",
            "vega": f"{greeks.vega:.4f}",
            "theta": f"{greeks.theta:.4f}",
            "rho": f"{greeks.rho:.4f}",
            "hts_ints_vltl": f"{vol * 100:.2f}",
            "invl_val": f"{intrinsic:.2f}",
            "esdg": f"{price - theory:.2f}",
            "dprt": _rate(price - theory, theory),
            "hist_vltl": f"{smile(listed.strike, self.index.prev_level) * 100:.2f}",
            "hts_thpr": f"{theory:.2f}",
            "optn_oprc": f"{opened:.2f}",
            "optn_hgpr": f"{max((bar.high for bar in bars), default=0.0):.2f}",
            "optn_lwpr": f"{min((bar.low for bar in bars), default=0.0):.2f}",
            "optn_mxpr": f"{prev * 3 + 1:.2f}",
            "optn_llam": "0.01",
            "atm_cls_name": "ATM" if atm else "ITM" if in_money else "OTM",
            "rgbf_vrss_icdc": "0",
            "total_askp_rsqn": "0",
            "total_bidp_rsqn": "0",
            "futs_antc_cnpr": "0.00",
            "futs_antc_cntg_vrss": "0.00",
            "antc_cntg_vrss_sign": "3",
            "antc_cntg_prdy_ctrt": "0.00",
        }


def _until(day_text: str, hour_text: str, today: date) -> datetime | None:
    """The last bar start to answer: FID_INPUT_DATE_1 and FID_INPUT_HOUR_1; None for an earlier date."""
    if len(day_text) != 8 or not day_text.isdigit() or len(hour_text) != 6 or not hour_text.isdigit():
        raise QueryError("OPSQ2002", "ERROR : INPUT INVALID_CHECK_FIELD_LENGTH")
    try:
        asked = date(int(day_text[:4]), int(day_text[4:6]), int(day_text[6:]))
        moment = time(int(hour_text[:2]), int(hour_text[2:4]), int(hour_text[4:]))
    except ValueError:
        raise _invalid("DATE") from None
    if asked < today:
        return None
    if asked > today or moment == time(0, 0):
        return datetime.combine(today, time(23, 59, 59), tzinfo=KST)
    return datetime.combine(today, moment, tzinfo=KST)


def _name(listed: Listed) -> str:
    month = f"{listed.contract.year % 100:02d}{listed.contract.month:02d}"
    match listed.kind:
        case Kind.FUTURES:
            return f"KOSPI200 F {month}"
        case Kind.CALL:
            return f"KOSPI200 C {month} {listed.strike:.1f}"
        case _:
            return f"KOSPI200 P {month} {listed.strike:.1f}"


def _sign(change: float) -> str:
    return protocol.SIGN_RISE if change > 0 else protocol.SIGN_FALL if change < 0 else protocol.SIGN_FLAT


def _rate(part: float, whole: float) -> str:
    return f"{part / whole * 100:.2f}" if whole else "0.00"


__all__ = ["Derivatives", "FuturesTick", "Kospi200", "QueryError", "black_scholes", "smile"]
