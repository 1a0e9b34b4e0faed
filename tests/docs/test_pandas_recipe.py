"""The README's pandas recipe keeps KRX codes as text and the order of ticks inside a second."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from runtime.paths import DataPaths
from store.journal import import_journal_day
from tests.docs.readme_recipes import readme_python_block, run_recipe

SECONDS, PER_SECOND = 5, 40
"""Enough ticks a second that an unstable sort would reorder them (numpy sorts short runs stably)."""


def write_ticks(path: Path) -> list[int]:
    """Ticks of several seconds, each second's in exchange order (their cum_volume rising), then a back-filled
    bar that belongs before them all, as the recorder appends it once its gap closes; the expected order of
    cum_volume (the bar's is -1)."""
    rows = [
        {"symbol": "005930", "exchange_time": f"2026-09-14T09:31:{second:02d}+09:00", "price": 71000 + n % 7,
         "cum_volume": second * PER_SECOND + n}
        for second in range(SECONDS)
        for n in range(PER_SECOND)
    ]  # fmt: skip
    bar = {"symbol": "005930", "exchange_time": "2026-09-14T09:30:00+09:00", "price": 70900, "cum_volume": -1}
    path.write_text("".join(json.dumps(row) + "\n" for row in [*rows, bar]), encoding="utf-8")
    return [-1, *range(SECONDS * PER_SECOND)]


def test_recipe_keeps_leading_zeros_and_order_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "ticks_005930.jsonl"
    expected = write_ticks(path)
    ticks = run_recipe(readme_python_block("pd.read_json"), ".jsonl", path)["ticks"]
    assert set(ticks["symbol"]) == {"005930"}
    assert list(ticks["cum_volume"]) == expected
    assert ticks["exchange_time"].iloc[0].utcoffset().total_seconds() == 9 * 3600


def test_the_parquet_lines_load_a_day_a_month_and_a_symbol(tmp_path: Path) -> None:
    """The README's three one-liners on Parquet the observer wrote from two days' journal."""
    paths = DataPaths(tmp_path / "data")
    for day, symbols in ((date(2026, 9, 14), ("005930", "000660")), (date(2026, 9, 15), ("005930",))):
        for symbol in symbols:
            path = paths.tick_file("sim1", "KOSPI", day, symbol)
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = [{"symbol": symbol, "exchange_time": f"{day}T09:31:0{n}+09:00", "price": 70000 + n,
                     "cum_volume": n, "source": "ws"} for n in range(3)]  # fmt: skip
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        import_journal_day(paths, day)
    code = readme_python_block("pd.read_parquet").replace('"data/', f'"{tmp_path}/data/')
    code = code.replace("'data/", f"'{tmp_path}/data/")
    found: dict[str, Any] = {}
    exec(code, found)  # the README's own lines
    assert len(found["day"]) == 6 and set(found["day"]["symbol"]) == {"005930", "000660"}
    assert len(found["month"]) == 9
    assert list(found["one"]["symbol"]) == ["005930"] * 6
