"""Column orders of the KIS real-time frames, shared by the codec and the simulator."""

from __future__ import annotations

H0STCNT0_FIELDS: tuple[str, ...] = (
    "MKSC_SHRN_ISCD", "STCK_CNTG_HOUR", "STCK_PRPR", "PRDY_VRSS_SIGN", "PRDY_VRSS", "PRDY_CTRT",
    "WGHN_AVRG_STCK_PRC", "STCK_OPRC", "STCK_HGPR", "STCK_LWPR", "ASKP1", "BIDP1", "CNTG_VOL", "ACML_VOL",
    "ACML_TR_PBMN", "SELN_CNTG_CSNU", "SHNU_CNTG_CSNU", "NTBY_CNTG_CSNU", "CTTR", "SELN_CNTG_SMTN",
    "SHNU_CNTG_SMTN", "CCLD_DVSN", "SHNU_RATE", "PRDY_VOL_VRSS_ACML_VOL_RATE", "OPRC_HOUR",
    "OPRC_VRSS_PRPR_SIGN", "OPRC_VRSS_PRPR", "HGPR_HOUR", "HGPR_VRSS_PRPR_SIGN", "HGPR_VRSS_PRPR",
    "LWPR_HOUR", "LWPR_VRSS_PRPR_SIGN", "LWPR_VRSS_PRPR", "BSOP_DATE", "NEW_MKOP_CLS_CODE", "TRHT_YN",
    "ASKP_RSQN1", "BIDP_RSQN1", "TOTAL_ASKP_RSQN", "TOTAL_BIDP_RSQN", "VOL_TNRT",
    "PRDY_SMNS_HOUR_ACML_VOL", "PRDY_SMNS_HOUR_ACML_VOL_RATE", "HOUR_CLS_CODE", "MRKT_TRTM_CLS_CODE",
    "VI_STND_PRC",
)

H0STASP0_FIELDS: tuple[str, ...] = (
    "MKSC_SHRN_ISCD", "BSOP_HOUR", "HOUR_CLS_CODE",
    *(f"ASKP{i}" for i in range(1, 11)),
    *(f"BIDP{i}" for i in range(1, 11)),
    *(f"ASKP_RSQN{i}" for i in range(1, 11)),
    *(f"BIDP_RSQN{i}" for i in range(1, 11)),
    "TOTAL_ASKP_RSQN", "TOTAL_BIDP_RSQN", "OVTM_TOTAL_ASKP_RSQN", "OVTM_TOTAL_BIDP_RSQN",
    "ANTC_CNPR", "ANTC_CNQN", "ANTC_VOL", "ANTC_CNTG_VRSS", "ANTC_CNTG_VRSS_SIGN", "ANTC_CNTG_PRDY_CTRT",
    "ACML_VOL", "TOTAL_ASKP_RSQN_ICDC", "TOTAL_BIDP_RSQN_ICDC", "OVTM_TOTAL_ASKP_ICDC",
    "OVTM_TOTAL_BIDP_ICDC", "STCK_DEAL_CLS_CODE",
)

H0UNASP0_FIELDS: tuple[str, ...] = (
    *H0STASP0_FIELDS,
    "KMID_PRC", "KMID_TOTAL_RSQN", "KMID_CLS_CODE", "NMID_PRC", "NMID_TOTAL_RSQN", "NMID_CLS_CODE",
)
"""H0UNASP0 (unified) and H0NXASP0 (NXT) order books: H0STASP0's columns and six mid-price columns. The
H0UNCNT0 / H0NXCNT0 trade frames have H0STCNT0's 46 columns (column 21 is named CNTG_CLS_CODE there)."""

H0STPGM0_FIELDS: tuple[str, ...] = (
    "MKSC_SHRN_ISCD", "STCK_CNTG_HOUR", "SELN_CNQN", "SELN_TR_PBMN", "SHNU_CNQN", "SHNU_TR_PBMN",
    "NTBY_CNQN", "NTBY_TR_PBMN", "SELN_RSQN", "SHNU_RSQN", "WHOL_NTBY_QTY",
)
"""H0STPGM0 (KRX), H0NXPGM0 (NXT) and H0UNPGM0 (unified) program trading: the day's program sell and buy
volumes and values so far, their net, and the program orders resting in the book (KIS's examples_llm)."""

