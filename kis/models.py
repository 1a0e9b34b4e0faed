"""Typed results of the KIS REST calls (frozen; times are aware KST)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, SecretStr


class KisModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AccessToken(KisModel):
    """A bearer token from /oauth2/tokenP; `expires_at` is `access_token_token_expired` read as KST."""

    token: SecretStr
    expires_at: AwareDatetime
    token_type: str = "Bearer"

    def is_valid_at(self, moment: datetime, margin: timedelta = timedelta(0)) -> bool:
        return moment + margin < self.expires_at


class ApprovalKey(KisModel):
    """The WebSocket approval key from /oauth2/Approval (lifetime undocumented; treated as 24 h)."""

    key: SecretStr
    issued_at: AwareDatetime


class Quote(KisModel):
    """One symbol's current price (inquire-price `output`). Money in KRW, `market_cap` in KRW."""

    symbol: str
    price: int
    change: int
    sign: str
    change_rate: float
    open: int
    high: int
    low: int
    upper_limit: int
    lower_limit: int
    base_price: int
    volume: int
    value: int
    market_cap: int
    listed_shares: int
    halted: bool
    status_code: str
    warning_code: str
    vi_code: str


class MultiQuote(KisModel):
    """One row of intstock-multprice (the Track A batch scan). `prev_close` is inter2_prdy_clpr."""

    symbol: str
    name: str
    price: int
    change: int
    sign: str
    change_rate: float
    volume: int
    value: int
    open: int
    high: int
    low: int
    upper_limit: int
    lower_limit: int
    prev_close: int
    base_price: int
    ask: int
    bid: int
    halted: bool = False
    """Trading is halted (mrkt_trtm_cls_name "거래정지")."""


class Holding(KisModel):
    """One output1 row of inquire-balance. A symbol sold out today may appear with `quantity` 0."""

    symbol: str
    name: str
    quantity: int
    orderable_quantity: int
    avg_price: float
    purchase_amount: int
    price: int
    eval_amount: int
    profit_loss: int
    profit_loss_rate: float


class MasterRecord(KisModel):
    """One listed security from kospi_code.mst / kosdaq_code.mst.

    `base_price` (기준가) is the previous close in practice; `listed_shares` and `market_cap` are
    converted to shares and KRW from the file's thousands of shares and 억원.
    """

    code: str
    isin: str
    name: str
    market: Literal["KOSPI", "KOSDAQ"]
    group_code: str
    base_price: int
    halted: bool
    liquidating: bool
    managed: bool
    warning_code: str
    preferred: bool
    listed_shares: int
    market_cap: int


class FuopBar(KisModel):
    """One minute of a KOSPI200 futures or option contract (inquire-time-fuopchartprice output2); prices in
    index points, `time` the bar's KST start as KIS reports it."""

    code: str
    time: AwareDatetime
    open: float
    high: float
    low: float
    close: float
    volume: int


class FuopChart(KisModel):
    """A futures or option contract's state (output1) and its one-minute bars, oldest first. `index` is the
    KOSPI200 level KIS reports beside it (kospi200_nmix), the options' underlying."""

    code: str
    name: str
    price: float
    prev_close: float
    index: float
    volume: int
    open_interest: int
    bars: tuple[FuopBar, ...]


class OptionQuote(KisModel):
    """One strike of one side of display-board-callput. `iv` in percent (hts_ints_vltl) as KIS prints it."""

    code: str
    strike: float
    price: float
    theoretical: float
    iv: float
    delta: float
    gamma: float
    vega: float
    theta: float
    open_interest: int
    volume: int
    moneyness: str


class OptionBoard(KisModel):
    """The call/put board of one option month (YYYYMM): calls and puts as KIS lists them."""

    month: str
    calls: tuple[OptionQuote, ...]
    puts: tuple[OptionQuote, ...]
