"""Typed results of the KIS REST calls (frozen; times are aware KST)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, SecretStr

from runtime.jsonl import json_number, json_text


class KisModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MinuteBar(KisModel):
    """One minute of trading; `time` is the bar's KST time as KIS reports it (stck_cntg_hour)."""

    symbol: str
    time: AwareDatetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int


class DailyBar(KisModel):
    symbol: str
    day: date
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int


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


class MultiQuote(NamedTuple):
    """One row of intstock-multprice (the Track A batch scan). `prev_close` is inter2_prdy_clpr.

    A named tuple rather than a model: a pass brings about 1,000 of them through a pipe from the fetch
    worker's child and on to two actors, and unpickling a pydantic model costs three times a named tuple's
    (5.5 us against 1.9 us a row), all of it holding the interpreter lock the tick path needs. The parser in
    `kis.rest` checks and converts every field, as a model would; read by attribute, immutable.
    """

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

    def __reduce__(self) -> tuple[object, tuple[type[MultiQuote], tuple[object, ...]]]:
        """Unpickled by `tuple.__new__` in C, not through the class's Python-level `__new__`: a pass
        unpickles about 1,000 rows while the tick path waits for the interpreter lock."""
        return tuple.__new__, (MultiQuote, tuple(self))

    def json_fields(self) -> str:
        """The row's fields as the rest of a JSON object (`"symbol":...}`), in field order: the same text as
        `runtime.jsonl.encode_record(row._asdict())` without its "{", at a fraction of the cost. A scan's
        snapshot line is its head and this; the fetch worker's child renders it, not the observer."""
        return (
            f'"symbol":{json_text(self.symbol)},"name":{json_text(self.name)},"price":{self.price},'
            f'"change":{self.change},"sign":{json_text(self.sign)},"change_rate":{json_number(self.change_rate)},'
            f'"volume":{self.volume},"value":{self.value},"open":{self.open},"high":{self.high},'
            f'"low":{self.low},"upper_limit":{self.upper_limit},"lower_limit":{self.lower_limit},'
            f'"prev_close":{self.prev_close},"base_price":{self.base_price},"ask":{self.ask},"bid":{self.bid},'
            f'"halted":{"true" if self.halted else "false"}}}'
        )


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
