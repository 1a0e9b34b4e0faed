"""The market model: a deterministic universe, ticks that aggregate exactly into bars, scenario effects."""

from __future__ import annotations

import itertools
import threading
from datetime import date, datetime, time, timedelta

import holidays
import pytest

from runtime.clock import KST
from tools.kis_sim.listings import HISTORY_DAYS, RECENT_DAYS, build_universe, price_limits, tick_size
from tools.kis_sim.market import Market, Trade
from tools.kis_sim.scenario import Scenario

DAY = date(2026, 3, 10)
SMALL = 150


def at(hh: int, mm: int, ss: int = 0, us: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hh, mm, ss, us, tzinfo=KST)


@pytest.fixture(scope="module")
def full() -> Market:
    return Market(seed=7, trading_date=DAY)


@pytest.fixture(scope="module")
def small() -> Market:
    return Market(seed=7, trading_date=DAY, n_symbols=SMALL)


def _liquid(market: Market, count: int) -> list[str]:
    return [code for code, listing in market.listings.items() if not listing.halted][:count]


def _isin_valid(isin: str) -> bool:
    digits = "".join(str(int(ch, 36)) for ch in isin)
    total = 0
    for position, ch in enumerate(reversed(digits)):
        value = int(ch) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def test_default_universe_looks_like_krx(full: Market) -> None:
    listings = full.listings
    assert len(listings) == 1200
    assert all(len(code) == 6 and code.isdigit() for code in listings)
    assert listings["005930"].name == "삼성전자" and listings["005930"].market == "KOSPI"
    assert len({listing.name for listing in listings.values()}) == 1200
    markets = {listing.market for listing in listings.values()}
    assert markets == {"KOSPI", "KOSDAQ"}
    cheap = sum(listing.prev_close < 4_000 for listing in listings.values())
    halted = sum(listing.halted for listing in listings.values())
    managed = sum(listing.managed for listing in listings.values())
    assert 50 < cheap < 600 and 0 < halted < 60 and 0 < managed < 80
    for listing in listings.values():
        assert listing.prev_close % tick_size(listing.prev_close) == 0
        assert listing.market_cap == listing.prev_close * listing.listed_shares // 100_000_000
        assert _isin_valid(listing.isin) and listing.isin[3:9] == listing.code


def test_listing_statistics_agree_with_the_daily_history(full: Market) -> None:
    calendar = holidays.financial_holidays("XKRX", years=[2025, 2026])
    for code in list(full.listings)[::40]:
        listing, bars = full.listings[code], full.history(code)
        assert len(bars) == HISTORY_DAYS
        assert all(bar.day < DAY and bar.day.weekday() < 5 and bar.day not in calendar for bar in bars)
        assert [bar.day for bar in bars] == sorted({bar.day for bar in bars})
        assert listing.prev_close == bars[-1].close
        assert listing.prev_volume == bars[-1].volume
        assert listing.avg_volume_20d == sum(bar.volume for bar in bars[-20:]) // 20
        pairs = zip(bars[-15:-1], bars[-14:], strict=True)
        true_ranges = [max(bar.high, prev.close) - min(bar.low, prev.close) for prev, bar in pairs]
        assert listing.atr_14 == round(sum(true_ranges) / 14)
        for bar in bars:
            assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high


def test_history_is_one_walk_of_more_than_100_trading_days_built_the_same_in_any_order(full: Market) -> None:
    assert HISTORY_DAYS > 100 + 25  # a second daily-bar page with room to spare
    codes = list(full.listings)[::60]
    fresh = build_universe(7, DAY, len(full.listings)).history
    for code in reversed(codes):  # the older days are built on first read, here in another order
        assert fresh[code] == full.history(code)
    for code in codes:
        bars = full.history(code)
        assert len(bars) == HISTORY_DAYS
        for previous, bar in itertools.pairwise(bars):
            upper, lower = price_limits(previous.close)
            assert lower <= bar.open <= upper and lower <= bar.close <= upper, (code, bar.day)
            assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
            assert bar.volume > 0 or bar.day >= bars[-3].day  # only a halted symbol's last days stand still
    assert len(fresh) == len(full.listings) and list(fresh) == list(full.listings)
    assert RECENT_DAYS >= 20 + 15  # the 20-day averages and the 14-day ATR never reach the older days


def test_same_seed_same_market_and_smaller_universes_are_prefixes(full: Market, small: Market) -> None:
    again = Market(seed=7, trading_date=DAY, n_symbols=SMALL)
    other = Market(seed=8, trading_date=DAY, n_symbols=SMALL)
    assert again.listings == small.listings
    assert list(small.listings) == list(full.listings)[:SMALL]
    assert all(full.listings[code] == small.listings[code] for code in small.listings)
    assert other.listings != small.listings
    code = _liquid(small, 1)[0]
    window = (at(10, 0), at(10, 5))
    assert again.trades(code, *window) == small.trades(code, *window)
    assert small.trades(code, *window) == full.trades(code, *window)
    assert other.trades("005930", *window) != small.trades("005930", *window)


