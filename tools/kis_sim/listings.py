"""The simulated listed universe: who is listed, at what price, and how each symbol traded on earlier days.

Everything is a pure function of `(seed, trading_date, n_symbols)`: the same arguments always give the same
symbols, names, previous closes and daily history, so tests and demo runs are reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist

import holidays

HISTORY_DAYS = 150
"""Trading days of daily bars per symbol: over 100, so daily-bar paging (100 a call) gets a second page."""
RECENT_DAYS = 60
"""The newest days, walked back from the symbol's price and built with the universe; the older days extend
that walk further back (so they never changed the previous close, the 20-day statistics or any trade of a
seed) and are built when a symbol's history is first read."""
SESSION_MINUTES = 390

KOSPI, KOSDAQ = "KOSPI", "KOSDAQ"


@dataclass(frozen=True, slots=True)
class Listing:
    """Static facts of one symbol for the trading day (market cap in 억원, prices in KRW)."""

    code: str
    name: str
    market: str
    market_cap: int
    prev_close: int
    halted: bool
    managed: bool
    listed_shares: int
    avg_volume_20d: int
    isin: str
    atr_14: int
    daily_volatility: float
    prev_volume: int


@dataclass(frozen=True, slots=True)
class DailyBarState:
    day: date
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int


class DailyHistory(Mapping[str, tuple[DailyBarState, ...]]):
    """Each symbol's `HISTORY_DAYS` daily bars, oldest first, by code.

    The newest `RECENT_DAYS` come with the universe; the older ones are walked on a symbol's first read,
    since most runs never page that far back and the walk is most of the universe's build time. The walk
    is deterministic, so two threads reading a symbol at once build the same bars.
    """

    def __init__(self, seed: int, older_days: list[date]) -> None:
        self._seed = seed
        self._older_days = older_days
        self._recent: dict[str, tuple[DailyBarState, ...]] = {}
        self._walks: dict[str, tuple[int, float, int]] = {}  # code -> (close before, volatility, volume)
        self._full: dict[str, tuple[DailyBarState, ...]] = {}

    def add(
        self, code: str, start: int, recent: list[DailyBarState], volatility: float, base_volume: int
    ) -> None:
        self._recent[code] = tuple(recent)
        self._walks[code] = (start, volatility, base_volume)

    def __getitem__(self, code: str) -> tuple[DailyBarState, ...]:
        bars = self._full.get(code)
        if bars is None:
            start, volatility, base_volume = self._walks[code]
            rng = random.Random(f"history-older:{self._seed}:{code}")
            _, older = _daily_history(rng, self._older_days, start, volatility, base_volume, False)
            bars = self._full[code] = (*_closing_at(older, start), *self._recent[code])
        return bars

    def __iter__(self) -> Iterator[str]:
        return iter(self._recent)

    def __len__(self) -> int:
        return len(self._recent)


@dataclass(frozen=True, slots=True)
class Universe:
    listings: dict[str, Listing]
    history: DailyHistory


