"""KIS stock master files (`kospi_code.mst.zip`, `kosdaq_code.mst.zip`) for the simulated universe.

Laid out like the real downloads: cp949 text, one row per symbol; the head is `[0:9]` short code, `[9:21]`
ISIN, `[21:]` name, and the tail (the last 228 characters of a KOSPI row, 222 of a KOSDAQ row, newline
included) holds fixed-width columns in the order and widths of KIS's `kis_kospi_code_mst.py` /
`kis_kosdaq_code_mst.py` samples. Numbers are right-aligned and zero-padded.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Iterable
from datetime import date

from tools.kis_sim.listings import KOSDAQ, KOSPI, Listing

NAME_BYTES = 40

_SECTOR_FLAGS_KOSPI = (
    "mnin_cls_code_yn", "low_current_yn", "sprn_strr_nmix_issu_yn", "kospi200_apnt_cls_code",
    "kospi100_issu_yn", "kospi50_issu_yn", "krx_issu_yn", "etp_prod_cls_code", "elw_pblc_yn",
    "krx100_issu_yn",
    "krx_car_yn", "krx_smcn_yn", "krx_bio_yn", "krx_bank_yn", "etpr_undt_objt_co_yn", "krx_enrg_chms_yn",
    "krx_stel_yn", "short_over_cls_code", "krx_medi_cmnc_yn", "krx_cnst_yn", "krx_fnnc_svc_yn", "krx_scrt_yn",
    "krx_ship_yn", "krx_insu_yn", "krx_trnp_yn", "sri_nmix_yn",
)
_SECTOR_FLAGS_KOSDAQ = (
    "vntr_issu_yn", "low_current_yn", "krx_issu_yn", "etp_prod_cls_code", "krx100_issu_yn", "krx_car_yn",
    "krx_smcn_yn", "krx_bio_yn", "krx_bank_yn", "etpr_undt_objt_co_yn", "krx_enrg_chms_yn", "krx_stel_yn",
    "short_over_cls_code", "krx_medi_cmnc_yn", "krx_cnst_yn", "invt_alrm_yn", "krx_scrt_yn", "krx_ship_yn",
    "krx_insu_yn", "krx_trnp_yn", "ksq150_nmix_yn",
)
_HEAD = (("scrt_grp_cls_code", 2), ("avls_scal_cls_code", 1), ("bstp_larg_div_code", 4),
         ("bstp_medm_div_code", 4), ("bstp_smal_div_code", 4))
_MIDDLE = (
    ("stck_sdpr", 9), ("frml_mrkt_deal_qty_unit", 5), ("ovtm_mrkt_deal_qty_unit", 5), ("trht_yn", 1),
    ("sltr_yn", 1), ("mang_issu_yn", 1), ("mrkt_alrm_cls_code", 2), ("mrkt_alrm_risk_adnt_yn", 1),
    ("insn_pbnt_yn", 1), ("byps_lstn_yn", 1), ("flng_cls_code", 2), ("fcam_mod_cls_code", 2),
    ("icic_cls_code", 2), ("marg_rate", 3), ("crdt_able", 1), ("crdt_days", 3), ("prdy_vol", 12),
    ("stck_fcam", 12), ("stck_lstn_date", 8), ("lstn_stcn", 15), ("cpfn", 21), ("stac_month", 2),
    ("po_prc", 7), ("prst_cls_code", 1), ("ssts_hot_yn", 1), ("stange_runup_yn", 1), ("krx300_issu_yn", 1),
)
_TAIL = (
    ("sale_account", 9), ("bsop_prfi", 9), ("op_prfi", 9), ("thtr_ntin", 5), ("roe", 9), ("base_date", 8),
    ("prdy_avls_scal", 9), ("grp_code", 3), ("co_crdt_limt_over_yn", 1), ("secu_lend_able_yn", 1),
    ("stln_able_yn", 1),
)

KOSPI_COLUMNS: tuple[tuple[str, int], ...] = (
    *_HEAD, *((name, 1) for name in _SECTOR_FLAGS_KOSPI), *_MIDDLE, ("kospi_issu_yn", 1), *_TAIL,
)
KOSDAQ_COLUMNS: tuple[tuple[str, int], ...] = (
    *_HEAD, *((name, 1) for name in _SECTOR_FLAGS_KOSDAQ), *_MIDDLE, *_TAIL,
)
KOSPI_TAIL_LENGTH = sum(width for _, width in KOSPI_COLUMNS) + 1
KOSDAQ_TAIL_LENGTH = sum(width for _, width in KOSDAQ_COLUMNS) + 1
MST_NAMES = {KOSPI: "kospi_code.mst", KOSDAQ: "kosdaq_code.mst"}

assert len(KOSPI_COLUMNS) == 70 and KOSPI_TAIL_LENGTH == 228
assert len(KOSDAQ_COLUMNS) == 64 and KOSDAQ_TAIL_LENGTH == 222

_NUMERIC = frozenset({
    "stck_sdpr", "frml_mrkt_deal_qty_unit", "ovtm_mrkt_deal_qty_unit", "marg_rate", "crdt_days", "prdy_vol",
    "stck_fcam", "lstn_stcn", "cpfn", "po_prc", "sale_account", "bsop_prfi", "op_prfi", "thtr_ntin",
    "prdy_avls_scal",
})


def master_row(listing: Listing, trading_date: date) -> str:
    """One text row (newline included) of the master file of `listing.market`."""
    columns = KOSPI_COLUMNS if listing.market == KOSPI else KOSDAQ_COLUMNS
    values = _values(listing, trading_date)
    name = listing.name.encode("cp949")[:NAME_BYTES].decode("cp949", errors="ignore")
    padding = " " * (NAME_BYTES - len(name.encode("cp949")))
    head = f"{listing.code:<9}{listing.isin:<12}{name}{padding}"
    tail = "".join(_cell(values.get(column, "N"), width, column in _NUMERIC) for column, width in columns)
    return f"{head}{tail}\n"


def master_text(listings: Iterable[Listing], market: str, trading_date: date) -> str:
    return "".join(
        master_row(listing, trading_date)
        for listing in sorted(listings, key=lambda item: item.code)
        if listing.market == market
    )


def master_zip(listings: Iterable[Listing], market: str, trading_date: date) -> bytes:
    """The zipped cp949 master file of `market` ("KOSPI" or "KOSDAQ"), as served for download."""
    text = master_text(listings, market, trading_date)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MST_NAMES[market], text.encode("cp949"))
    return buffer.getvalue()


def _cell(value: object, width: int, numeric: bool) -> str:
    text = str(value)
    cell = text.rjust(width, "0") if numeric else text.ljust(width)
    if len(cell) != width:
        raise ValueError(f"master file value does not fit its column width {width}: {text!r}")
    return cell


def _values(listing: Listing, trading_date: date) -> dict[str, object]:
    rng = random.Random(f"master:{listing.code}")
    par_value = rng.choice((100, 500, 500, 1000, 5000))
    size = "1" if listing.market_cap >= 20_000 else "2" if listing.market_cap >= 2_000 else "3"
    preferred = listing.code.endswith("5")
    sales = max(1, listing.market_cap * rng.randint(3, 15) // 10)
    profit = sales * rng.randint(2, 15) // 100
    return {
        "scrt_grp_cls_code": "ST",
        "avls_scal_cls_code": size,
        "bstp_larg_div_code": "0001" if listing.market == KOSPI else "1001",
        "bstp_medm_div_code": f"{rng.randint(5, 27):04d}",
        "bstp_smal_div_code": "0000",
        "kospi200_apnt_cls_code": "0",
        "etp_prod_cls_code": "0",
        "short_over_cls_code": "0",
        "stck_sdpr": listing.prev_close,
        "frml_mrkt_deal_qty_unit": 1,
        "ovtm_mrkt_deal_qty_unit": 1,
        "trht_yn": "Y" if listing.halted else "N",
        "mang_issu_yn": "Y" if listing.managed else "N",
        "mrkt_alrm_cls_code": "00",
        "flng_cls_code": "00",
        "fcam_mod_cls_code": "00",
        "icic_cls_code": "00",
        "marg_rate": 100 if listing.managed else 40,
        "crdt_able": "N" if listing.managed or listing.halted else "Y",
        "crdt_days": 90,
        "prdy_vol": listing.prev_volume,
        "stck_fcam": par_value,
        "stck_lstn_date": f"{rng.randint(1975, 2022)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        "lstn_stcn": listing.listed_shares // 1000,
        "cpfn": listing.listed_shares * par_value,
        "stac_month": "12",
        "po_prc": 0,
        "prst_cls_code": "1" if preferred else "0",
        "kospi_issu_yn": "Y",
        "sale_account": sales,
        "bsop_prfi": profit,
        "op_prfi": profit,
        "thtr_ntin": min(99_999, profit * 7 // 10),
        "roe": f"{rng.uniform(1, 20):9.2f}",
        "base_date": f"{trading_date.year - 1}1231",
        "prdy_avls_scal": listing.market_cap,
        "grp_code": "000",
        "secu_lend_able_yn": "Y",
        "stln_able_yn": "N" if listing.managed else "Y",
    }
