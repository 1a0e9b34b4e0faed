"""The option matrix of one minute against the board it came from."""

from __future__ import annotations

from datetime import datetime

import pytest

from core.option_matrix import BoardRow, Metric, atm_strike, column_names, option_matrix
from runtime.clock import KST

AT = datetime(2026, 12, 7, 10, 15, tzinfo=KST)


def row(strike: float, price: float, *, call: bool) -> BoardRow:
    side = "2" if call else "3"
    code = f"{side}01612{int(strike):03d}"
    return BoardRow(code, strike, price, 20.0 + strike / 100, 0.5, int(strike) * 10, int(strike))


@pytest.mark.parametrize(
    ("underlying", "atm"),
    [(351.3, 352.5), (351.25, 350.0), (351.2, 350.0), (352.5, 352.5), (353.76, 355.0)],
)
def test_atm_is_the_nearest_grid_strike_ties_low(underlying: float, atm: float) -> None:
    assert atm_strike(underlying) == atm


def test_atm_refuses_nonsense() -> None:
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(ValueError):
            atm_strike(bad)


def test_columns_run_from_deep_itm_through_atm_to_deep_otm() -> None:
    assert column_names(2) == ("c_itm2", "c_itm1", "c_atm", "c_otm1", "c_otm2",
                               "p_itm2", "p_itm1", "p_atm", "p_otm1", "p_otm2")
    assert len(column_names()) == 42


def test_matrix_places_each_strike_by_moneyness() -> None:
    strikes = [345.0, 347.5, 350.0, 352.5, 355.0, 357.5]
    calls = [row(k, 400 - k, call=True) for k in strikes]
    puts = [row(k, k - 300, call=False) for k in strikes if k != 355.0]  # the board lacks the 355 put
    rows = option_matrix(AT, "KOSPI200", 351.3, calls, puts, depth=2)
    assert [r.metric for r in rows] == list(Metric)
    price = rows[0]
    assert (price.timestamp, price.underlying, price.atm_strike, price.underlying_price) == \
        (AT, "KOSPI200", 352.5, 351.3)
    assert price.columns == {
        "c_itm2": 400 - 347.5, "c_itm1": 400 - 350.0, "c_atm": 400 - 352.5, "c_otm1": 400 - 355.0,
        "c_otm2": 400 - 357.5,
        "p_itm2": 357.5 - 300, "p_itm1": None, "p_atm": 352.5 - 300, "p_otm1": 350.0 - 300,
        "p_otm2": 347.5 - 300,
    }
    by_metric = {r.metric: r.columns for r in rows}
    assert by_metric[Metric.OPEN_INTEREST]["c_atm"] == 3520
    assert by_metric[Metric.VOLUME]["p_otm2"] == 347
    assert by_metric[Metric.IV]["c_itm1"] == pytest.approx(23.5)
    assert by_metric[Metric.DELTA]["p_itm1"] is None
