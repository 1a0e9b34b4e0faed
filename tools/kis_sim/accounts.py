"""Simulated KIS accounts: one per app key, each with its own tokens, approval keys, rate limit and holdings.

Token lifetimes follow the simulated clock (a token lives 24 simulated hours, issuance at most once per
simulated minute); the per-second REST limit follows real monotonic time, like the real gateway.
Secrets are compared and stored but never appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from runtime.clock import Clock
from tools.kis_sim.faults import Faults
from tools.kis_sim.market import Market

TOKEN_LIFETIME = timedelta(hours=24)
TOKEN_REUSE_WINDOW = timedelta(hours=6)
TOKEN_ISSUE_INTERVAL = timedelta(minutes=1)
APPROVAL_LIFETIME = timedelta(hours=24)
REAL_RATE_PER_SECOND = 20
PAPER_RATE_PER_SECOND = 2


@dataclass(frozen=True, slots=True)
class Holding:
    code: str
    name: str
    quantity: int
    average_price: float


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    app_key: str = field(repr=False)
    issued_at: datetime
    expires_at: datetime
    epoch: int
    revoked: bool = False


class TokenCheck(Enum):
    VALID = "valid"
    INVALID = "invalid"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    value: str = field(repr=False)
    expires_at: datetime
    expires_in: int


class TooSoon(Exception):
    """A token was issued for this key less than a minute ago (EGW00133)."""


class WrongSecret(Exception):
    """The app secret does not match the one this app key was first used with (EGW00105)."""


FILL_SIDES = ("buy", "sell")


class Account:
    """One app key's account. Fields holding secrets are excluded from repr."""

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        paper: bool,
        seed: int,
        market: Market,
        holdings: int | None = None,
    ) -> None:
        self._app_key = app_key
        self._app_secret = app_secret
        self.paper = paper
        digest = _key_digest(seed, app_key)
        self.account_number = f"{int(digest[:12], 16) % 10**8:08d}"
        self.product_code = "01"
        self.hts_id = f"sim{digest[12:20]}"
        self.holdings = _seed_holdings(seed, digest, market, holdings)
        self.deposit = 10_000_000 + int(digest[20:26], 16) % 90_000_000
        self.rate_per_second = PAPER_RATE_PER_SECOND if paper else REAL_RATE_PER_SECOND
        self._calls: deque[float] = deque()
        self.last_issue: datetime | None = None
        self.token: _Token | None = None

    def __repr__(self) -> str:
        kind = "paper" if self.paper else "real"
        return f"Account({kind}, account {self.account_number[:2]}******, {len(self.holdings)} holdings)"

    def secret_matches(self, app_secret: str) -> bool:
        return secrets.compare_digest(self._app_secret.encode(), app_secret.encode())

    def admit(self, now: float) -> bool:
        """Count one REST call at monotonic `now`; False when it would exceed this key's per-second limit."""
        calls = self._calls
        while calls and now - calls[0] >= 1.0:
            calls.popleft()
        if len(calls) >= self.rate_per_second:
            return False
        calls.append(now)
        return True


