"""Fills change the account's holdings, and the balance inquiry over loopback HTTP shows the change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from kis import protocol
from tools.kis_sim.server import KisSimulator
from tools.kis_sim.ws import Fill

APP_KEY, APP_SECRET = "APPKEY-HOLDINGS", "SECRET-HOLDINGS"


class Balance:
    """The balance inquiry of one real account, spoken as raw KIS over HTTP."""

    def __init__(self, sim: KisSimulator) -> None:
        self.sim = sim
        self.session = requests.Session()
        body = {"grant_type": "client_credentials", "appkey": APP_KEY, "appsecret": APP_SECRET}
        answer = self.session.post(f"{sim.rest_url}{protocol.TOKEN_PATH}", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        self.headers = {
            "authorization": f"Bearer {answer.json()['access_token']}",
            "appkey": APP_KEY,
            "appsecret": APP_SECRET,
            "tr_id": protocol.TrId.BALANCE_REAL,
            "custtype": "P",
        }

    def rows(self) -> dict[str, dict[str, Any]]:
        """output1 by symbol, in the server's order."""
        params = {
            "CANO": "12345678", "ACNT_PRDT_CD": "01", "AFHR_FLPR_YN": "N", "OFL_YN": "", "INQR_DVSN": "01",
            "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N", "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00",
            "CTX_AREA_FK100": "", "CTX_AREA_NK100": "",
        }  # fmt: skip
        answer = self.session.get(
            f"{self.sim.rest_url}{protocol.BALANCE_PATH}", headers=self.headers, params=params, timeout=10
        )
        assert answer.status_code == 200 and answer.json()["rt_cd"] == "0", answer.text
        body = answer.json()
        rows = {row["pdno"]: row for row in body["output1"]}
        purchase = sum(int(row["pchs_amt"]) for row in rows.values())
        assert body["output2"][0]["pchs_amt_smtl_amt"] == str(purchase)
        return rows


@pytest.fixture
def balance(kis_sim: KisSimulator) -> Iterator[Balance]:
    inquiry = Balance(kis_sim)
    yield inquiry
    inquiry.session.close()


def unheld_symbol(sim: KisSimulator) -> str:
    account = sim.accounts.known(APP_KEY)
    assert account is not None
    held = {h.code for h in account.holdings}
    return next(code for code, listing in sorted(sim.market.listings.items())
                if code not in held and not listing.halted)  # fmt: skip


def test_a_buy_of_a_new_symbol_adds_a_row_at_the_fill_price(kis_sim: KisSimulator, balance: Balance) -> None:
    before = balance.rows()
    symbol = unheld_symbol(kis_sim)
    kis_sim.fill(APP_KEY, symbol, "buy", 12, 15_000)
    after = balance.rows()
    assert list(after)[:-1] == list(before) and list(after)[-1] == symbol
    row = after[symbol]
    assert (row["hldg_qty"], row["ord_psbl_qty"], row["pchs_avg_pric"], row["pchs_amt"]) == (
        "12", "12", "15000.0000", "180000"
    )
    assert row["prdt_name"] == kis_sim.market.listings[symbol].name


def test_buys_average_the_price_and_sells_keep_it_until_a_full_sale_removes_the_row(
    kis_sim: KisSimulator, balance: Balance
) -> None:
    symbol = unheld_symbol(kis_sim)
    kis_sim.fill(APP_KEY, symbol, "buy", 10, 10_000)
    kis_sim.fill(APP_KEY, symbol, "buy", 30, 12_000)
    row = balance.rows()[symbol]
    assert (row["hldg_qty"], row["pchs_avg_pric"]) == ("40", "11500.0000")
    kis_sim.fill(APP_KEY, symbol, "sell", 15, 13_000)
    row = balance.rows()[symbol]
    assert (row["hldg_qty"], row["pchs_avg_pric"], row["pchs_amt"]) == ("25", "11500.0000", "287500")
    kis_sim.fill(APP_KEY, symbol, "sell", 25, 13_000)
    assert symbol not in balance.rows()


def test_a_seeded_holding_is_averaged_with_a_buy_and_keeps_its_place(
    kis_sim: KisSimulator, balance: Balance
) -> None:
    before = balance.rows()
    first = next(iter(before))
    quantity, average = int(before[first]["hldg_qty"]), float(before[first]["pchs_avg_pric"])
    kis_sim.fill(APP_KEY, first, "buy", 5, 20_000)
    after = balance.rows()
    assert list(after) == list(before)
    assert after[first]["hldg_qty"] == str(quantity + 5)
    expected = (average * quantity + 20_000 * 5) / (quantity + 5)
    assert float(after[first]["pchs_avg_pric"]) == pytest.approx(expected, abs=1e-4)


def test_selling_more_than_is_held_is_refused_and_changes_nothing(
    kis_sim: KisSimulator, balance: Balance
) -> None:
    before = balance.rows()
    first = next(iter(before))
    held = int(before[first]["hldg_qty"])
    with pytest.raises(ValueError, match=f"cannot sell {held + 1} x {first}: the account holds {held}"):
        kis_sim.fill(APP_KEY, first, "sell", held + 1, 10_000)
    with pytest.raises(ValueError, match="the account holds 0"):
        kis_sim.fill(APP_KEY, unheld_symbol(kis_sim), "sell", 1, 10_000)
    booked = [(code, row["hldg_qty"], row["pchs_avg_pric"]) for code, row in before.items()]
    assert [(code, row["hldg_qty"], row["pchs_avg_pric"]) for code, row in balance.rows().items()] == booked


def test_the_ws_server_fill_books_the_holding_too(kis_sim: KisSimulator, balance: Balance) -> None:
    symbol = unheld_symbol(kis_sim)
    fill = Fill(symbol=symbol, side="buy", qty=3, price=9_990, at=kis_sim.clock.now(), order_no="0000000001")
    assert kis_sim.ws.fill(APP_KEY, fill) == 0  # nobody subscribed to notices: nothing sent, still booked
    assert balance.rows()[symbol]["hldg_qty"] == "3"
    with pytest.raises(ValueError, match="no account has used this app key"):
        kis_sim.ws.fill("APPKEY-NEVER-SEEN", fill)