# Well-known symbols (code, name, market, rough price, rough listed shares) so the universe looks familiar.
_FAMOUS: tuple[tuple[str, str, str, int, int], ...] = (
    ("005930", "삼성전자", KOSPI, 71000, 5_969_782_550),
    ("000660", "SK하이닉스", KOSPI, 178000, 728_002_365),
    ("373220", "LG에너지솔루션", KOSPI, 370000, 234_000_000),
    ("207940", "삼성바이오로직스", KOSPI, 780000, 71_174_000),
    ("005380", "현대차", KOSPI, 240000, 209_416_191),
    ("000270", "기아", KOSPI, 95000, 397_672_632),
    ("068270", "셀트리온", KOSPI, 180000, 216_600_000),
    ("005490", "POSCO홀딩스", KOSPI, 380000, 84_571_230),
    ("035420", "NAVER", KOSPI, 185000, 158_437_008),
    ("051910", "LG화학", KOSPI, 350000, 70_592_343),
    ("006400", "삼성SDI", KOSPI, 370000, 68_764_530),
    ("105560", "KB금융", KOSPI, 78000, 393_528_099),
    ("055550", "신한지주", KOSPI, 50000, 509_488_524),
    ("035720", "카카오", KOSPI, 42000, 444_055_000),
    ("012330", "현대모비스", KOSPI, 230000, 93_000_000),
    ("028260", "삼성물산", KOSPI, 130000, 169_976_544),
    ("066570", "LG전자", KOSPI, 95000, 163_647_814),
    ("003550", "LG", KOSPI, 80000, 157_300_000),
    ("096770", "SK이노베이션", KOSPI, 110000, 97_000_000),
    ("017670", "SK텔레콤", KOSPI, 52000, 214_790_053),
    ("030200", "KT", KOSPI, 37000, 252_000_000),
    ("015760", "한국전력", KOSPI, 21000, 641_964_077),
    ("032830", "삼성생명", KOSPI, 80000, 200_000_000),
    ("086790", "하나금융지주", KOSPI, 60000, 290_000_000),
    ("009150", "삼성전기", KOSPI, 140000, 74_693_696),
    ("018260", "삼성에스디에스", KOSPI, 150000, 77_377_800),
    ("010130", "고려아연", KOSPI, 480000, 20_000_000),
    ("011200", "HMM", KOSPI, 17000, 978_260_000),
    ("003670", "포스코퓨처엠", KOSPI, 250000, 77_463_220),
    ("034020", "두산에너빌리티", KOSPI, 19000, 640_000_000),
    ("247540", "에코프로비엠", KOSDAQ, 200000, 97_801_344),
    ("086520", "에코프로", KOSDAQ, 90000, 133_138_340),
    ("196170", "알테오젠", KOSDAQ, 250000, 53_000_000),
    ("028300", "HLB", KOSDAQ, 70000, 131_000_000),
    ("293490", "카카오게임즈", KOSDAQ, 20000, 82_000_000),
    ("263750", "펄어비스", KOSDAQ, 35000, 64_000_000),
    ("357780", "솔브레인", KOSDAQ, 260000, 7_779_000),
    ("041510", "에스엠", KOSDAQ, 80000, 23_800_000),
    ("035900", "JYP Ent.", KOSDAQ, 60000, 35_500_000),
    ("058470", "리노공업", KOSDAQ, 200000, 15_242_370),
)

_NAME_HEADS = (
    "대한", "한국", "동양", "삼화", "신성", "우리", "세원", "한솔", "태광", "대성", "유니", "코리아",
    "에이치", "제이", "서울", "부산", "동방", "금호", "한일", "성우", "대원", "미래", "나노", "케이", "에스",
    "오리온", "하이", "글로벌", "엠", "디", "티에스", "비에이치", "한미", "일진", "동국", "영풍", "진성",
    "광명", "새한", "청담", "아이", "넥스", "알파", "씨앤", "더존", "휴먼", "에이스", "제일", "삼진", "동원",
)
_NAME_TAILS = (
    "전자", "화학", "제약", "바이오", "산업", "건설", "테크", "소재", "시스템", "에너지", "정밀", "통신",
    "중공업", "물산", "식품", "홀딩스", "반도체", "로보틱스", "메디칼", "디스플레이", "게임즈", "엔터",
    "모빌리티", "솔루션", "전기", "제강", "해운", "증권", "네트웍스", "이엔지",
)


def tick_size(price: int) -> int:
    """KRX price unit (호가단위) for a price level, KOSPI and KOSDAQ alike since 2023."""
    if price < 2_000:
        return 1
    if price < 5_000:
        return 5
    if price < 20_000:
        return 10
    if price < 50_000:
        return 50
    if price < 200_000:
        return 100
    if price < 500_000:
        return 500
    return 1_000


@dataclass(frozen=True, slots=True)
class Fundamentals:
    """Facts of a symbol that the price walk does not produce but quotes carry: face value (액면가, KRW),
    earnings and book value per share (KRW; EPS may be negative) and the shares foreigners hold."""

    face_value: int
    eps: int
    bps: int
    foreign_shares: int