class Accounts:
    """Registry of accounts by app key; thread-safe. Any non-empty app key and secret open an account."""

    def __init__(
        self,
        market: Market,
        faults: Faults,
        clock: Clock,
        *,
        seed: int = 1,
        paper_keys: tuple[str, ...] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._market = market
        self._faults = faults
        self._clock = clock
        self._seed = seed
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._paper_keys = set(paper_keys)
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, _Token] = {}
        self._approvals: dict[str, tuple[str, datetime]] = {}
        self._seeded: dict[str, int] = {}

    def register(self, app_key: str, *, paper: bool) -> None:
        """Declare `app_key` a paper (2 calls/s) or real (20 calls/s) key before its first use."""
        with self._lock:
            if paper:
                self._paper_keys.add(app_key)
            else:
                self._paper_keys.discard(app_key)
            account = self._accounts.get(app_key)
            if account is not None:
                account.paper = paper
                account.rate_per_second = PAPER_RATE_PER_SECOND if paper else REAL_RATE_PER_SECOND

    def account(self, app_key: str, app_secret: str) -> Account:
        """The account of `app_key`, opened on first use; WrongSecret if the secret differs from the first."""
        with self._lock:
            account = self._accounts.get(app_key)
            if account is None:
                paper = app_key in self._paper_keys
                holdings = self._seeded.get(app_key)
                account = Account(app_key, app_secret, paper, self._seed, self._market, holdings)
                self._accounts[app_key] = account
            elif not account.secret_matches(app_secret):
                raise WrongSecret("app secret does not match this app key")
            return account

    def known(self, app_key: str) -> Account | None:
        with self._lock:
            return self._accounts.get(app_key)

    def seed_holdings(self, app_key: str, count: int) -> None:
        """Give `app_key`'s account `count` holdings instead of its usual 2 to 5, e.g. more than one balance
        page (20 paper, 50 real). Deterministic from the seed and the key; works before the key's first use.
        """
        tradable = _tradable(self._market)
        if not 0 <= count <= len(tradable):
            raise ValueError(f"holdings to seed must be 0..{len(tradable)} (tradable symbols), got {count}")
        with self._lock:
            self._seeded[app_key] = count
            account = self._accounts.get(app_key)
            if account is not None:
                digest = _key_digest(self._seed, app_key)
                account.holdings = _seed_holdings(self._seed, digest, self._market, count)

    def apply_fill(self, app_key: str, symbol: str, side: str, qty: int, price: int) -> tuple[Holding, ...]:
        """Book an execution into the holdings of `app_key`'s account so the balance inquiry shows it.

        A buy adds `qty` at a new volume-weighted average price (a new symbol becomes the last row); a sell
        reduces the quantity at the same average price, and selling all of it removes the row. A sell of
        more than is held is refused (ValueError), as a cash account cannot go short. Returns the holdings.
        """
        if side not in FILL_SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if qty <= 0 or price <= 0:
            raise ValueError(f"fill needs a positive quantity and price, got {qty} x {price}")
        listing = self._market.listings.get(symbol)
        if listing is None:
            raise ValueError(f"unknown symbol {symbol!r}")
        with self._lock:
            account = self._accounts.get(app_key)
            if account is None:
                raise ValueError("no account has used this app key yet")
            account.holdings = _booked(account.holdings, listing.name, symbol, side, qty, price)
            return account.holdings

    def admit(self, account: Account) -> bool:
        """Count one REST call of `account`; False when over its per-second limit (EGW00201)."""
        with self._lock:
            return account.admit(self._monotonic())

    # ---- tokens -----------------------------------------------------------------------------------------

    def issue_token(self, app_key: str, app_secret: str) -> IssuedToken:
        """tokenP: at most once a minute per key; within 6 h of the last issue the same token comes back."""
        account = self.account(app_key, app_secret)
        now = self._clock.now()
        epoch = self._faults.token_epoch()
        with self._lock:
            if account.last_issue is not None and now - account.last_issue < TOKEN_ISSUE_INTERVAL:
                raise TooSoon("token issued less than a minute ago")
            account.last_issue = now
            current = account.token
            if (
                current is not None
                and not current.revoked
                and current.epoch == epoch
                and now - current.issued_at < TOKEN_REUSE_WINDOW
                and now < current.expires_at
            ):
                token = current
            else:
                token = _Token(
                    value=_new_token_value(), app_key=app_key, issued_at=now, expires_at=now + TOKEN_LIFETIME,
                    epoch=epoch,
                )
                account.token = token
                self._tokens[token.value] = token
        remaining = max(0, int((token.expires_at - now).total_seconds()))
        return IssuedToken(value=token.value, expires_at=token.expires_at, expires_in=remaining)

    def check_token(self, app_key: str, token_value: str) -> TokenCheck:
        """Whether `token_value` is a live token of `app_key` at the simulated now."""
        now = self._clock.now()
        epoch = self._faults.token_epoch()
        with self._lock:
            token = self._tokens.get(token_value)
            if token is None or token.revoked or not secrets.compare_digest(token.app_key, app_key):
                return TokenCheck.INVALID
            if token.epoch != epoch or now >= token.expires_at:
                return TokenCheck.EXPIRED
            return TokenCheck.VALID

    def revoke_token(self, app_key: str, app_secret: str, token_value: str) -> bool:
        """revokeP: False when the token is unknown or belongs to another key."""
        self.account(app_key, app_secret)
        with self._lock:
            token = self._tokens.get(token_value)
            if token is None or token.revoked or not secrets.compare_digest(token.app_key, app_key):
                return False
            token.revoked = True
            return True

    # ---- WebSocket approval keys ------------------------------------------------------------------------

    def issue_approval(self, app_key: str, app_secret: str) -> str:
        """Approval: a fresh 36-character key for the WebSocket, valid 24 simulated hours."""
        self.account(app_key, app_secret)
        key = str(uuid.uuid4())
        with self._lock:
            self._approvals[key] = (app_key, self._clock.now() + APPROVAL_LIFETIME)
        return key

    def app_key_for_approval(self, approval_key: str) -> str | None:
        """The app key an approval key was issued to, or None for an unknown or expired one."""
        with self._lock:
            entry = self._approvals.get(approval_key)
        if entry is None:
            return None
        app_key, expires_at = entry
        return app_key if self._clock.now() < expires_at else None

    def account_for_approval(self, approval_key: str) -> Account | None:
        app_key = self.app_key_for_approval(approval_key)
        return None if app_key is None else self.known(app_key)


