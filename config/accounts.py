"""KIS accounts: one from `KIS_APP_KEY`/`KIS_APP_SECRET`, or a pool from the file in `KIS_ACCOUNTS_FILE`.

Each account is one app key, so one WebSocket with its own 41 registrations and its own REST rate limit.
This module is pure: it turns environment values and a parsed accounts document into plain dicts for
`Settings` to validate; `config.loader` reads the files and reports errors with their source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ACCOUNT_ENV = {
    "KIS_APP_KEY": "app_key",
    "KIS_APP_SECRET": "app_secret",
    "KIS_ACCOUNT_NO": "account_no",
    "KIS_HTS_ID": "hts_id",
    "KIS_PAPER": "paper",
}
"""Environment variables that describe the single account, and the `Account` field each one sets."""

_ACCOUNT_NO_WITH_PRODUCT = re.compile(r"^(\d{8})-?(\d{2})$")
_NAME_LIKE = re.compile(r"[a-z][a-z0-9_]{0,47}")


def shown_key(name: str) -> str:
    """A key name for an error message: quoted when it looks like a setting name (lowercase snake_case),
    else withheld, because a key that is no name may be an app key or secret pasted into the wrong place."""
    if _NAME_LIKE.fullmatch(name):
        return repr(name)
    return f"of {len(name)} characters that is no setting name (not shown: it may be a credential)"


class Account(BaseModel):
    """One KIS app key with its account.

    `name` is the `{provider}` part of data paths (acct1, acct2... by position when not given).
    `paper` selects the paper-trading (VTS) servers and their lower rate limit. `account_no` is the 8-digit
    CANO; "12345678-01" is also accepted and split into `account_no` and `product_code`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="acct1", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    app_key: SecretStr
    app_secret: SecretStr
    account_no: str = Field(default="", pattern=r"^(\d{8})?$", repr=False)
    product_code: str = Field(default="01", pattern=r"^\d{2}$")
    hts_id: str = ""
    paper: bool = False
    max_slots: int = Field(default=41, ge=1, le=41)

    @field_validator("app_key", "app_secret")
    @classmethod
    def _not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="before")
    @classmethod
    def _split_account_number(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("account_no"), str):
            match = _ACCOUNT_NO_WITH_PRODUCT.match(data["account_no"])
            if match and "product_code" not in data:
                return {**data, "account_no": match[1], "product_code": match[2]}
        return data


def account_from_env(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The single account described by `KIS_*` variables, or None when `KIS_APP_KEY` is not set.

    Raises ValueError when the key is set without its secret (or the reverse), naming the missing variable.
    """
    present = {field: env[name] for name, field in ACCOUNT_ENV.items() if env.get(name, "") != ""}
    if not present:
        return None
    for name in ("KIS_APP_KEY", "KIS_APP_SECRET"):
        if ACCOUNT_ENV[name] not in present:
            raise ValueError(f"{name} is not set (KIS_APP_KEY and KIS_APP_SECRET go together)")
    if "paper" in present:
        present["paper"] = _env_flag(present["paper"])
    return present


def accounts_from_document(document: Any) -> list[Any]:
    """The account entries of a parsed accounts file: a JSON array, or an object with an "accounts" array.

    Entries are returned as they are; `Settings` validates them. Raises ValueError on any other shape.
    """
    if isinstance(document, dict):
        extra = sorted(set(document) - {"accounts"})
        if extra:
            raise ValueError(f'unknown key {shown_key(extra[0])} (the file holds only "accounts")')
        document = document.get("accounts")
    if not isinstance(document, list):
        raise ValueError('expected a JSON array of accounts or an object with an "accounts" array')
    if not document:
        raise ValueError("the accounts list is empty")
    return document


def _env_flag(text: str) -> bool | str:
    """'true'/'1'/'yes' and 'false'/'0'/'no' in any case; anything else is left for validation to reject."""
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return text
