"""The master-file parser against fixture files built here from KIS's published column layout."""

from __future__ import annotations

import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kis.master import Market, MasterFileError, fetch_master, parse_master, read_master_zip
from tools.kis_sim.server import KisSimulator

# Tail columns in order with their widths, as in KIS's layout headers (종목마스터정보(코스피).h / (코스닥).h).
# Only the names the tests fill matter; the rest stay blank.
KOSPI_TAIL = [
    ("group", 2), ("cap_scale", 1), ("ind_l", 4), ("ind_m", 4), ("ind_s", 4),
    *[(f"flag{i}", 1) for i in range(26)],
    ("base_price", 9), ("lot", 5), ("ovtm_lot", 5), ("halted", 1),
    ("liquidation", 1), ("managed", 1), ("warning", 2), ("warning_notice", 1), ("dishonest", 1),
    ("backdoor", 1), ("lock", 2), ("par_change", 2), ("capital_increase", 2), ("margin", 3),
    ("credit", 1), ("credit_days", 3), ("prev_volume", 12), ("par", 12), ("listed_date", 8),
    ("listed_shares", 15), ("capital", 21), ("settle_month", 2), ("ipo_price", 7), ("preferred", 1),
    ("short_hot", 1), ("runup", 1), ("krx300", 1), ("kospi", 1), ("sales", 9),
    ("op_profit", 9), ("ord_profit", 9), ("net_income", 5), ("roe", 9), ("base_month", 8),
    ("market_cap", 9), ("group_co", 3), ("credit_over", 1), ("secured_loan", 1), ("lendable", 1),
]  # fmt: skip
KOSDAQ_TAIL = [
    ("group", 2), ("cap_scale", 1), ("ind_l", 4), ("ind_m", 4), ("ind_s", 4),
    *[(f"flag{i}", 1) for i in range(21)],
    ("base_price", 9), ("lot", 5), ("ovtm_lot", 5), ("halted", 1),
    ("liquidation", 1), ("managed", 1), ("warning", 2), ("warning_notice", 1), ("dishonest", 1),
    ("backdoor", 1), ("lock", 2), ("par_change", 2), ("capital_increase", 2), ("margin", 3),
    ("credit", 1), ("credit_days", 3), ("prev_volume", 12), ("par", 12), ("listed_date", 8),
    ("listed_shares", 15), ("capital", 21), ("settle_month", 2), ("ipo_price", 7), ("preferred", 1),
    ("short_hot", 1), ("runup", 1), ("krx300", 1), ("sales", 9),
    ("op_profit", 9), ("ord_profit", 9), ("net_income", 5), ("roe", 9), ("base_month", 8),
    ("market_cap", 9), ("group_co", 3), ("credit_over", 1), ("secured_loan", 1), ("lendable", 1),
]  # fmt: skip
LAYOUTS = {"KOSPI": KOSPI_TAIL, "KOSDAQ": KOSDAQ_TAIL}


def master_row(market: str, code: str, isin: str, name: str, **tail: str) -> str:
    """One line of a master file: head (code padded to 9, ISIN to 12, name) and the fixed tail."""
    columns = LAYOUTS[market]
    cells = []
    for column, width in columns:
        value = tail.pop(column, "")
        assert len(value) <= width, f"{column} wider than {width}"
        numeric = column in {"base_price", "listed_shares", "market_cap"}
        cells.append(value.rjust(width, "0") if numeric and value else value.ljust(width))
    assert not tail, f"unknown columns {sorted(tail)}"
    return f"{code:<9}{isin:<12}{name}" + "".join(cells)


def kospi_rows() -> list[str]:
    return [
        master_row(
            "KOSPI", "005930", "KR7005930003", "삼성전자", group="ST", base_price="71200",
            halted="N", managed="N", warning="00", listed_shares="5969783", market_cap="4250485",
            preferred="0",
        ),
        master_row(
            "KOSPI", "005935", "KR7005931001", "삼성전자우", group="ST", base_price="58900",
            halted="N", managed="N", listed_shares="822887", market_cap="484680", preferred="1",
        ),
        master_row(
            "KOSPI", "900110", "HK0000057197", "이스트아시아홀딩스", group="FS", base_price="153",
            halted="Y", managed="Y", warning="02", liquidation="Y", listed_shares="123", market_cap="1",
        ),
    ]  # fmt: skip


def test_tail_layout_widths_match_kis_published_totals() -> None:
    assert sum(width for _, width in KOSPI_TAIL) == 227
    assert sum(width for _, width in KOSDAQ_TAIL) == 221