def test_trades_respect_the_window_and_split_cleanly(small: Market) -> None:
    code = "005930"
    start, middle, end = at(10, 0), at(10, 2, 17, 345_678), at(10, 5)
    trades = small.trades(code, start, end)
    assert trades and all(start < trade.time <= end for trade in trades)
    assert [trade.time for trade in trades] == sorted(trade.time for trade in trades)
    assert small.trades(code, start, middle) + small.trades(code, middle, end) == trades
    assert small.trades(code, at(8, 0), at(9, 0)) == []
    assert small.trades(code, at(15, 30), at(18, 0)) == []
    assert small.trades(code, end, start) == []
    last = small.trades(code, at(15, 29), at(15, 35))
    assert last and last[-1].time < at(15, 30)


def _check_minute(market: Market, code: str, minute: datetime) -> int:
    bars = {bar.start: bar for bar in market.minute_bars(code, minute + timedelta(minutes=1), minute.time())}
    bar = bars[minute]
    just_before = minute - timedelta(microseconds=1)
    end = minute + timedelta(seconds=59, microseconds=999_999)
    trades = market.trades(code, just_before, end)
    if not trades:
        assert bar.volume == 0 and bar.open == bar.high == bar.low == bar.close
        return 0
    prices = [trade.price for trade in trades]
    assert (bar.open, bar.high, bar.low, bar.close) == (prices[0], max(prices), min(prices), prices[-1])
    assert bar.volume == sum(trade.volume for trade in trades)
    assert trades[-1].cum_volume == bar.cum_volume
    assert trades[-1].cum_value == bar.cum_value
    return len(trades)


def test_ticks_aggregate_exactly_into_minute_bars(small: Market) -> None:
    seen = 0
    for code in _liquid(small, 6):
        for minute in (at(9, 0), at(9, 1), at(11, 37), at(15, 29)):
            seen += _check_minute(small, code, minute)
    assert seen > 1000


def test_trade_fields_are_consistent_running_values(small: Market) -> None:
    for code in _liquid(small, 4):
        listing = small.listings[code]
        upper, lower = price_limits(listing.prev_close)
        trades = small.trades(code, at(8, 59), at(9, 20))
        assert trades[0].open == trades[0].price
        running_high = running_low = trades[0].price
        previous: Trade | None = None
        for trade in trades:
            running_high, running_low = max(running_high, trade.price), min(running_low, trade.price)
            assert (trade.open, trade.high, trade.low) == (trades[0].price, running_high, running_low)
            assert lower <= trade.price <= upper and trade.price % tick_size(trade.price) == 0
            assert trade.prev_close == listing.prev_close and trade.side in ("1", "5")
            assert trade.bid1 < trade.ask1 and trade.price in (trade.ask1, trade.bid1)
            if previous is not None:
                assert trade.cum_volume == previous.cum_volume + trade.volume
                assert trade.cum_value >= previous.cum_value
            previous = trade


def test_quote_is_the_state_after_the_last_trade(small: Market) -> None:
    code = "005930"
    moment = at(13, 14, 15, 500_000)
    trades = small.trades(code, at(8, 0), moment)
    quote = small.quote(code, moment)
    last = trades[-1]
    assert (quote.price, quote.volume, quote.value) == (last.price, last.cum_volume, last.cum_value)
    assert (quote.open, quote.high, quote.low) == (last.open, last.high, last.low)
    assert (quote.ask1, quote.bid1) == (last.ask1, last.bid1)
    assert not quote.halted


def test_before_the_open_quotes_show_the_previous_close(small: Market) -> None:
    code = "005930"
    quote = small.quote(code, at(8, 30))
    listing = small.listings[code]
    assert quote.price == listing.prev_close and quote.volume == 0 and quote.open == 0
    assert small.minute_bars(code, at(8, 59, 59), time(15, 30)) == []
    assert [bar.day for bar in small.daily_bars(code, date(2026, 1, 1), DAY, at=at(8, 59))] == [
        bar.day for bar in small.history(code) if bar.day >= date(2026, 1, 1)
    ]


def test_minute_bars_include_the_minute_in_progress(small: Market) -> None:
    code = "005930"
    moment = at(10, 0, 30)
    bars = small.minute_bars(code, moment, time(23, 59))
    assert bars[0].start == at(9, 0) and bars[-1].start == at(10, 0) and len(bars) == 61
    partial = small.trades(code, at(9, 59, 59, 999_999), moment)
    assert bars[-1].volume == sum(trade.volume for trade in partial)
    assert bars[-1].close == partial[-1].price
    earlier = small.minute_bars(code, moment, time(9, 30, 59))
    assert earlier[-1].start == at(9, 30) and earlier == bars[:31]


def test_daily_bars_add_today_as_of_the_given_time(small: Market) -> None:
    code = "005930"
    moment = at(14, 0)
    bars = small.daily_bars(code, date(2026, 3, 1), DAY, at=moment)
    quote = small.quote(code, moment)
    today = bars[-1]
    assert today.day == DAY
    assert (today.open, today.high, today.low, today.close, today.volume) == (
        quote.open, quote.high, quote.low, quote.price, quote.volume
    )
    assert small.daily_bars(code, date(2026, 3, 1), DAY)[-1].day < DAY


