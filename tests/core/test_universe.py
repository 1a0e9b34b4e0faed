from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.settings import UniverseSettings
from core.universe import (
    UniverseBuildError,
    UniverseEntry,
    UniverseMetadata,
    UniverseSnapshot,
    UniverseSymbol,
    build_universe,
    choose_fallback,
    days_to_prune,
)

KST = ZoneInfo("Asia/Seoul")
DAY = date(2026, 1, 20)
AT = datetime(2026, 1, 20, 5, 0, tzinfo=KST)
FEW = UniverseSettings(min_symbol_count=1)


def entry(
    code: str, prev_close: int = 10_000, cap: int | None = 1_000, market: str = "KOSPI", **kw
) -> UniverseEntry:
    return UniverseEntry(
        code=code, name=f"name{code}", market=market, prev_close=prev_close, market_cap=cap, **kw
    )


def codes(build, market: str = "KOSPI") -> list[str]:
    return list(build.for_market(market).codes)


def test_close_exactly_at_minimum_is_kept_one_below_is_not():
    build = build_universe([entry("000001", 4000), entry("000002", 3999)], DAY, FEW, AT)
    assert codes(build) == ["000001"]


def test_halted_out_by_default_and_kept_when_not_excluded():
    rows = [entry("000001", halted=True), entry("000002")]
    assert codes(build_universe(rows, DAY, FEW, AT)) == ["000002"]
    keep_halted = FEW.model_copy(update={"exclude_suspended": False})
    assert set(codes(build_universe(rows, DAY, keep_halted, AT))) == {"000001", "000002"}


def test_managed_kept_by_default_and_out_when_configured():
    rows = [entry("000001", managed=True), entry("000002")]
    assert set(codes(build_universe(rows, DAY, FEW, AT))) == {"000001", "000002"}
    strict = FEW.model_copy(update={"exclude_managed": True})
    assert codes(build_universe(rows, DAY, strict, AT)) == ["000002"]
    assert "managed excluded" in build_universe(rows, DAY, strict, AT).snapshots[0].metadata.filter_criteria


def test_sorted_by_market_cap_descending_ties_by_code():
    rows = [
        entry("000003", cap=500),
        entry("000002", cap=900),
        entry("000001", cap=500),
        entry("000009", cap=2000),
    ]
    assert codes(build_universe(rows, DAY, FEW, AT)) == ["000009", "000002", "000001", "000003"]


def test_missing_market_cap_sorts_as_zero_with_a_warning():
    rows = [entry("000001", cap=None), entry("000002", cap=1)]
    build = build_universe(rows, DAY, FEW, AT)
    assert codes(build) == ["000002", "000001"]
    assert build.for_market("KOSPI").symbols[1].market_cap == 0
    assert any("market cap missing for 1" in w and "000001" in w for w in build.warnings)


def test_one_snapshot_per_market_and_unlisted_markets_ignored():
    rows = [entry("000001", market="KOSPI"), entry("000002", market="KOSDAQ")]
    build = build_universe(rows, DAY, FEW, AT)
    assert [s.market for s in build.snapshots] == ["KOSPI", "KOSDAQ"]
    assert codes(build, "KOSDAQ") == ["000002"]
    only_kospi = FEW.model_copy(update={"markets": ("KOSPI",)})
    build = build_universe(rows, DAY, only_kospi, AT)
    assert [s.market for s in build.snapshots] == ["KOSPI"]
    assert build.symbol_count == 1


def test_an_empty_market_is_reported():
    build = build_universe([entry("000001")], DAY, FEW, AT)
    assert build.for_market("KOSDAQ").symbols == ()
    assert any("KOSDAQ" in w for w in build.warnings)


def test_warning_below_minimum_count_not_at_it():
    settings = UniverseSettings(min_symbol_count=3)
    at_min = [entry(f"00000{i}", market="KOSPI" if i % 2 else "KOSDAQ") for i in range(3)]
    assert not any("below the minimum" in w for w in build_universe(at_min, DAY, settings, AT).warnings)
    below = build_universe(at_min[:2], DAY, settings, AT)
    assert any("2 symbols, below the minimum 3" in w for w in below.warnings)


def test_nothing_passing_the_filter_is_a_failed_build():
    with pytest.raises(UniverseBuildError, match="no symbol passed"):
        build_universe([entry("000001", 100)], DAY, FEW, AT)
    with pytest.raises(UniverseBuildError):
        build_universe([], DAY, FEW, AT)


def test_repeated_code_keeps_first_row_and_warns():
    build = build_universe([entry("000001", cap=5), entry("000001", cap=9)], DAY, FEW, AT)
    assert build.for_market("KOSPI").symbols[0].market_cap == 5
    assert any("repeated codes" in w for w in build.warnings)


