"""Mapping of KIS answers (status + body) to typed errors, on the body shapes KIS is known to send."""

from __future__ import annotations

import json

import pytest

from kis.errors import (
    KisApiError,
    KisRateLimited,
    KisTokenExpired,
    KisTokenTooSoon,
    KisUnparseableResponse,
    decode_body,
    error_from_payload,
    one_line,
)

PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"


def body(**fields: str) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode()


def mapped(status: int, content: bytes, **kwargs: object) -> KisApiError | None:
    payload = decode_body(status, content, "application/json", path=PATH)
    return error_from_payload(status, payload, path=PATH, **kwargs)  # type: ignore[arg-type]


def test_success_bodies_map_to_no_error() -> None:
    assert mapped(200, body(rt_cd="0", msg_cd="MCA00000", msg1="정상처리 되었습니다.")) is None
    assert mapped(200, body(access_token="abc", token_type="Bearer")) is None


def test_rate_limit_is_transient() -> None:
    error = mapped(500, body(rt_cd="1", msg_cd="EGW00201", msg1="초당 거래건수를 초과하였습니다."))
    assert isinstance(error, KisRateLimited)
    assert error.transient
    assert (error.msg_cd, error.status) == ("EGW00201", 500)
    assert str(error) == f"{PATH}: HTTP 500 EGW00201 초당 거래건수를 초과하였습니다."


@pytest.mark.parametrize(("code", "status"), [("EGW00123", 500), ("EGW00121", 200), ("EGW00123", 401)])
def test_expired_or_invalid_token(code: str, status: int) -> None:
    error = mapped(status, body(rt_cd="1", msg_cd=code, msg1="기간이 만료된 token 입니다."))
    assert isinstance(error, KisTokenExpired)
    assert not error.transient
    assert error.msg_cd == code


def test_token_too_soon_in_both_body_shapes() -> None:
    too_soon = "접근토큰발급 잠시후 다시 시도하세요(1분당 1회)"
    gateway = mapped(500, body(rt_cd="1", msg_cd="EGW00133", msg1=too_soon))
    other = mapped(
        403,
        body(error_description="접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)", error_code="EGW00133"),
        retry_after=42.0,
    )
    assert isinstance(gateway, KisTokenTooSoon)
    assert gateway.retry_after is None
    assert isinstance(other, KisTokenTooSoon)
    assert (other.msg_cd, other.status, other.retry_after) == ("EGW00133", 403, 42.0)
    assert str(other).endswith("(retry in 42 s)")
    assert not other.transient


def test_business_error_carries_code_and_text() -> None:
    error = mapped(200, body(rt_cd="7", msg_cd="APBK0013", msg1="조회할 자료가 없습니다."))
    assert type(error) is KisApiError
    assert (error.msg_cd, error.msg1) == ("APBK0013", "조회할 자료가 없습니다.")
    assert not error.transient


def test_http_error_without_a_code() -> None:
    gateway = mapped(503, body(detail="busy"))
    client_side = mapped(404, body(detail="no such path"))
    assert type(gateway) is KisApiError and gateway.transient
    assert type(client_side) is KisApiError and not client_side.transient
    assert "HTTP 404" in str(client_side)


@pytest.mark.parametrize(
    ("status", "content", "content_type", "expected"),
    [
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "not JSON (text/html"),
        (200, b"", "application/json", "empty body"),
        (200, b"   \n", "application/json", "empty body"),
        (200, b"[1, 2]", "application/json", "JSON list, not an object"),
        (200, b"\xff\xfe{", "", "not JSON (unknown type"),
    ],
)
def test_unparseable_bodies(status: int, content: bytes, content_type: str, expected: str) -> None:
    with pytest.raises(KisUnparseableResponse) as caught:
        decode_body(status, content, content_type, path=PATH)
    assert expected in str(caught.value)
    assert caught.value.status == status
    assert caught.value.transient == (status == 502)


def test_secrets_echoed_by_the_server_are_redacted_and_messages_are_one_line() -> None:
    echoed = body(rt_cd="1", msg_cd="EGW00999", msg1="bad appkey PSecretKey123\nfor token tok-xyz")
    error = mapped(500, echoed, secrets=["PSecretKey123", "tok-xyz", ""])
    assert error is not None
    assert "PSecretKey123" not in str(error) and "tok-xyz" not in str(error)
    assert "PSecretKey123" not in error.msg1
    assert "\n" not in str(error)


def test_one_line_bounds_length() -> None:
    assert one_line("a\n b\t c") == "a b c"
    assert len(one_line("x" * 1000)) == 160
