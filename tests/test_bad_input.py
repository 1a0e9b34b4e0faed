"""Bad input anywhere gives one clear error line, never a crash and never a lost file (DESIGN section 9).

One table, one test. Every case feeds one malformed input to the real module that reads it: WebSocket
frames and acks to `kis.ws_codec.decode`; REST bodies to `KisRestClient` over loopback, from a tiny HTTP
server in this module or from the KIS simulator where it produces the body itself; config, accounts,
universe, state, JSONL, scenario and master files from `tmp_path`. A case expects exactly one of:

- a typed exception (the exact class), whose message is the error line;
- an error value (the exact class): a `FrameError`, a refused `Ack`, a `MasterFile` with one rejected row;
- one log line of the given level (loguru, captured by a list sink), the call itself returning normally.

For every case the line is a single line that names the problem, nothing else is logged at WARNING or
above, and every input file's original bytes still exist somewhere under `tmp_path` (left in place or
moved aside, never deleted or overwritten).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

from config.accounts import Account
from config.loader import ConfigError, load_settings
from config.settings import RateLimitSettings
from core.settings import UniverseSettings
from core.universe import UniverseEntry, UniverseSnapshot, build_universe
from kis import protocol
from kis.errors import KisApiError, KisRateLimited, KisTokenTooSoon, KisUnparseableResponse
from kis.fields import H0STCNT0_INDEX
from kis.master import MasterFile, MasterFileError, parse_master, read_master_zip
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from kis.ticks import Ack, FrameError, NoticeKeys
from kis.ws_codec import EXCERPT_CHARS, decode
from runtime.clock import KST, Clock
from runtime.jsonl import JsonlContents, read_jsonl
from runtime.state_store import StateStore
from runtime.universe_store import Fallback, UniverseFileError, UniverseStore
from tests.stub_kis import Answer, StubKis
from tools.kis_sim import listings
from tools.kis_sim.master_files import master_text
from tools.kis_sim.scenario import Scenario, ScenarioError
from tools.kis_sim.server import KisSimulator

MAX_LINE = 400
"""An error line longer than this is not a line a person reads."""

# docs/kis_api_facts.md, section 6, "Verbatim samples": a live H0STCNT0 frame (one record of 46 fields).
LIVE_FRAME = (
    "0|H0STCNT0|001|005930^112616^62700^2^400^0.64^62700.41^62700^63000^62300^62700^62600^125^9694968"
    "^607878273600^25807^15918^-9889^93.01^4614191^4291558^1^0.45^63.03^090013^3^0^090646^5^-300^100741^2"
    "^400^20230324^20^N^71292^244009^2795345^2044512^0.16^5367918^180.61^0^^62700"
)
LIVE_RECORD = LIVE_FRAME.split("|", 3)[3]
NOTICE_KEYS = NoticeKeys(key="kis-notice-key-0123456789abcdefg", iv="kis-notice-iv-16")
DEEP_JSON = '{"a":' + "[" * 100_000
DAY = date(2026, 1, 20)
UNIVERSE_SETTINGS = UniverseSettings(min_symbol_count=1, markets=("KOSPI",))
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
JSON_TYPE = "application/json; charset=utf-8"


def trade_record(**changes: str) -> str:
    """The live record with some H0STCNT0 columns replaced, by column name."""
    fields = LIVE_RECORD.split("^")
    for name, value in changes.items():
        fields[H0STCNT0_INDEX[name]] = value
    return "^".join(fields)


def ack(header: Any, body: Any) -> str:
    return json.dumps({"header": header, "body": body})


# ---- the environment a case acts in -----------------------------------------------------------------------

"""(HTTP status, content type, body, extra headers)"""

GOOD_TOKEN: Answer = (
    200,
    JSON_TYPE,
    json.dumps(
        {
            "access_token": "stub-access-token-0000000000000000",
            "access_token_token_expired": "2099-01-01 00:00:00",
            "token_type": "Bearer",
            "expires_in": 86400,
        }
    ).encode(),
    {},
)


def stub_kis(answer: Answer, *, on_token: bool) -> StubKis:
    """The token path answers a good token, every other path answers `answer` (the token path too when
    `on_token`)."""
    return StubKis(lambda _method, path, _query, _headers, _body: (
        GOOD_TOKEN if path == protocol.TOKEN_PATH and not on_token else answer))


class Env:
    """What a case may use: files in `tmp` (their original bytes are remembered), a stub KIS server, the
    simulator (started on first use through the suite's `kis_sim` fixture)."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.tmp = tmp
        self.originals: dict[Path, bytes] = {}
        self._request = request
        self._stubs: list[StubKis] = []
        self._clients: list[KisRestClient] = []

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        path.write_bytes(raw)
        self.originals[path] = raw
        return path

    def sim(self) -> KisSimulator:
        return self._request.getfixturevalue("kis_sim")

    def client(
        self, base_url: str, account: Account | None = None, clock: Clock | None = None
    ) -> KisRestClient:
        """No retries: a transient failure is raised at once, so the exception is the only line."""
        client = KisRestClient(
            account or fake_account(),
            base_url=base_url,
            clock=clock,
            rate_limits=RateLimitSettings(max_retries=0),
            limiters=RateLimiterRegistry(),
            timeout=5.0,
        )
        self._clients.append(client)
        return client

    def stub(
        self,
        status: int,
        body: bytes | str | dict[str, Any] | list[Any],
        content_type: str = JSON_TYPE,
        *,
        headers: dict[str, str] | None = None,
        on_token: bool = False,
    ) -> KisRestClient:
        if isinstance(body, dict | list):
            body = json.dumps(body)
        raw = body.encode("utf-8") if isinstance(body, str) else body
        stub = stub_kis((status, content_type, raw, headers or {}), on_token=on_token)
        self._stubs.append(stub)
        return self.client(stub.url)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for stub in self._stubs:
            stub.close()


def fake_account(name: str = "acct1", secret: str = "bad-input-fake-app-secret-0000") -> Account:
    return Account(
        name=name, app_key=SecretStr("PSbadInputFakeAppKey000000000000001"), app_secret=SecretStr(secret)
    )


def kis_ok(**payload: Any) -> dict[str, Any]:
    return {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다.", **payload}


def universe_snapshot(day: date, codes: tuple[str, ...] = ("005930", "000660")) -> UniverseSnapshot:
    rows = [
        UniverseEntry(code=code, name=f"종목{code}", market="KOSPI", prev_close=50_000, market_cap=100 + n)
        for n, code in enumerate(codes)
    ]
    made = datetime.combine(day, datetime.min.time(), tzinfo=KST) + timedelta(hours=5)
    return build_universe(rows, day, UNIVERSE_SETTINGS, made).snapshots[0]


def universe_file(env: Env, day: date, data: bytes | str) -> UniverseStore:
    store = UniverseStore(env.tmp / "universe")
    env.write(f"universe/{day:%Y%m%d}_KOSPI.json", data)
    return store


def master_rows(n: int = 3) -> list[bytes]:
    """`n` good KOSPI master rows (cp949, no line break) from the simulator's master-file writer."""
    universe = listings.build_universe(seed=5, trading_date=DAY, n_symbols=40)
    text = master_text(universe.listings.values(), "KOSPI", DAY)
    return [line.encode("cp949") for line in text.splitlines()[:n]]


def master_zip(content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("kospi_code.mst", content)
    return buffer.getvalue()


def damaged_deflate_zip() -> bytes:
    """A zip whose directory is fine but whose deflate stream starts with block type 3 (invalid)."""
    archive = bytearray(master_zip(b"\n".join(master_rows())))
    archive[30 + len("kospi_code.mst")] = 0x07  # BFINAL=1, BTYPE=11
    return bytes(archive)


def load_jsonl(env: Env, data: bytes) -> JsonlContents:
    return read_jsonl(env.write("data/ticks.jsonl", data))


# ---- the cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """`act` feeds the input; `expect` is the exception or value class, or a log level name ("WARNING",
    "ERROR"); the error line must contain every word of `names`; `check` is a further test of the result."""

    id: str
    act: Callable[[Env], Any]
    expect: type | str
    names: tuple[str, ...]
    check: Callable[[Any], bool] | None = None


def frame(raw: str | bytes, keys: NoticeKeys | None = None) -> Callable[[Env], Any]:
    return lambda _env: decode(raw, keys)


WEBSOCKET_FRAMES = [
    Case("frame-truncated", frame(LIVE_FRAME[:70]), FrameError, ("H0STCNT0", "too few")),
    Case("frame-garbage", frame("hello, this is not KIS"), FrameError, ("neither", "data frame")),
    Case(
        "frame-count-above-records",
        frame(f"0|H0STCNT0|003|{LIVE_RECORD}"),
        FrameError,
        ("too few", "3 record"),
    ),
    Case(
        "frame-count-not-a-number",
        frame(f"0|H0STCNT0|0x1|{LIVE_RECORD}"),
        FrameError,
        ("record count", "0x1"),
    ),
    Case(
        "frame-count-zero", frame(f"0|H0STCNT0|000|{LIVE_RECORD}"), FrameError, ("record count", "positive")
    ),
    Case("frame-huge-count", frame(f"0|H0STCNT0|999999|{LIVE_RECORD}"), FrameError, ("too few", "999999")),
    Case("frame-not-utf8", frame(b"0|H0STCNT0|001|005930^\xff\xfe\xfd"), FrameError, ("not UTF-8",)),
    Case("frame-empty-text", frame(""), FrameError, ("empty",)),
    Case("frame-empty-bytes", frame(b""), FrameError, ("empty",)),
    Case(
        "frame-huge",
        frame("0|H0STCNT0|001|" + "x^" * 1_000_000),
        FrameError,
        ("H0STCNT0", "record 1"),
        check=lambda value: len(value.raw_excerpt) <= EXCERPT_CHARS + 3,
    ),
    Case(
        "frame-trade-under-book-tr-id",
        frame(f"0|H0STASP0|001|{LIVE_RECORD}"),
        FrameError,
        ("H0STASP0", "too few"),
    ),
    Case("frame-empty-tr-id", frame(f"0||001|{LIVE_RECORD}"), FrameError, ("tr_id",)),
    Case("frame-html-tr-id", frame("0|<html>|001|005930^1"), FrameError, ("tr_id", "<html>")),
    Case(
        "frame-bad-encryption-flag",
        frame(LIVE_FRAME.replace("0|", "2|", 1)),
        FrameError,
        ("encryption flag",),
    ),
    Case(
        "frame-encrypted-without-keys",
        frame("1|H0STCNI0|001|QUJDREVGR0g="),
        FrameError,
        ("H0STCNI0", "key/iv"),
    ),
    Case(
        "frame-encrypted-garbage",
        frame("1|H0STCNI0|001|not*base64*at*all", NOTICE_KEYS),
        FrameError,
        ("decrypt", "notice"),
    ),
    Case("frame-two-parts", frame("0|H0STCNT0"), FrameError, ("2", "parts")),
    Case(
        "frame-bad-date",
        frame(f"0|H0STCNT0|001|{trade_record(BSOP_DATE='2023-03-24')}"),
        FrameError,
        ("date/time", "2023-03-24"),
    ),
    Case(
        "frame-no-symbol",
        frame(f"0|H0STCNT0|001|{trade_record(MKSC_SHRN_ISCD='')}"),
        FrameError,
        ("no symbol",),
    ),
    Case(
        "frame-price-not-a-number",
        frame(f"0|H0STCNT0|001|{trade_record(STCK_PRPR='62,700')}"),
        FrameError,
        ("record 1", "62,700"),
    ),
]

ACKS = [
    Case(
        "ack-not-json",
        frame('{"header": {"tr_id": "H0STCNT0", "tr_key": "0059'),
        FrameError,
        ("not valid JSON",),
    ),
    Case(
        "ack-missing-msg-cd",
        frame(ack({"tr_id": "H0STCNT0", "tr_key": "005930"}, {"rt_cd": "0", "msg1": "SUBSCRIBE SUCCESS"})),
        FrameError,
        ("msg_cd",),
    ),
    Case(
        "ack-null-msg-cd",
        frame(ack({"tr_id": "H0STCNT0"}, {"rt_cd": "0", "msg_cd": None, "msg1": "SUBSCRIBE SUCCESS"})),
        FrameError,
        ("msg_cd",),
    ),
    Case(
        "ack-missing-rt-cd",
        frame(ack({"tr_id": "H0STCNT0"}, {"msg_cd": "OPSP0000", "msg1": "SUBSCRIBE SUCCESS"})),
        FrameError,
        ("rt_cd",),
    ),
    Case("ack-no-body", frame('{"header":{"tr_id":"H0STCNT0","tr_key":"005930"}}'), FrameError, ("msg_cd",)),
    Case(
        "ack-header-not-object",
        frame(ack(["H0STCNT0"], {"rt_cd": "0", "msg_cd": "OPSP0000"})),
        FrameError,
        ("header",),
    ),
    Case("ack-body-not-object", frame(ack({"tr_id": "H0STCNT0"}, "OPSP0000")), FrameError, ("msg_cd",)),
    Case("ack-json-array", frame('[{"header":{"tr_id":"H0STCNT0"}}]'), FrameError, ("neither",)),
    Case("ack-nested-too-deep", frame(DEEP_JSON), FrameError, ("not valid JSON",)),
    Case(
        "ack-unknown-msg-cd",
        frame(
            ack(
                {"tr_id": "H0STCNT0", "tr_key": "005930"},
                {"rt_cd": "1", "msg_cd": "OPSP9999", "msg1": "NEW ERROR"},
            )
        ),
        Ack,
        ("OPSP9999", "NEW ERROR"),
        check=lambda value: value.code is None and not value.ok,
    ),
]


def sim_rate_limited(env: Env) -> Any:
    """EGW00201 in the gateway shape (HTTP 500, rt_cd/msg_cd/msg1), from the simulator."""
    sim = env.sim()
    client = env.client(sim.rest_url, clock=sim.clock)
    client.tokens.current()
    sim.faults.rate_limit_burst(30)
    return client.quote("005930")


def sim_wrong_secret(env: Env) -> Any:
    """EGW00105 in the auth shape (HTTP 403, error_code/error_description), from the simulator."""
    sim = env.sim()
    env.client(sim.rest_url, clock=sim.clock).issue_approval_key()
    other = fake_account(secret="a-different-secret-0000")
    return env.client(sim.rest_url, other, clock=sim.clock).issue_approval_key()


def sim_token_too_soon(env: Env) -> Any:
    """EGW00133 in the auth shape, from the simulator: a second token inside the minute."""
    sim = env.sim()
    client = env.client(sim.rest_url, clock=sim.clock)
    client.issue_token()
    return client.issue_token()


def quote_from(status: int, body: Any, content_type: str = JSON_TYPE) -> Callable[[Env], Any]:
    return lambda env: env.stub(status, body, content_type).quote("005930")


REST_BODIES = [
    Case(
        "rest-rt-cd-error",
        quote_from(200, {"rt_cd": "1", "msg_cd": "OPSQ0002", "msg1": "없는 서비스 코드 입니다"}),
        KisApiError,
        ("OPSQ0002", "inquire-price", "없는 서비스 코드"),
    ),
    Case(
        "rest-egw-gateway-shape-sim",
        sim_rate_limited,
        KisRateLimited,
        ("EGW00201", "HTTP 500", "inquire-price"),
    ),
    Case(
        "rest-egw-auth-shape-sim", sim_wrong_secret, KisApiError, ("EGW00105", "/oauth2/Approval", "HTTP 403")
    ),
    Case("rest-egw-token-too-soon-sim", sim_token_too_soon, KisTokenTooSoon, ("EGW00133", "/oauth2/tokenP")),
    Case(
        "rest-egw-gateway-shape",
        quote_from(500, {"rt_cd": "1", "msg_cd": "EGW00002", "msg1": "서버 에러가 발생했습니다."}),
        KisApiError,
        ("EGW00002", "HTTP 500"),
    ),
    Case(
        "rest-egw-auth-shape",
        quote_from(403, {"error_code": "EGW00002", "error_description": "서버 에러가 발생했습니다."}),
        KisApiError,
        ("EGW00002", "HTTP 403"),
    ),
    Case(
        "rest-egw-too-soon-infinite-retry-after",
        lambda env: env.stub(
            403,
            {
                "error_code": "EGW00133",
                "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
            },
            headers={"Retry-After": "inf"},
            on_token=True,
        ).issue_token(),
        KisTokenTooSoon,
        ("EGW00133",),
    ),
    Case(
        "rest-html-502",
        quote_from(502, HTML_PAGE, "text/html"),
        KisUnparseableResponse,
        ("502", "not JSON", "text/html"),
    ),
    Case(
        "rest-html-200",
        quote_from(200, HTML_PAGE, "text/html"),
        KisUnparseableResponse,
        ("200", "not JSON", "text/html"),
    ),
    Case("rest-empty-200", quote_from(200, b""), KisUnparseableResponse, ("HTTP 200", "empty body")),
    Case(
        "rest-empty-500",
        quote_from(500, b"", "text/plain"),
        KisUnparseableResponse,
        ("HTTP 500", "empty body"),
    ),
    Case(
        "rest-truncated-json",
        quote_from(200, b'{"rt_cd":"0","msg_cd":"MCA00000","output":{"stck_prpr":"627'),
        KisUnparseableResponse,
        ("not JSON",),
    ),
    Case("rest-json-array", quote_from(200, [kis_ok()]), KisUnparseableResponse, ("list", "not an object")),
    Case("rest-json-string", quote_from(200, '"OK"'), KisUnparseableResponse, ("str", "not an object")),
    Case(
        "rest-not-utf8",
        quote_from(200, b'{"rt_cd":"0","msg1":"\xff\xfe"}'),
        KisUnparseableResponse,
        ("not JSON",),
    ),
    Case("rest-nested-too-deep", quote_from(200, DEEP_JSON), KisUnparseableResponse, ("not JSON",)),
    Case(
        "rest-output-not-object",
        quote_from(200, kis_ok(output=[{"stck_prpr": "62700"}])),
        KisUnparseableResponse,
        ("`output`", "not an object"),
    ),
    Case(
        "rest-field-not-a-number",
        quote_from(200, kis_ok(output={"stck_prpr": "N/A"})),
        KisUnparseableResponse,
        ("stck_prpr", "not a number"),
    ),
    Case(
        "rest-row-not-object",
        lambda env: env.stub(200, kis_ok(output=["005930", "000660"])).multi_quote_batch(
            ["005930", "000660"]
        ),
        KisUnparseableResponse,
        ("row is str",),
    ),
    Case(
        "rest-row-missing-required",
        lambda env: env.stub(200, kis_ok(output=[{"inter2_prpr": "62700"}])).multi_quote_batch(["005930"]),
        KisUnparseableResponse,
        ("inter_shrn_iscd", "missing"),
    ),
    Case(
        "rest-output2-not-list",
        lambda env: env.stub(200, kis_ok(output1={}, output2=7)).minute_bars("005930"),
        KisUnparseableResponse,
        ("`output2`", "not a list"),
    ),
    Case(
        "rest-bar-time-wrong",
        lambda env: env.stub(
            200, kis_ok(output2=[{"stck_bsop_date": "20260120", "stck_cntg_hour": "9:61", "stck_prpr": "1"}])
        ).minute_bars("005930"),
        KisUnparseableResponse,
        ("stck_cntg_hour", "9:61"),
    ),
    Case(
        "rest-token-without-access-token",
        lambda env: env.stub(200, {"token_type": "Bearer", "expires_in": 86400}, on_token=True).issue_token(),
        KisUnparseableResponse,
        ("access_token",),
    ),
    Case(
        "rest-token-absurd-expiry",
        lambda env: env.stub(
            200, {"access_token": "x" * 40, "expires_in": "9" * 30}, on_token=True
        ).issue_token(),
        KisUnparseableResponse,
        ("expiry",),
    ),
    Case(
        "rest-approval-without-key",
        lambda env: env.stub(200, {"approval": "?"}, on_token=True).issue_approval_key(),
        KisUnparseableResponse,
        ("approval_key",),
    ),
]


def settings_from(name: str, data: bytes | str) -> Callable[[Env], Any]:
    return lambda env: load_settings(env.write(name, data), env={})


def accounts_from(data: bytes | str) -> Callable[[Env], Any]:
    return lambda env: load_settings(env={"KIS_ACCOUNTS_FILE": str(env.write("secret/accounts.json", data))})


CONFIG_FILES = [
    Case(
        "config-unknown-key",
        settings_from("observer.json", '{"scan": {"interval_secs": 60}}'),
        ConfigError,
        ("unknown key", "scan.interval_secs", "observer.json"),
    ),
    Case(
        "config-wrong-type",
        settings_from("observer.json", '{"scan": {"batch_size": "thirty"}}'),
        ConfigError,
        ("scan.batch_size", "observer.json"),
    ),
    Case(
        "config-bad-json",
        settings_from("observer.json", '{"scan": {"batch_size": 30,}}'),
        ConfigError,
        ("not valid JSON", "line 1"),
    ),
    Case(
        "config-missing-file",
        lambda env: load_settings(env.tmp / "nowhere.json", env={}),
        ConfigError,
        ("nowhere.json", "does not exist"),
    ),
    Case("config-not-object", settings_from("observer.json", "[1, 2]"), ConfigError, ("JSON object",)),
    Case("config-not-utf8", settings_from("observer.json", b'{"profile": "\xff"}'), ConfigError, ("UTF-8",)),
    Case(
        "config-duplicate-key",
        settings_from("observer.json", '{"profile": "main", "profile": "hybrid"}'),
        ConfigError,
        ("profile", "twice"),
    ),
    Case(
        "config-nested-too-deep",
        settings_from("observer.json", DEEP_JSON),
        ConfigError,
        ("nested too deeply",),
    ),
    Case(
        "config-unknown-env-variable",
        lambda env: load_settings(env={"OBSERVER_SCAN__INTERVALL": "5"}),
        ConfigError,
        ("OBSERVER_SCAN__INTERVALL", "unknown key"),
    ),
    Case(
        "accounts-bad-json",
        accounts_from('[{"app_key": "PS1"'),
        ConfigError,
        ("accounts file", "not valid JSON"),
    ),
    Case("accounts-unknown-key", accounts_from('{"acounts": []}'), ConfigError, ("accounts file", "acounts")),
    Case(
        "accounts-entry-missing-secret",
        accounts_from('[{"name": "acct1", "app_key": "PSfakeKey0001"}]'),
        ConfigError,
        ("accounts[0].app_secret", "missing"),
    ),
    Case("accounts-empty-list", accounts_from("[]"), ConfigError, ("accounts file", "empty")),
    Case(
        "accounts-missing-file",
        lambda env: load_settings(env={"KIS_ACCOUNTS_FILE": str(env.tmp / "no-accounts.json")}),
        ConfigError,
        ("no-accounts.json", "does not exist"),
    ),
]


def save_over_corrupt(env: Env) -> Any:
    store = universe_file(env, DAY, b'{"metadata": {"date": "2026')
    return store.save(universe_snapshot(DAY))


def fallback_past_corrupt(env: Env) -> Any:
    older = DAY - timedelta(days=2)
    store = UniverseStore(env.tmp / "universe")
    store.save(universe_snapshot(older))
    env.write(f"universe/{DAY - timedelta(days=1):%Y%m%d}_KOSPI.json", b"\x00\x00 not a snapshot")
    return store.fallback(DAY, "KOSPI")


def load_universe(data: bytes | str, named: date = DAY) -> Callable[[Env], Any]:
    return lambda env: universe_file(env, named, data).load(named, "KOSPI")


def mismatched_count() -> str:
    document = json.loads(universe_snapshot(DAY).model_dump_json())
    document["metadata"]["symbol_count"] = 3
    return json.dumps(document)


UNIVERSE_FILES = [
    Case(
        "universe-truncated",
        load_universe(b'{"metadata": {"date": "2026'),
        UniverseFileError,
        ("invalid", "20260120_KOSPI.json"),
    ),
    Case(
        "universe-wrong-schema",
        load_universe('{"metadata": {}, "symbols": 5}'),
        UniverseFileError,
        ("invalid", "metadata"),
    ),
    Case(
        "universe-count-mismatch",
        load_universe(mismatched_count()),
        UniverseFileError,
        ("invalid", "symbol_count 3"),
    ),
    Case(
        "universe-wrong-day",
        load_universe(universe_snapshot(DAY - timedelta(days=1)).model_dump_json()),
        UniverseFileError,
        ("holds 20260119", "not 20260120"),
    ),
    Case("universe-not-utf8", load_universe(b'{"metadata": "\xff\xfe"}'), UniverseFileError, ("invalid",)),
    Case("universe-empty", load_universe(b""), UniverseFileError, ("invalid",)),
    Case(
        "universe-save-over-corrupt",
        save_over_corrupt,
        "ERROR",
        ("20260120_KOSPI.json", "corrupt"),
        check=lambda value: value.day == DAY,
    ),
    Case(
        "universe-fallback-past-corrupt",
        fallback_past_corrupt,
        "ERROR",
        ("20260119_KOSPI.json", "invalid"),
        check=lambda value: isinstance(value, Fallback) and value.snapshot.day == DAY - timedelta(days=2),
    ),
]


def load_state(data: bytes) -> Callable[[Env], Any]:
    def act(env: Env) -> Any:
        env.write("state/slots.json", data)
        store = StateStore(env.tmp / "state")
        loaded = store.load("slots")
        store.save("slots", {"after": True})  # the store goes on working
        return loaded, store.load("slots")

    return act


STATE_FILES = [
    Case(
        "state-truncated",
        load_state(b'{"slots": {"005930": '),
        "WARNING",
        ("slots.json", "invalid", "moved to slots.json.corrupt-1"),
        check=lambda value: value == (None, {"after": True}),
    ),
    Case(
        "state-not-object",
        load_state(b"[1, 2, 3]"),
        "WARNING",
        ("list, not an object", "corrupt-1"),
        check=lambda value: value == (None, {"after": True}),
    ),
    Case(
        "state-not-utf8",
        load_state(b'{"cooldowns": "\xff\xfe"}'),
        "WARNING",
        ("utf-8", "corrupt-1"),
        check=lambda value: value == (None, {"after": True}),
    ),
    Case(
        "state-zero-filled",
        load_state(b"\x00" * 64),
        "WARNING",
        ("expecting value", "corrupt-1"),
        check=lambda value: value == (None, {"after": True}),
    ),
    Case(
        "state-empty",
        load_state(b""),
        "WARNING",
        ("empty file", "corrupt-1"),
        check=lambda value: value == (None, {"after": True}),
    ),
]

GOOD_LINE = b'{"symbol":"005930","price":62700}\n'

JSONL_FILES = [
    Case(
        "jsonl-torn-last-line",
        lambda env: load_jsonl(env, GOOD_LINE * 2 + b'{"symbol":"0059'),
        "WARNING",
        ("ticks.jsonl", "torn last line 3"),
        check=lambda value: (len(value.records), value.skipped) == (2, 1),
    ),
    Case(
        "jsonl-garbage-line",
        lambda env: load_jsonl(env, GOOD_LINE + b"\x00\x01 garbage ###\n" + GOOD_LINE),
        "WARNING",
        ("ticks.jsonl", "invalid line 2", "expecting value"),
        check=lambda value: (len(value.records), value.skipped) == (2, 1),
    ),
    Case(
        "jsonl-not-object-line",
        lambda env: load_jsonl(env, b"[1, 2]\n" + GOOD_LINE),
        "WARNING",
        ("line 1", "list, not an object"),
        check=lambda value: (len(value.records), value.skipped) == (1, 1),
    ),
    Case(
        "jsonl-not-utf8-line",
        lambda env: load_jsonl(env, GOOD_LINE + b'{"name":"\xff\xfe"}\n'),
        "WARNING",
        ("invalid line 2", "utf-8"),
        check=lambda value: (len(value.records), value.skipped) == (1, 1),
    ),
    Case(
        "jsonl-missing-file",
        lambda env: read_jsonl(env.tmp / "data" / "absent.jsonl"),
        "WARNING",
        ("absent.jsonl", "cannot read"),
        check=lambda value: (value.records, value.skipped) == ([], 0),
    ),
]


def scenario_from(data: bytes | str) -> Callable[[Env], Any]:
    return lambda env: Scenario.load(env.write("scenario.json", data))


def scenario_event(**changes: Any) -> str:
    return json.dumps(
        [{"at": "09:30", "symbol": "005930", "event": "volume_surge", "factor": 5.0, **changes}]
    )


SCENARIO_FILES = [
    Case(
        "scenario-bad-json",
        scenario_from('[{"at": "09:30",]'),
        ScenarioError,
        ("scenario.json", "not valid JSON"),
    ),
    Case(
        "scenario-not-list", scenario_from('{"at": "09:30"}'), ScenarioError, ("expected a JSON list", "dict")
    ),
    Case(
        "scenario-unknown-key",
        scenario_from(scenario_event(strength=3)),
        ScenarioError,
        ("[0]", "unknown key", "strength"),
    ),
    Case("scenario-bad-time", scenario_from(scenario_event(at="25:00")), ScenarioError, ("'at'", "25:00")),
    Case(
        "scenario-bad-event",
        scenario_from(scenario_event(event="meteor")),
        ScenarioError,
        ("event must be one of", "meteor"),
    ),
    Case(
        "scenario-huge-factor",
        scenario_from(scenario_event(factor=10**400)),
        ScenarioError,
        ("factor", "finite"),
    ),
    Case("scenario-nested-too-deep", scenario_from(DEEP_JSON), ScenarioError, ("nested too deeply",)),
    Case(
        "scenario-not-utf8",
        scenario_from(b'[{"at": "\xff"}]'),
        ScenarioError,
        ("cannot read", "UnicodeDecodeError"),
    ),
    Case(
        "scenario-missing-file",
        lambda env: Scenario.load(env.tmp / "no-scenario.json"),
        ScenarioError,
        ("no-scenario.json", "cannot read"),
    ),
]


def master_with(bad_row: bytes) -> Callable[[Env], Any]:
    def act(_env: Env) -> Any:
        first, second = master_rows(2)
        return parse_master(b"\n".join([first, bad_row, second]) + b"\n", "KOSPI")

    return act


def with_base_price(text: str) -> bytes:
    row = master_rows(1)[0].decode("cp949")
    tail_start = len(row) - 227
    return (row[: tail_start + 41] + text.rjust(9) + row[tail_start + 50 :]).encode("cp949")


MASTER_FILES = [
    Case(
        "master-short-row",
        master_with(b"005930   KR7005930003\xbb\xef\xbc\xba"),
        MasterFile,
        ("line 2", "too short"),
        check=lambda value: len(value.records) == 2,
    ),
    Case(
        "master-bad-encoding",
        lambda env: master_with(master_rows(1)[0][:21] + b"\xff\xff" + master_rows(1)[0][23:])(env),
        MasterFile,
        ("line 2", "cp949"),
        check=lambda value: len(value.records) == 2,
    ),
    Case(
        "master-bad-number",
        lambda env: master_with(with_base_price("12a45"))(env),
        MasterFile,
        ("line 2", "base price", "12a45"),
        check=lambda value: len(value.records) == 2,
    ),
    Case(
        "master-no-readable-row",
        lambda _env: parse_master(b"short\nrows\nonly\n", "KOSPI"),
        MasterFileError,
        ("KOSPI", "no readable row"),
    ),
    Case(
        "master-not-a-zip", lambda _env: read_master_zip(HTML_PAGE, "KOSPI"), MasterFileError, ("not a zip",)
    ),
    Case(
        "master-damaged-deflate",
        lambda _env: read_master_zip(damaged_deflate_zip(), "KOSPI"),
        MasterFileError,
        ("KOSPI", "damaged"),
    ),
    Case(
        "master-zip-without-mst",
        lambda _env: read_master_zip(_zip_of("readme.txt", b"hello"), "KOSPI"),
        MasterFileError,
        ("kospi_code.mst",),
    ),
]


def _zip_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


FAMILIES = {
    "websocket frames": WEBSOCKET_FRAMES,
    "acks": ACKS,
    "REST bodies": REST_BODIES,
    "config and accounts files": CONFIG_FILES,
    "universe snapshots": UNIVERSE_FILES,
    "state files": STATE_FILES,
    "JSONL files": JSONL_FILES,
    "scenario files": SCENARIO_FILES,
    "master files": MASTER_FILES,
}
CASES = [case for family in FAMILIES.values() for case in family]


# ---- the test --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    level: str
    text: str


@pytest.fixture
def env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Env]:
    environment = Env(tmp_path, request)
    yield environment
    environment.close()


@pytest.fixture
def log_lines() -> Iterator[list[LogLine]]:
    lines: list[LogLine] = []
    sink = logger.add(
        lambda message: lines.append(LogLine(message.record["level"].name, message.record["message"])),
        level="WARNING",
    )
    yield lines
    logger.remove(sink)


def error_line(value: Any) -> str:
    """The line an error value carries."""
    if isinstance(value, FrameError):
        return value.reason
    if isinstance(value, Ack):
        return f"{value.msg_cd} {value.msg1}"
    if isinstance(value, MasterFile):
        assert len(value.rejected) == 1, value.rejected
        return value.rejected[0]
    raise AssertionError(f"no error line in a {type(value).__name__}")


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gives_one_clear_line_and_keeps_the_file(
    case: Case, env: Env, log_lines: list[LogLine]
) -> None:
    raised: Exception | None = None
    result: Any = None
    try:
        result = case.act(env)
    except Exception as error:  # the expectation decides whether this was the right kind
        raised = error
    warnings = list(log_lines)

    if isinstance(case.expect, str):
        assert raised is None, f"expected one {case.expect} line, got {type(raised).__name__}: {raised}"
        assert [line.level for line in warnings] == [case.expect], warnings
        line = warnings[0].text
        subject = result
    elif issubclass(case.expect, BaseException):
        assert raised is not None, f"expected {case.expect.__name__}, got a value: {result!r}"
        assert type(raised) is case.expect, (
            f"expected {case.expect.__name__}, got {type(raised).__name__}: {raised}"
        )
        assert warnings == [], warnings
        line = str(raised)
        subject = raised
    else:
        assert raised is None, (
            f"expected a {case.expect.__name__} value, got {type(raised).__name__}: {raised}"
        )
        assert type(result) is case.expect, f"expected a {case.expect.__name__}, got {result!r}"
        assert warnings == [], warnings
        line = error_line(result)
        subject = result

    assert line and line == line.strip(), repr(line)
    assert "\n" not in line and "\r" not in line, repr(line)
    assert len(line) <= MAX_LINE, len(line)
    for word in case.names:
        assert word.lower() in line.lower(), f"{word!r} not named in: {line}"
    if case.check is not None:
        assert case.check(subject), f"check failed on {subject!r}"

    kept = {path.read_bytes() for path in files_under(env.tmp)}
    for path, original in env.originals.items():
        assert original in kept, f"the original bytes of {path.name} are gone"


def test_the_table_covers_every_kind_of_input_with_at_least_30_cases() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    assert all(len(family) >= 4 for family in FAMILIES.values()), {
        name: len(f) for name, f in FAMILIES.items()
    }