def test_file_format_has_exactly_the_seed_keys():
    build = build_universe([entry("005930", 71100, 4_500_000)], DAY, FEW, AT, previous_day=date(2026, 1, 19))
    document = build.snapshots[0].model_dump(mode="json")
    assert set(document) == {"metadata", "symbols"}
    assert set(document["metadata"]) == {
        "date",
        "previous_trading_day",
        "generated_at",
        "symbol_count",
        "market",
        "filter_criteria",
        "version",
    }
    assert document["metadata"]["date"] == "20260120"
    assert document["metadata"]["previous_trading_day"] == "20260119"
    assert document["metadata"]["symbol_count"] == 1
    assert document["metadata"]["filter_criteria"].startswith("close_price >= 4000 KRW")
    assert datetime.fromisoformat(document["metadata"]["generated_at"]) == AT
    assert set(document["symbols"][0]) == {"code", "name", "market_cap", "prev_close", "avg_volume_20d"}


def test_previous_trading_day_defaults_to_the_krx_calendar():
    monday = build_universe([entry("000001")], date(2026, 1, 19), FEW, AT)
    assert monday.snapshots[0].metadata.previous_trading_day == "20260116"
    after_seollal = build_universe([entry("000001")], date(2026, 2, 19), FEW, AT)
    assert after_seollal.snapshots[0].metadata.previous_trading_day == "20260213"


def test_bad_inputs_are_rejected_with_clear_errors():
    with pytest.raises(ValidationError, match="6 digits"):
        entry("5930")
    with pytest.raises(ValidationError):
        entry("000001", prev_close=-1)
    with pytest.raises(ValueError, match="aware"):
        build_universe([entry("000001")], DAY, FEW, datetime(2026, 1, 20, 5))


def test_snapshot_rejects_inconsistent_count_and_bad_day():
    meta = dict(
        date="20260120",
        previous_trading_day="20260119",
        generated_at=AT,
        symbol_count=2,
        market="KOSPI",
        filter_criteria="x",
    )
    symbol = UniverseSymbol(code="000001", name="a", market_cap=1, prev_close=5000, avg_volume_20d=0)
    with pytest.raises(ValidationError, match="symbol_count 2"):
        UniverseSnapshot(metadata=UniverseMetadata(**meta), symbols=(symbol,))
    with pytest.raises(ValidationError, match="YYYYMMDD"):
        UniverseMetadata(**{**meta, "date": "2026-01-20"})


def test_choose_fallback_takes_latest_strictly_earlier_day():
    days = [date(2026, 1, 14), date(2026, 1, 16), date(2026, 1, 20), date(2026, 1, 21)]
    assert choose_fallback(days, date(2026, 1, 20)) == date(2026, 1, 16)
    assert choose_fallback(days, date(2026, 1, 14)) is None
    assert choose_fallback([], DAY) is None


def test_days_to_prune_keeps_the_newest():
    days = [date(2026, 1, d) for d in range(1, 13)]
    assert days_to_prune(days, 10) == (date(2026, 1, 1), date(2026, 1, 2))
    assert days_to_prune(days, 12) == ()
    assert days_to_prune(reversed(days), 0) == tuple(days)
    with pytest.raises(ValueError):
        days_to_prune(days, -1)


entries_strategy = st.lists(
    st.builds(
        UniverseEntry,
        code=st.integers(0, 60).map(lambda n: f"{n:06d}"),
        name=st.just("n"),
        market=st.sampled_from(["KOSPI", "KOSDAQ"]),
        prev_close=st.integers(3990, 4010),
        market_cap=st.none() | st.integers(0, 5),
        halted=st.booleans(),
        managed=st.booleans(),
    ),
    max_size=40,
)


@given(entries_strategy, st.booleans())
def test_universe_properties(rows, exclude_managed):
    settings = UniverseSettings(min_symbol_count=1, exclude_managed=exclude_managed)
    firsts = {}
    for r in rows:
        firsts.setdefault(r.code, r)
    expected = {
        c
        for c, r in firsts.items()
        if r.prev_close >= 4000 and not r.halted and not (exclude_managed and r.managed)
    }
    try:
        first = build_universe(rows, DAY, settings, AT)
    except UniverseBuildError:
        assert not expected
        return
    assert build_universe(rows, DAY, settings, AT) == first
    assert {c for s in first.snapshots for c in s.codes} == expected
    for snapshot in first.snapshots:
        keys = [(-s.market_cap, s.code) for s in snapshot.symbols]
        assert keys == sorted(keys)
        assert all(firsts[s.code].market == snapshot.market for s in snapshot.symbols)


def test_generated_at_keeps_its_instant_in_any_zone():
    utc = datetime(2026, 1, 19, 20, 0, tzinfo=UTC)
    build = build_universe([entry("000001")], DAY, FEW, utc)
    assert build.snapshots[0].metadata.generated_at == AT