# H0STCNI0 (real) / H0STCNI9 (paper) execution notice, 26 fields after decryption. The KIS API documentation
# and most clients put OODER_NO at 3 and ODER_QTY at 16; the official examples_llm sample lists ODER_QTY at 3
# and ACNT_NO2 at 16. This follows the documentation; older servers sent a 23-field variant that shares the
# first 18 columns.
H0STCNI0_FIELDS: tuple[str, ...] = (
    "CUST_ID", "ACNT_NO", "ODER_NO", "OODER_NO", "SELN_BYOV_CLS", "RCTF_CLS", "ODER_KIND", "ODER_COND",
    "STCK_SHRN_ISCD", "CNTG_QTY", "CNTG_UNPR", "STCK_CNTG_HOUR", "RFUS_YN", "CNTG_YN", "ACPT_YN", "BRNC_NO",
    "ODER_QTY", "ACNT_NAME", "ORD_COND_PRC", "ORD_EXG_GB", "POPUP_YN", "FILLER", "CRDT_CLS", "CRDT_LOAN_DATE",
    "CNTG_ISNM40", "ODER_PRC",
)

H0IFCNT0_FIELDS: tuple[str, ...] = (
    "FUTS_SHRN_ISCD", "BSOP_HOUR", "FUTS_PRDY_VRSS", "PRDY_VRSS_SIGN", "FUTS_PRDY_CTRT", "FUTS_PRPR",
    "FUTS_OPRC", "FUTS_HGPR", "FUTS_LWPR", "LAST_CNQN", "ACML_VOL", "ACML_TR_PBMN", "HTS_THPR", "MRKT_BASIS",
    "DPRT", "NMSC_FCTN_STPL_PRC", "FMSC_FCTN_STPL_PRC", "SPEAD_PRC", "HTS_OTST_STPL_QTY",
    "OTST_STPL_QTY_ICDC", "OPRC_HOUR", "OPRC_VRSS_PRPR_SIGN", "OPRC_VRSS_NMIX_PRPR", "HGPR_HOUR",
    "HGPR_VRSS_PRPR_SIGN", "HGPR_VRSS_NMIX_PRPR", "LWPR_HOUR", "LWPR_VRSS_PRPR_SIGN", "LWPR_VRSS_NMIX_PRPR",
    "SHNU_RATE", "CTTR", "ESDG", "OTST_STPL_RGBF_QTY_ICDC", "THPR_BASIS", "FUTS_ASKP1", "FUTS_BIDP1",
    "ASKP_RSQN1", "BIDP_RSQN1", "SELN_CNTG_CSNU", "SHNU_CNTG_CSNU", "NTBY_CNTG_CSNU", "SELN_CNTG_SMTN",
    "SHNU_CNTG_SMTN", "TOTAL_ASKP_RSQN", "TOTAL_BIDP_RSQN", "PRDY_VOL_VRSS_ACML_VOL_RATE",
    "DSCS_BLTR_ACML_QTY", "DYNM_MXPR", "DYNM_LLAM", "DYNM_PRC_LIMT_YN",
)
"""Index futures trades (지수선물 실시간체결가, H0IFCNT0): 50 columns in KIS's published order. Prices are
index points with two decimals; the record has a time of day (BSOP_HOUR) but no date."""

H0STCNT0_INDEX = {name: i for i, name in enumerate(H0STCNT0_FIELDS)}
H0STASP0_INDEX = {name: i for i, name in enumerate(H0STASP0_FIELDS)}
H0STPGM0_INDEX = {name: i for i, name in enumerate(H0STPGM0_FIELDS)}
H0STCNI0_INDEX = {name: i for i, name in enumerate(H0STCNI0_FIELDS)}
H0IFCNT0_INDEX = {name: i for i, name in enumerate(H0IFCNT0_FIELDS)}

assert len(H0STCNT0_FIELDS) == 46 and len(H0STASP0_FIELDS) == 59 and len(H0STCNI0_FIELDS) == 26
assert len(H0UNASP0_FIELDS) == 65 and len(H0STPGM0_FIELDS) == 11