def test_halted_listing_never_trades(small: Market) -> None:
    halted = [code for code, listing in small.listings.items() if listing.halted]
    assert halted, "the seed should list at least one halted symbol"
    for code in halted:
        assert small.trades(code, at(9, 0), at(15, 30)) == []
        quote = small.quote(code, at(11, 0))
        assert quote.halted and quote.price == small.listings[code].prev_close and quote.volume == 0


def test_trade_rate_sets_the_number_of_trades() -> None:
    slow = Market(seed=3, trading_date=DAY, n_symbols=20)
    fast = Market(seed=3, trading_date=DAY, n_symbols=20, trade_rate=6.0)
    code = "005930"
    slow_count = len(slow.trades(code, at(10, 0), at(11, 0)))
    fast_count = len(fast.trades(code, at(10, 0), at(11, 0)))
    assert 3_600 < slow_count < 14_400  # about 2 a second, busier than the lunch lull allows to go below 1
    assert 2.5 < fast_count / slow_count < 3.5


def _scenario_market(event: str, factor: float = 5.0, symbol: str = "005930") -> Market:
    scenario = Scenario.from_list(
        [{"at": "10:00", "symbol": symbol, "event": event, "factor": factor, "minutes": 10}]
    )
    return Market(seed=7, trading_date=DAY, n_symbols=40, scenario=scenario)


@pytest.fixture(scope="module")
def baseline() -> Market:
    return Market(seed=7, trading_date=DAY, n_symbols=40)


def _window_bars(market: Market, start: datetime, end: datetime) -> list:
    return [bar for bar in market.minute_bars("005930", at(15, 30), time(15, 30)) if start <= bar.start < end]


def test_volume_surge_multiplies_volume_only_inside_its_window(baseline: Market) -> None:
    surged = _scenario_market("volume_surge")
    assert _window_bars(surged, at(9, 0), at(10, 0)) == _window_bars(baseline, at(9, 0), at(10, 0))
    inside = sum(bar.volume for bar in _window_bars(surged, at(10, 0), at(10, 10)))
    normal = sum(bar.volume for bar in _window_bars(baseline, at(10, 0), at(10, 10)))
    assert inside > 3 * normal
    window = (at(10, 0), at(10, 10))
    assert len(surged.trades("005930", *window)) > 3 * len(baseline.trades("005930", *window))
    after = sum(bar.volume for bar in _window_bars(surged, at(10, 10), at(10, 40)))
    normal_after = sum(bar.volume for bar in _window_bars(baseline, at(10, 10), at(10, 40)))
    assert after < 2 * normal_after


def test_volatility_spike_widens_the_minute_ranges(baseline: Market) -> None:
    spiked = _scenario_market("volatility_spike")
    ranges = lambda market: sum(bar.high - bar.low for bar in _window_bars(market, at(10, 0), at(10, 10)))  # noqa: E731
    assert ranges(spiked) > 2 * ranges(baseline)


def test_trade_burst_multiplies_the_trade_count(baseline: Market) -> None:
    burst = _scenario_market("trade_burst")
    window = (at(10, 0), at(10, 10))
    assert len(burst.trades("005930", *window)) > 3 * len(baseline.trades("005930", *window))


def test_halt_stops_trading_and_marks_the_quote(baseline: Market) -> None:
    halted = _scenario_market("halt")
    assert halted.trades("005930", at(10, 0), at(10, 10)) == []
    assert halted.trades("005930", at(9, 59), at(10, 0))
    assert halted.trades("005930", at(10, 10), at(10, 11))
    assert halted.quote("005930", at(10, 5)).halted
    assert not halted.quote("005930", at(10, 11)).halted
    assert not baseline.quote("005930", at(10, 5)).halted


def test_concurrent_queries_agree_with_sequential_ones() -> None:
    shared = Market(seed=11, trading_date=DAY, n_symbols=60)
    reference = Market(seed=11, trading_date=DAY, n_symbols=60)
    codes = _liquid(reference, 12)
    def query(market: Market, code: str) -> tuple:
        return market.quote(code, at(12, 0)), market.trades(code, at(11, 59), at(12, 0))

    expected = {code: query(reference, code) for code in codes}
    results: dict[tuple[int, str], tuple] = {}
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for code in codes[index % 3 :] + codes[: index % 3]:
                results[(index, code)] = query(shared, code)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert all(results[(index, code)] == expected[code] for index in range(8) for code in codes)


def test_unknown_code_is_a_key_error(small: Market) -> None:
    with pytest.raises(KeyError):
        small.quote("999999", at(10, 0))
    with pytest.raises(KeyError):
        small.trades("999999", at(10, 0), at(10, 1))
    with pytest.raises(KeyError):
        small.minute_bars("999999", at(10, 0), time(10, 0))