def test_kospi_rows_parse_into_records() -> None:
    content = "\n".join(kospi_rows()).encode("cp949") + b"\n"
    parsed = parse_master(content, "KOSPI")
    assert parsed.rejected == ()
    samsung, preferred, halted = parsed.records
    assert (samsung.code, samsung.isin, samsung.name, samsung.market) == (
        "005930", "KR7005930003", "삼성전자", "KOSPI",
    )  # fmt: skip
    assert samsung.group_code == "ST"
    assert samsung.base_price == 71200
    assert samsung.listed_shares == 5_969_783_000
    assert samsung.market_cap == 4_250_485 * 100_000_000
    assert (samsung.halted, samsung.managed, samsung.liquidating, samsung.preferred) == (
        False, False, False, False,
    )  # fmt: skip
    assert samsung.warning_code == "00"
    assert preferred.preferred is True
    assert preferred.name == "삼성전자우"
    assert (halted.halted, halted.managed, halted.liquidating) == (True, True, True)
    assert halted.warning_code == "02"
    assert halted.group_code == "FS"


def test_kosdaq_layout_is_read_with_its_own_offsets() -> None:
    row = master_row(
        "KOSDAQ", "247540", "KR7247540008", "에코프로비엠", group="ST", base_price="182500",
        halted="Y", managed="N", listed_shares="97801", market_cap="178487", preferred="0",
    )  # fmt: skip
    parsed = parse_master((row + "\r\n").encode("cp949"), "KOSDAQ")
    (record,) = parsed.records
    assert (record.code, record.name, record.market) == ("247540", "에코프로비엠", "KOSDAQ")
    assert record.base_price == 182500
    assert record.halted is True
    assert record.listed_shares == 97_801_000
    assert record.market_cap == 178_487 * 100_000_000


def test_bad_lines_are_rejected_one_by_one_and_the_rest_kept() -> None:
    good = kospi_rows()[0].encode("cp949")
    short = b"000660   KR7000660001SK"
    bad_number = master_row("KOSPI", "000660", "KR7000660001", "SK하이닉스", base_price="12AB")
    bad_number_bytes = bad_number.encode("cp949")
    bad_bytes = b"\xff\xfe" + good[2:]
    content = b"\n".join([good, short, b"", bad_number_bytes, bad_bytes])
    parsed = parse_master(content, "KOSPI")
    assert [record.code for record in parsed.records] == ["005930"]
    assert len(parsed.rejected) == 3
    assert parsed.rejected[0].startswith("line 2: too short")
    assert parsed.rejected[1].startswith("line 4: base price is not a number")
    assert parsed.rejected[2] == "line 5: not cp949 text"
    assert all("\n" not in reason for reason in parsed.rejected)


def test_a_file_with_no_readable_row_is_an_error() -> None:
    with pytest.raises(MasterFileError, match="no readable row"):
        parse_master(b"garbage\nmore garbage\n", "KOSPI")


def write_zip(path: Path, member: str, rows: list[str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(member, "\n".join(rows).encode("cp949"))
    return path


def test_zip_as_served_is_read(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "kospi_code.zip", "kospi_code.mst", kospi_rows())
    parsed = read_master_zip(archive, "KOSPI")
    assert [record.code for record in parsed.records] == ["005930", "005935", "900110"]
    parsed_from_bytes = read_master_zip(archive.read_bytes(), "KOSPI")
    assert parsed_from_bytes == parsed


def test_zip_errors_are_one_line(tmp_path: Path) -> None:
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(MasterFileError, match="not a zip archive"):
        read_master_zip(not_zip, "KOSPI")
    wrong_member = write_zip(tmp_path / "y.zip", "readme.txt", ["hello"])
    with pytest.raises(MasterFileError, match=r"holds no kospi_code\.mst"):
        read_master_zip(wrong_member, "KOSPI")


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving tmp_path, like KIS's download host."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_fetch_master_downloads_and_parses(tmp_path: Path, file_server: str) -> None:
    write_zip(tmp_path / "kospi_code.mst.zip", "kospi_code.mst", kospi_rows())
    parsed = fetch_master("KOSPI", url=f"{file_server}/kospi_code.mst.zip", timeout=5)
    assert len(parsed.records) == 3
    with pytest.raises(MasterFileError, match="HTTP 404"):
        fetch_master("KOSDAQ", url=f"{file_server}/missing.zip", timeout=5)


@pytest.mark.parametrize("market", ["KOSPI", "KOSDAQ"])
def test_the_simulators_master_files_parse_to_its_listings(kis_sim: KisSimulator, market: Market) -> None:
    file_name = "kospi_code.mst.zip" if market == "KOSPI" else "kosdaq_code.mst.zip"
    parsed = fetch_master(market, url=f"{kis_sim.rest_url}/master/{file_name}", timeout=10)
    assert parsed.rejected == ()
    listings = {code: item for code, item in kis_sim.market.listings.items() if item.market == market}
    assert sorted(record.code for record in parsed.records) == sorted(listings)
    for record in parsed.records:
        listing = listings[record.code]
        assert (record.isin, record.name, record.market) == (listing.isin, listing.name, market)
        assert record.base_price == listing.prev_close
        assert (record.halted, record.managed) == (listing.halted, listing.managed)
        assert record.listed_shares == listing.listed_shares // 1000 * 1000
        assert record.market_cap == listing.market_cap * 100_000_000
        assert record.group_code == "ST"