def _booked(
    holdings: tuple[Holding, ...], name: str, symbol: str, side: str, qty: int, price: int
) -> tuple[Holding, ...]:
    """`holdings` after one fill (see `Accounts.apply_fill`)."""
    index = next((i for i, held in enumerate(holdings) if held.code == symbol), len(holdings))
    before, after = holdings[:index], holdings[index + 1 :]
    if index == len(holdings):
        if side == "sell":
            raise ValueError(f"cannot sell {qty} x {symbol}: the account holds 0")
        return (*holdings, Holding(code=symbol, name=name, quantity=qty, average_price=float(price)))
    held = holdings[index]
    if side == "buy":
        quantity = held.quantity + qty
        average = round((held.average_price * held.quantity + price * qty) / quantity, 4)
        return (*before, Holding(symbol, held.name, quantity, average), *after)
    if qty > held.quantity:
        raise ValueError(f"cannot sell {qty} x {symbol}: the account holds {held.quantity}")
    if qty == held.quantity:
        return (*before, *after)
    return (*before, Holding(symbol, held.name, held.quantity - qty, held.average_price), *after)


def _new_token_value() -> str:
    """A JWT-shaped opaque token (real KIS tokens are JWTs of about 350 characters)."""
    return f"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.{secrets.token_urlsafe(192)}.{secrets.token_urlsafe(64)}"


def _key_digest(seed: int, app_key: str) -> str:
    return hashlib.sha256(f"{seed}:{app_key}".encode()).hexdigest()


def _tradable(market: Market) -> list[str]:
    return sorted(code for code, listing in market.listings.items() if not listing.halted)


def _seed_holdings(seed: int, digest: str, market: Market, count: int | None) -> tuple[Holding, ...]:
    """Opening holdings: 2 to 5 symbols, or exactly `count` (drawn from a random stream of their own)."""
    tradable = _tradable(market)
    if count is None:
        rng = random.Random(f"holdings:{seed}:{digest}")
        count = min(len(tradable), rng.randint(2, 5))
    else:
        rng = random.Random(f"holdings:{seed}:{digest}:{count}")
    holdings = []
    for code in rng.sample(tradable, count):
        listing = market.listings[code]
        average = round(listing.prev_close * rng.uniform(0.8, 1.2), 4)
        quantity = rng.randint(1, max(1, min(2_000, 20_000_000 // max(listing.prev_close, 1))))
        holdings.append(Holding(code=code, name=listing.name, quantity=quantity, average_price=average))
    return tuple(holdings)
