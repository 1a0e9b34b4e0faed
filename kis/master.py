"""Parser for the KOSPI/KOSDAQ stock master files (`kospi_code.mst`, `kosdaq_code.mst`).

The files are cp949 text, one security per line. Each line is a variable-width head (short code [0:9],
ISIN [9:21], name [21:]) followed by a fixed-width tail of 227 (KOSPI) or 221 (KOSDAQ) characters; the
column widths follow KIS's layout headers (`종목마스터정보(코스피).h` / `(코스닥).h`). KIS serves them
zipped; `read_master_zip` and `fetch_master` take the archive as served.

A line that does not fit the layout is rejected with a one-line reason and the rest of the file is kept.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import requests

from kis.models import MasterRecord

Market = Literal["KOSPI", "KOSDAQ"]

MASTER_URLS: dict[Market, str] = {
    "KOSPI": "https://new.real.download.dws.co.kr/common/master/kospi_code.mst.zip",
    "KOSDAQ": "https://new.real.download.dws.co.kr/common/master/kosdaq_code.mst.zip",
}
MASTER_FILE_NAMES: dict[Market, str] = {"KOSPI": "kospi_code.mst", "KOSDAQ": "kosdaq_code.mst"}


@dataclass(frozen=True, slots=True)
class TailLayout:
    """Offsets (start, width) inside the tail of the columns the observer reads."""

    length: int
    group_code: tuple[int, int]
    base_price: tuple[int, int]
    halted: tuple[int, int]
    liquidating: tuple[int, int]
    managed: tuple[int, int]
    warning_code: tuple[int, int]
    listed_shares: tuple[int, int]
    preferred: tuple[int, int]
    market_cap: tuple[int, int]


# KOSPI has five more one-letter index flags before 기준가 than KOSDAQ (and one more, KOSPI여부, before
# 매출액), hence the shifted offsets.
TAIL_LAYOUTS: dict[Market, TailLayout] = {
    "KOSPI": TailLayout(
        length=227,
        group_code=(0, 2),
        base_price=(41, 9),
        halted=(60, 1),
        liquidating=(61, 1),
        managed=(62, 1),
        warning_code=(63, 2),
        listed_shares=(113, 15),
        preferred=(158, 1),
        market_cap=(212, 9),
    ),
    "KOSDAQ": TailLayout(
        length=221,
        group_code=(0, 2),
        base_price=(36, 9),
        halted=(55, 1),
        liquidating=(56, 1),
        managed=(57, 1),
        warning_code=(58, 2),
        listed_shares=(108, 15),
        preferred=(153, 1),
        market_cap=(206, 9),
    ),
}
HEAD_MIN_LENGTH = 22
SHARES_UNIT = 1_000
MARKET_CAP_UNIT = 100_000_000


class MasterFileError(ValueError):
    """The master file as a whole cannot be had (download failed, not a zip, no .mst, no readable row)."""


@dataclass(frozen=True, slots=True)
class MasterFile:
    """Parsed records in file order, and one reason per rejected line ("line 12: ...")."""

    market: Market
    records: tuple[MasterRecord, ...]
    rejected: tuple[str, ...]


def _field(tail: str, spec: tuple[int, int]) -> str:
    start, width = spec
    return tail[start : start + width].strip()


def _number(tail: str, spec: tuple[int, int], name: str) -> int:
    text = _field(tail, spec)
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"{name} is not a number: {text!r}")
    return int(text)


def parse_master_line(line: str, market: Market) -> MasterRecord:
    """One decoded line (without its line break) as a record, or ValueError saying what is wrong."""
    layout = TAIL_LAYOUTS[market]
    if len(line) < layout.length + HEAD_MIN_LENGTH:
        raise ValueError(f"too short for a {market} row ({len(line)} characters)")
    head, tail = line[: -layout.length], line[-layout.length :]
    code, isin, name = head[0:9].strip(), head[9:21].strip(), head[21:].strip()
    if not code or not isin:
        raise ValueError("missing short code or ISIN")
    return MasterRecord(
        code=code,
        isin=isin,
        name=name,
        market=market,
        group_code=_field(tail, layout.group_code),
        base_price=_number(tail, layout.base_price, "base price"),
        halted=_field(tail, layout.halted) == "Y",
        liquidating=_field(tail, layout.liquidating) == "Y",
        managed=_field(tail, layout.managed) == "Y",
        warning_code=_field(tail, layout.warning_code),
        preferred=_field(tail, layout.preferred) not in ("", "0"),
        listed_shares=_number(tail, layout.listed_shares, "listed shares") * SHARES_UNIT,
        market_cap=_number(tail, layout.market_cap, "market cap") * MARKET_CAP_UNIT,
    )


def parse_master(content: bytes, market: Market) -> MasterFile:
    """Parse the raw (unzipped) .mst bytes. Each line is decoded on its own so one bad byte costs one row."""
    records: list[MasterRecord] = []
    rejected: list[str] = []
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append(parse_master_line(raw.decode("cp949"), market))
        except UnicodeDecodeError:
            rejected.append(f"line {number}: not cp949 text")
        except ValueError as exc:
            rejected.append(f"line {number}: {exc}")
    if not records and rejected:
        raise MasterFileError(f"{market} master: no readable row ({rejected[0]})")
    return MasterFile(market=market, records=tuple(records), rejected=tuple(rejected))


def read_master_zip(archive: bytes | Path, market: Market) -> MasterFile:
    """Parse the zip as KIS serves it: the .mst member named for the market (or the only .mst inside)."""
    source = io.BytesIO(archive) if isinstance(archive, bytes) else archive
    try:
        with zipfile.ZipFile(source) as bundle:
            names = [n for n in bundle.namelist() if n.lower().endswith(".mst")]
            wanted = MASTER_FILE_NAMES[market]
            member = wanted if wanted in names else (names[0] if len(names) == 1 else None)
            if member is None:
                raise MasterFileError(f"{market} master zip holds no {wanted}")
            content = bundle.read(member)
    except zipfile.BadZipFile as exc:
        raise MasterFileError(f"{market} master is not a zip archive: {exc}") from None
    except (zlib.error, EOFError) as exc:
        raise MasterFileError(f"{market} master zip is damaged: {exc}") from None
    return parse_master(content, market)


def fetch_master(
    market: Market,
    *,
    url: str | None = None,
    session: requests.Session | None = None,
    timeout: float = 30.0,
) -> MasterFile:
    """Download the zipped master file (from KIS by default) and parse it."""
    target = url or MASTER_URLS[market]
    try:
        if session is None:
            with requests.Session() as own:
                response = own.get(target, timeout=timeout)
        else:
            response = session.get(target, timeout=timeout)
    except requests.RequestException as exc:
        raise MasterFileError(f"{market} master download failed: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise MasterFileError(f"{market} master download failed: HTTP {response.status_code}")
    return read_master_zip(response.content, market)
