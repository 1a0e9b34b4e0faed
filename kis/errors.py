"""Typed KIS REST errors and the pure mapping from an HTTP response to them.

Every message is one line and carries only the path, the HTTP status and KIS's own code and text, so an
exception can be logged as is: app keys, secrets and tokens never enter it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kis.protocol import ErrorCode

TOKEN_REJECTED_CODES = frozenset({ErrorCode.TOKEN_EXPIRED, ErrorCode.TOKEN_INVALID})
TRANSIENT_HTTP_STATUSES = frozenset({502, 503, 504})
_MAX_TEXT = 160


class KisError(Exception):
    """Base of every KIS REST failure. `transient` says whether the same call may succeed if retried."""

    transient: bool = False

    def __init__(self, message: str, *, path: str = "", status: int | None = None) -> None:
        super().__init__(one_line(message))
        self.path = path
        self.status = status


class KisTransportError(KisError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure."""

    transient = True


class KisUnparseableResponse(KisError):
    """An answer that is not a JSON object (an HTML error page, an empty body, garbage)."""

    def __init__(self, message: str, *, path: str = "", status: int | None = None) -> None:
        super().__init__(message, path=path, status=status)
        self.transient = status in TRANSIENT_HTTP_STATUSES


class KisApiError(KisError):
    """KIS answered with an error code: `rt_cd` not "0", or the `error_code` shape of the auth endpoints."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        status: int | None = None,
        msg_cd: str = "",
        msg1: str = "",
    ) -> None:
        super().__init__(message, path=path, status=status)
        self.msg_cd = msg_cd
        self.msg1 = one_line(msg1)
        if type(self) is KisApiError and not msg_cd:
            self.transient = status in TRANSIENT_HTTP_STATUSES


class KisRateLimited(KisApiError):
    """EGW00201: more requests per second than the key allows."""

    transient = True


class KisTokenExpired(KisApiError):
    """EGW00123 (expired) or EGW00121 (invalid): the access token must be replaced."""


class KisTokenTooSoon(KisApiError):
    """EGW00133: a token was issued less than a minute ago. `retry_after` is seconds to wait, if known."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


def one_line(text: str, limit: int = _MAX_TEXT) -> str:
    """Collapse whitespace so that a message is a single log line, and bound its length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret (ignoring empty ones) so that it cannot reach a message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def decode_body(status: int, content: bytes, content_type: str, *, path: str) -> dict[str, Any]:
    """The JSON object of a KIS answer, or `KisUnparseableResponse` naming what came instead."""
    where = f"{path}: HTTP {status}"
    if not content.strip():
        raise KisUnparseableResponse(f"{where}: empty body", path=path, status=status)
    try:
        payload = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        kind = content_type.split(";")[0].strip() or "unknown type"
        raise KisUnparseableResponse(
            f"{where}: body is not JSON ({kind}, {len(content)} bytes)", path=path, status=status
        ) from None
    if not isinstance(payload, dict):
        raise KisUnparseableResponse(
            f"{where}: body is JSON {type(payload).__name__}, not an object", path=path, status=status
        )
    return payload


def error_from_payload(
    status: int,
    payload: Mapping[str, Any],
    *,
    path: str,
    secrets: Iterable[str] = (),
    retry_after: float | None = None,
) -> KisApiError | None:
    """The error a decoded KIS answer stands for, or None when it is a success.

    Success is HTTP 2xx with `rt_cd` "0", or HTTP 2xx without `rt_cd` (the auth endpoints). The auth
    endpoints' other error shape, `{"error_code", "error_description"}`, is read like `msg_cd`/`msg1`.
    """
    msg_cd = str(payload.get("msg_cd") or payload.get("error_code") or "")
    msg1 = redact(str(payload.get("msg1") or payload.get("error_description") or ""), list(secrets))
    rt_cd = payload.get("rt_cd")
    failed = (rt_cd is not None and str(rt_cd) != "0") or "error_code" in payload or not 200 <= status < 300
    if not failed:
        return None
    text = f"{path}: HTTP {status}"
    if msg_cd:
        text += f" {msg_cd}"
    if msg1:
        text += f" {msg1}"
    if not msg_cd and not msg1:
        text += f" rt_cd={rt_cd!r}" if rt_cd is not None else " error without a KIS code"
    fields: dict[str, Any] = {"path": path, "status": status, "msg_cd": msg_cd, "msg1": msg1}
    if msg_cd == ErrorCode.RATE_LIMIT:
        return KisRateLimited(text, **fields)
    if msg_cd in TOKEN_REJECTED_CODES:
        return KisTokenExpired(text, **fields)
    if msg_cd == ErrorCode.TOKEN_TOO_SOON:
        if retry_after is not None:
            text += f" (retry in {retry_after:.0f} s)"
        return KisTokenTooSoon(text, retry_after=retry_after, **fields)
    return KisApiError(text, **fields)