def fundamentals(listing: Listing) -> Fundamentals:
    """The symbol's fixed fundamentals, deterministic from its code and previous close (so PER and PBR stay
    in a plausible range at any price level)."""
    rng = random.Random(f"fundamentals:{listing.code}")
    face_value = rng.choice((100, 500, 500, 1_000, 5_000, 5_000))
    per = math.exp(rng.gauss(math.log(14.0), 0.6))
    eps = round(listing.prev_close / per) * (-1 if rng.random() < 0.12 else 1)
    bps = max(face_value, round(listing.prev_close / math.exp(rng.gauss(math.log(1.1), 0.5))))
    foreign_ratio = rng.uniform(0.05, 0.55) if listing.market == KOSPI else rng.uniform(0.005, 0.2)
    return Fundamentals(face_value, eps, bps, int(listing.listed_shares * foreign_ratio))


def snap(price: float) -> int:
    """Round a price to the nearest valid KRX price (never below 1). Hot: the walks call it per step."""
    rough = int(price + 0.5) if price > 1.0 else 1
    if rough < 2_000:
        return rough
    unit = tick_size(rough)
    return (rough + unit // 2) // unit * unit


def _normal_table(size: int) -> tuple[float, ...]:
    dist = NormalDist()
    return tuple(dist.inv_cdf((i + 0.5) / size) for i in range(size))


NORMAL_BITS = 13
NORMALS = _normal_table(1 << NORMAL_BITS)
"""Standard normal quantiles: `NORMALS[rng.getrandbits(NORMAL_BITS)]` is a fast, deterministic normal draw."""


def price_limits(prev_close: int) -> tuple[int, int]:
    """(upper, lower) daily price limits: +-30% of the base price, kept on the price grid."""
    upper = prev_close * 13 // 10
    upper -= upper % tick_size(upper)
    lower = -(-prev_close * 7 // 10)
    unit = tick_size(lower)
    lower += (-lower) % unit
    return upper, max(1, lower)


def trading_days_before(day: date, count: int) -> list[date]:
    """The `count` KRX trading days before `day`, oldest first."""
    first_year = day.year - 1 - count // 200  # about 250 trading days a year; one year of slack
    calendar = holidays.financial_holidays("XKRX", years=range(first_year, day.year + 1))
    found: list[date] = []
    current = day
    while len(found) < count:
        current -= timedelta(days=1)
        if current.weekday() < 5 and current not in calendar:
            found.append(current)
    return found[::-1]


def build_universe(seed: int, trading_date: date, n_symbols: int = 1200) -> Universe:
    """The listed universe for `trading_date` with `HISTORY_DAYS` of daily bars per symbol."""
    if n_symbols < 1:
        raise ValueError(f"n_symbols must be >= 1, got {n_symbols}")
    days = trading_days_before(trading_date, HISTORY_DAYS)
    specs = _symbol_specs(random.Random(f"universe:{seed}"), n_symbols)
    listings: dict[str, Listing] = {}
    history = DailyHistory(seed, days[:-RECENT_DAYS])
    for code, name, market, price, shares in specs:
        rng = random.Random(f"symbol:{seed}:{code}")
        halted = rng.random() < 0.015 and code != "005930"
        managed = rng.random() < 0.02 and code != "005930"
        volatility = _daily_volatility(rng, market, price * shares)
        turnover = math.exp(rng.gauss(math.log(0.004 if market == KOSPI else 0.012), 0.6))
        base_volume = max(1_000, int(shares * min(turnover, 0.08)))
        history_rng = random.Random(f"history:{seed}:{code}")
        start, bars = _daily_history(history_rng, days[-RECENT_DAYS:], price, volatility, base_volume, halted)
        prev_close = bars[-1].close
        listings[code] = Listing(
            code=code,
            name=name,
            market=market,
            market_cap=prev_close * shares // 100_000_000,
            prev_close=prev_close,
            halted=halted,
            managed=managed,
            listed_shares=shares,
            avg_volume_20d=sum(b.volume for b in bars[-20:]) // 20,
            isin=_isin(code),
            atr_14=_atr(bars, 14),
            daily_volatility=volatility,
            prev_volume=bars[-1].volume,
        )
        history.add(code, start, bars, volatility, base_volume)
    return Universe(listings=listings, history=history)


def _symbol_specs(rng: random.Random, n_symbols: int) -> list[tuple[str, str, str, int, int]]:
    specs = list(_FAMOUS[:n_symbols])
    codes = {spec[0] for spec in specs}
    names = {spec[1] for spec in specs}
    while len(specs) < n_symbols:
        market = KOSPI if rng.random() < 0.45 else KOSDAQ
        code = f"{rng.randrange(1, 49_999) * 10 + (5 if rng.random() < 0.03 else 0):06d}"
        if code in codes:
            continue
        name = rng.choice(_NAME_HEADS) + rng.choice(_NAME_TAILS)
        if code.endswith("5"):
            name += "우"
        suffix = 2
        base = name
        while name in names:
            name = f"{base}{suffix}"
            suffix += 1
        price = snap(10 ** min(6.0, max(2.7, rng.gauss(4.0, 0.55))))
        shares = int(10 ** min(9.0, max(6.3, rng.gauss(7.3, 0.45))))
        codes.add(code)
        names.add(name)
        specs.append((code, name, market, price, shares))
    return specs


def _daily_volatility(rng: random.Random, market: str, market_value: float) -> float:
    """Smaller and KOSDAQ companies move more: 1%..6% daily standard deviation."""
    size_term = max(0.0, 13.0 - math.log10(max(market_value, 1.0))) * 0.006
    base = 0.012 if market == KOSPI else 0.02
    return min(0.06, max(0.01, base + size_term + abs(rng.gauss(0, 0.004))))


def _daily_history(
    rng: random.Random,
    days: list[date],
    anchor_price: int,
    volatility: float,
    base_volume: int,
    halted: bool,
) -> tuple[int, list[DailyBarState]]:
    """A daily random walk that ends near `anchor_price`; halted symbols stop trading for the last 3 days.

    Returns the close of the day before the first bar (where the walk starts) and the bars.
    """
    draw = rng.getrandbits
    returns = [NORMALS[draw(NORMAL_BITS)] * volatility for _ in days]
    start = prev_close = snap(anchor_price * math.exp(-sum(returns)))
    halt_from = len(days) - 3 if halted else len(days)
    gap, wick = volatility * 0.3, volatility * 0.5
    bars: list[DailyBarState] = []
    for index, (day, step) in enumerate(zip(days, returns, strict=True)):
        if index >= halt_from:
            bars.append(DailyBarState(day, prev_close, prev_close, prev_close, prev_close, 0, 0))
            continue
        upper, lower = price_limits(prev_close)
        open_ = min(upper, max(lower, snap(prev_close * math.exp(NORMALS[draw(NORMAL_BITS)] * gap))))
        close = min(upper, max(lower, snap(prev_close * math.exp(step))))
        top, bottom = (open_, close) if open_ >= close else (close, open_)
        high = max(top, min(upper, snap(top * math.exp(abs(NORMALS[draw(NORMAL_BITS)]) * wick))))
        low = min(bottom, max(lower, snap(bottom * math.exp(-abs(NORMALS[draw(NORMAL_BITS)]) * wick))))
        volume = max(1, int(base_volume * math.exp(NORMALS[draw(NORMAL_BITS)] * 0.35 - 0.06)))
        value = volume * (open_ + high + low + close) // 4
        bars.append(DailyBarState(day, open_, high, low, close, volume, value))
        prev_close = close
    return start, bars


def _closing_at(bars: list[DailyBarState], close: int) -> list[DailyBarState]:
    """`bars` with the last one closing exactly at `close` (its range widened to hold it), so an older walk
    joins the newer one that starts from `close`."""
    if not bars:
        return bars
    last = bars[-1]
    high, low = max(last.high, close), min(last.low, close)
    value = last.volume * (last.open + high + low + close) // 4
    return [*bars[:-1], DailyBarState(last.day, last.open, high, low, close, last.volume, value)]


def _atr(bars: list[DailyBarState], period: int) -> int:
    """Average true range over the last `period` bars (simple mean)."""
    ranges = [
        max(bar.high, prev.close) - min(bar.low, prev.close)
        for prev, bar in zip(bars[-period - 1 : -1], bars[-period:], strict=True)
    ]
    return round(sum(ranges) / len(ranges)) if ranges else 0


def _isin(code: str) -> str:
    """A KR7 ISIN with a valid Luhn check digit (letters expanded to numbers as ISO 6166 says)."""
    body = f"KR7{code}00"
    digits = "".join(str(int(ch, 36)) for ch in body)
    total = 0
    for position, ch in enumerate(reversed(digits)):
        value = int(ch)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return body + str((10 - total % 10) % 10)
