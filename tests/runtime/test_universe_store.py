import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.settings import UniverseSettings
from core.universe import UniverseEntry, UniverseSnapshot, build_universe
from runtime.universe_store import KR_STOCKS, UniverseFileError, UniverseStore, combine_markets

KST = ZoneInfo("Asia/Seoul")
SETTINGS = UniverseSettings(min_symbol_count=1, markets=("KOSPI",))


def snapshot(day: date, codes=("005930", "000660"), cap_base: int = 100) -> UniverseSnapshot:
    rows = [
        UniverseEntry(code=c, name=f"종목{c}", market="KOSPI", prev_close=50_000, market_cap=cap_base + i)
        for i, c in enumerate(codes)
    ]
    at = datetime.combine(day, datetime.min.time(), tzinfo=KST) + timedelta(hours=5)
    return build_universe(rows, day, SETTINGS, at).snapshots[0]


def test_save_writes_the_seed_path_and_round_trips(tmp_path):
    store = UniverseStore(tmp_path / "config" / "universe")
    snap = snapshot(date(2026, 1, 20))
    assert store.save(snap) == snap
    path = tmp_path / "config" / "universe" / "20260120_KOSPI.json"
    assert path.is_file()
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["metadata"]["symbol_count"] == 2
    assert document["symbols"][0]["name"] == "종목000660"
    assert UniverseStore(store.directory).load(date(2026, 1, 20), "KOSPI") == snap
    assert [p.name for p in store.directory.iterdir()] == ["20260120_KOSPI.json"]  # no temp files left


def test_the_days_snapshot_is_never_overwritten(tmp_path):
    store = UniverseStore(tmp_path)
    day = date(2026, 1, 20)
    first = snapshot(day)
    store.save(first)
    before = store.path_for(day, "KOSPI").read_bytes()
    other = snapshot(day, codes=("035420",))
    assert UniverseStore(tmp_path).save(other) == first
    assert store.path_for(day, "KOSPI").read_bytes() == before


def test_corrupt_file_gives_one_error_line(tmp_path):
    store = UniverseStore(tmp_path)
    path = store.path_for(date(2026, 1, 20), "KOSPI")
    path.write_bytes(b'{"metadata": {"date": "2026')
    with pytest.raises(UniverseFileError) as caught:
        store.load(date(2026, 1, 20), "KOSPI")
    message = str(caught.value)
    assert "\n" not in message and path.name in message and "invalid" in message


def test_invalid_structure_names_the_field(tmp_path):
    store = UniverseStore(tmp_path)
    document = json.loads(snapshot(date(2026, 1, 20)).model_dump_json())
    del document["symbols"][0]["prev_close"]
    document["metadata"]["symbol_count"] = 2
    store.path_for(date(2026, 1, 20), "KOSPI").write_text(json.dumps(document))
    with pytest.raises(UniverseFileError, match=r"symbols\.0\.prev_close"):
        store.load(date(2026, 1, 20), "KOSPI")


def test_file_holding_another_day_is_rejected(tmp_path):
    store = UniverseStore(tmp_path)
    store.path_for(date(2026, 1, 21), "KOSPI").write_text(snapshot(date(2026, 1, 20)).model_dump_json())
    with pytest.raises(UniverseFileError, match="holds 20260120 KOSPI, not 20260121 KOSPI"):
        store.load(date(2026, 1, 21), "KOSPI")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UniverseFileError, match="not found"):
        UniverseStore(tmp_path).load(date(2026, 1, 20), "KOSPI")


def test_days_lists_one_market_and_ignores_other_files(tmp_path):
    store = UniverseStore(tmp_path)
    store.save(snapshot(date(2026, 1, 16)))
    store.save(snapshot(date(2026, 1, 19)))
    (tmp_path / "20260119_KOSDAQ.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "20261399_KOSPI.json").write_text("{}")
    assert store.days("KOSPI") == (date(2026, 1, 16), date(2026, 1, 19))
    assert UniverseStore(tmp_path / "absent").days("KOSPI") == ()


def test_fallback_uses_latest_earlier_snapshot_and_skips_corrupt(tmp_path, errors):
    store = UniverseStore(tmp_path)
    store.save(snapshot(date(2026, 1, 15)))
    older = snapshot(date(2026, 1, 16))
    store.save(older)
    store.path_for(date(2026, 1, 19), "KOSPI").write_text("not json")
    store.save(snapshot(date(2026, 1, 21)))  # later than today: never a fallback
    fallback = UniverseStore(tmp_path).fallback(date(2026, 1, 20), "KOSPI")
    assert fallback is not None
    assert fallback.snapshot == older
    assert len(fallback.skipped) == 1 and "20260119_KOSPI.json" in fallback.skipped[0]
    assert len(errors) == 1 and "20260119_KOSPI.json" in errors[0]


def test_no_fallback_without_earlier_valid_snapshot(tmp_path, errors):
    store = UniverseStore(tmp_path)
    assert store.fallback(date(2026, 1, 20), "KOSPI") is None
    store.path_for(date(2026, 1, 19), "KOSPI").write_text("[]")
    store.save(snapshot(date(2026, 1, 20)))
    assert store.fallback(date(2026, 1, 20), "KOSPI") is None
    assert len(errors) == 1


def test_corrupt_file_for_the_day_is_kept_aside_and_replaced(tmp_path, errors):
    store = UniverseStore(tmp_path)
    day = date(2026, 1, 20)
    store.path_for(day, "KOSPI").write_text("garbage")
    snap = snapshot(day)
    assert store.save(snap) == snap
    assert (tmp_path / "20260120_KOSPI.json.corrupt").read_text() == "garbage"
    assert UniverseStore(tmp_path).load(day, "KOSPI") == snap
    assert len(errors) == 1


def test_prune_keeps_the_last_n_days(tmp_path):
    store = UniverseStore(tmp_path, cache_days=10)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(12)]
    for day in days:
        store.save(snapshot(day))
    removed = store.prune("KOSPI")
    assert [p.name for p in removed] == ["20260101_KOSPI.json", "20260102_KOSPI.json"]
    assert store.days("KOSPI") == tuple(days[2:])
    with pytest.raises(UniverseFileError):
        store.load(days[0], "KOSPI")
    assert store.prune("KOSPI", keep=3) == tuple(store.path_for(d, "KOSPI") for d in days[2:9])
    assert store.load(days[-1], "KOSPI").day == days[-1]


def both_markets(day: date) -> tuple[UniverseSnapshot, ...]:
    rows = [
        UniverseEntry(code="005930", name="삼성전자", market="KOSPI", prev_close=71_100, market_cap=4_500),
        UniverseEntry(code="000660", name="SK하이닉스", market="KOSPI", prev_close=145_000, market_cap=1_200),
        UniverseEntry(code="247540", name="에코프로", market="KOSDAQ", prev_close=250_000, market_cap=2_000),
    ]
    at = datetime.combine(day, datetime.min.time(), tzinfo=KST) + timedelta(hours=5)
    return build_universe(rows, day, UniverseSettings(min_symbol_count=1), at).snapshots


def test_the_whole_days_universe_as_one_kr_stocks_file_in_the_seed_format(tmp_path):
    day = date(2026, 1, 20)
    whole = combine_markets(both_markets(day))
    assert whole.market == KR_STOCKS == "kr_stocks"
    assert whole.codes == ("005930", "247540", "000660")  # market cap descending across both markets
    assert (whole.metadata.date, whole.metadata.previous_trading_day) == ("20260120", "20260119")
    assert whole.metadata.symbol_count == 3
    assert whole.metadata.filter_criteria.startswith("close_price >= 4000")
    store = UniverseStore(tmp_path)
    store.save(whole)
    document = json.loads((tmp_path / "20260120_kr_stocks.json").read_text(encoding="utf-8"))
    assert document["metadata"]["market"] == "kr_stocks"
    assert [row["code"] for row in document["symbols"]] == ["005930", "247540", "000660"]
    assert UniverseStore(tmp_path).load(day, KR_STOCKS) == whole
    assert store.days("KOSPI") == ()  # the markets' own files are apart from it


def test_combining_needs_snapshots_of_one_day():
    with pytest.raises(ValueError, match="different days"):
        combine_markets((*both_markets(date(2026, 1, 20))[:1], *both_markets(date(2026, 1, 21))[1:]))
    with pytest.raises(ValueError, match="no snapshot"):
        combine_markets(())
