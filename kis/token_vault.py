"""TokenVault: every account's access token and WebSocket approval key, shared by the whole process.

KIS issues a 24 h token at most once a minute per app key and tells the user by KakaoTalk each time, so the
vault issues as rarely as it can:

- tokens and approval keys are cached on disk, one JSON file per account named by a hash of the app key
  and the server (never the key itself), mode 0600, in `TokenSettings.cache_dir` (outside the repository
  by default), and reused across restarts while valid;
- issuance is spaced `min_issue_interval_seconds` apart per key on the monotonic clock (a token lives on
  the injected clock, but the gateway's minute is real time); an EGW00133 answer anyway (another process,
  a restart) is waited out once and the issuance tried once more, never in a loop;
- `token_source(account)` is what `KisRestClient` asks: `current()` hands out the cached token, issuing
  only when none is valid; `refresh(rejected)` is the emergency refresh after EGW00123/EGW00121, and a
  caller whose rejected token was already replaced by another caller gets the replacement without a new
  issuance.

One process owns issuance and the cache file: the control process's `TokenVault`. The stream process
holds a `TokenCache`, which reads that file at each use and never issues or writes, so the approval key
the control process renewed at 08:30 is the one the stream's next (re)connect presents.

Every token, approval key, app key and secret is registered with `runtime.logs.register_secret`, so a
log line can never show one; nothing here puts one in an exception message or a repr.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import SecretStr

from config.accounts import Account
from config.settings import RateLimitSettings, TokenSettings
from kis.errors import KisTokenTooSoon
from kis.models import AccessToken, ApprovalKey
from kis.protocol import PAPER_REST_URL, REAL_REST_URL
from kis.ratelimit import PROCESS_LIMITERS, RateLimiterRegistry
from kis.rest import KisRestClient, TokenSource
from runtime.clock import Clock
from runtime.logs import register_secret

TOKEN_LIFETIME = timedelta(hours=24)
APPROVAL_LIFETIME = timedelta(hours=24)
"""KIS does not document the approval key's lifetime; it is treated like the token's."""
VALIDITY_MARGIN = timedelta(minutes=5)
"""A credential this close to its end counts as expired: a call made with it could fail on the way."""
CACHE_VERSION = 1
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


class VaultClosed(RuntimeError):
    """The vault was closed while a caller waited for the next issuance slot."""


class CredentialsUnavailable(RuntimeError):
    """The token cache holds no valid credential of the kind asked for (the control process has not
    written one yet, or it expired); the message names the account and the file, never a secret."""


@dataclass(slots=True)
class _Credentials:
    token: AccessToken | None = None
    token_issued_at: datetime | None = None
    approval: ApprovalKey | None = None
    loaded: bool = False
    last_issue_mono: float | None = None
    issued: int = 0
    too_soon: int = 0
    refreshed_from: str | None = None
    """Digest of the last token an emergency refresh replaced."""


class TokenVault:
    """Per-account tokens and approval keys, cached on disk. Thread-safe; implements `CredentialVault`."""

    def __init__(
        self,
        accounts: Sequence[Account],
        clock: Clock,
        settings: TokenSettings | None = None,
        *,
        rest_url: str | None = None,
        rate_limits: RateLimitSettings | None = None,
        limiters: RateLimiterRegistry = PROCESS_LIMITERS,
        cache_dir: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or TokenSettings()
        self.clock = clock
        self.cache_dir = (cache_dir or Path(self.settings.cache_dir)).expanduser()
        self._monotonic = monotonic
        self._closing = threading.Event()
        self._accounts = {account.name: account for account in accounts}
        self._locks = {name: threading.RLock() for name in self._accounts}
        self._credentials = {name: _Credentials() for name in self._accounts}
        self._sources = {name: _VaultTokenSource(self, name) for name in self._accounts}
        self._clients: dict[str, KisRestClient] = {}
        self._servers: dict[str, str] = {}
        for name, account in self._accounts.items():
            register_secret(account.app_key)
            register_secret(account.app_secret)
            client = KisRestClient(
                account,
                base_url=rest_url,
                tokens=self._sources[name],
                clock=clock,
                rate_limits=rate_limits,
                limiters=limiters,
            )
            self._clients[name] = client
            self._servers[name] = rest_url or (PAPER_REST_URL if account.paper else REAL_REST_URL)

    def __repr__(self) -> str:
        return f"TokenVault({', '.join(self._accounts)}; cache {self.cache_dir})"

    def close(self) -> None:
        """End any wait for an issuance slot (the waiter gets `VaultClosed`) and close the HTTP sessions."""
        self._closing.set()
        for client in self._clients.values():
            client.close()

    # --- CredentialVault ---------------------------------------------------------------------------

    def token_source(self, account: str) -> TokenSource:
        return self._sources[self._known(account)]

    def approval_key(self, account: str) -> SecretStr:
        """The account's WebSocket approval key, issued when none is valid."""
        return self._approval(account, force=False).key

    # --- lifecycle (the TokenActor) ------------------------------------------------------------------

    def access_token(self, account: str) -> AccessToken:
        """The account's valid access token: from memory, from the disk cache, or newly issued."""
        name = self._known(account)
        with self._locks[name]:
            held = self._loaded(name)
            if held.token is not None and held.token.is_valid_at(self.clock.now(), VALIDITY_MARGIN):
                return held.token
            return self._issue(name, reason="no valid token")

    def ensure(self, account: str) -> None:
        """Make sure the account holds a valid token and approval key (issuing only what is missing)."""
        self.access_token(account)
        self._approval(account, force=False)

    def renew(self, account: str, reason: str) -> None:
        """Replace both the token and the approval key (the 08:30 pre-market refresh)."""
        self.renew_token(account, reason)
        self._approval(account, force=True)

    def renew_token(self, account: str, reason: str) -> AccessToken:
        """Issue a new token now (waiting for the issuance slot); KIS may hand back the same one."""
        name = self._known(account)
        with self._locks[name]:
            last = self._loaded(name).last_issue_mono
        if last is not None:
            # Wait for the issuance slot without the lock: the held token stays usable meanwhile.
            self._wait(name, self._issue_interval - (self._monotonic() - last), "the one-per-minute limit")
        with self._locks[name]:
            return self._issue(name, reason=reason)

    def renew_approval_key(self, account: str) -> ApprovalKey:
        return self._approval(account, force=True)

    def token_age(self, account: str) -> timedelta | None:
        """How old the held token is (None when there is none)."""
        name = self._known(account)
        with self._locks[name]:
            issued_at = self._loaded(name).token_issued_at
        return None if issued_at is None else self.clock.now() - issued_at

    def token_expires_at(self, account: str) -> datetime | None:
        """When the held token expires (None when there is none)."""
        name = self._known(account)
        with self._locks[name]:
            token = self._loaded(name).token
        return None if token is None else token.expires_at

    def approval_age(self, account: str) -> timedelta | None:
        name = self._known(account)
        with self._locks[name]:
            approval = self._loaded(name).approval
        return None if approval is None else self.clock.now() - approval.issued_at

    def issued_count(self, account: str) -> int:
        """Tokens this vault has issued for the account (0 when the disk cache served every request)."""
        return self._credentials[self._known(account)].issued

    def too_soon_count(self, account: str) -> int:
        """EGW00133 answers the vault had to wait out for the account."""
        return self._credentials[self._known(account)].too_soon

    def cache_path(self, account: str) -> Path:
        name = self._known(account)
        return cache_file(self.cache_dir, self._accounts[name], self._servers[name])

    # --- the source the REST clients use -------------------------------------------------------------

    def _current(self, account: str) -> SecretStr:
        return self.access_token(account).token

    def _refresh(self, account: str, rejected: SecretStr) -> SecretStr:
        with self._locks[account]:
            credentials = self._loaded(account)
            held = credentials.token
            if held is not None and held.token.get_secret_value() != rejected.get_secret_value():
                return held.token
            digest = _digest(rejected)
            if held is not None and credentials.refreshed_from == digest:
                # This token was refreshed already and KIS handed the same one back: issuing again
                # would only draw EGW00133; the caller's one retry fails and it reports the error.
                return held.token
            logger.warning("{}: KIS rejected the access token; emergency refresh", account)
            token = self._issue(account, reason="token rejected by KIS").token
            credentials.refreshed_from = digest
            return token

    # --- internals -------------------------------------------------------------------------------------

    @property
    def _issue_interval(self) -> float:
        return self.settings.min_issue_interval_seconds

    def _known(self, account: str) -> str:
        if account not in self._accounts:
            raise KeyError(f"no account named {account!r} in the token vault")
        return account

    def _issue(self, name: str, reason: str) -> AccessToken:
        """Issue one token (caller holds the account's lock): wait for the slot, wait out one EGW00133."""
        held = self._credentials[name]
        interval = self._issue_interval
        if held.last_issue_mono is not None:
            since = self._monotonic() - held.last_issue_mono
            self._wait(name, interval - since, "the one-per-minute limit")
        client = self._clients[name]
        try:
            token = client.issue_token()
        except KisTokenTooSoon as error:
            held.too_soon += 1
            held.last_issue_mono = self._monotonic()
            delay = error.retry_after if error.retry_after is not None else interval
            self._wait(name, delay, "EGW00133 (a token was issued less than a minute ago)")
            token = client.issue_token()
        held.last_issue_mono = self._monotonic()
        held.issued += 1
        register_secret(token.token)
        now = self.clock.now()
        held.token = token
        held.token_issued_at = min(now, token.expires_at - TOKEN_LIFETIME)
        logger.info(
            "{}: access token issued ({}), valid until {:%Y-%m-%d %H:%M}", name, reason, token.expires_at
        )
        self._save(name)
        return token

    def _approval(self, account: str, *, force: bool) -> ApprovalKey:
        name = self._known(account)
        with self._locks[name]:
            held = self._loaded(name)
            now = self.clock.now()
            if (
                not force
                and held.approval is not None
                and now - held.approval.issued_at < APPROVAL_LIFETIME - VALIDITY_MARGIN
            ):
                return held.approval
            approval = self._clients[name].issue_approval_key()
            register_secret(approval.key)
            held.approval = approval
            logger.info("{}: WebSocket approval key issued", name)
            self._save(name)
            return approval

    def _wait(self, name: str, seconds: float, why: str) -> None:
        if seconds <= 0:
            return
        logger.info("{}: waiting {:.1f} s before issuing a token ({})", name, seconds, why)
        if self._closing.wait(seconds):
            raise VaultClosed(f"{name}: token vault closed while waiting to issue a token")

    def _loaded(self, name: str) -> _Credentials:
        """The account's credentials, read from the disk cache on first use (caller holds the lock)."""
        held = self._credentials[name]
        if not held.loaded:
            held.loaded = True
            self._read_cache(name, held)
        return held

    def _read_cache(self, name: str, held: _Credentials) -> None:
        path = self.cache_path(name)
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                logger.warning("{}: token cache {} had mode {:o}; tightened to 600", name, path, mode)
                path.chmod(FILE_MODE)
        token, issued_at, approval = _read_cache_file(name, path, self.clock.now())
        if token is not None:
            held.token, held.token_issued_at = token, issued_at
            logger.info(
                "{}: reusing the cached access token (valid until {:%Y-%m-%d %H:%M})", name, token.expires_at
            )
        if approval is not None:
            held.approval = approval

    def _save(self, name: str) -> None:
        """Write the account's cache file atomically with mode 0600 (a failure is logged, never raised)."""
        held = self._credentials[name]
        document: dict[str, Any] = {"version": CACHE_VERSION, "account": name}
        if held.token is not None and held.token_issued_at is not None:
            document |= {
                "access_token": held.token.token.get_secret_value(),
                "token_type": held.token.token_type,
                "expires_at": held.token.expires_at.isoformat(),
                "issued_at": held.token_issued_at.isoformat(),
            }
        if held.approval is not None:
            document |= {
                "approval_key": held.approval.key.get_secret_value(),
                "approval_issued_at": held.approval.issued_at.isoformat(),
            }
        path = self.cache_path(name)
        try:
            self.cache_dir.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".token-", suffix=".tmp", dir=self.cache_dir)
            try:
                os.fchmod(fd, FILE_MODE)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(document, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
        except OSError as error:
            logger.error(
                "{}: could not write the token cache in {} ({})", name, self.cache_dir, error.strerror
            )


class TokenCache:
    """The stream process's credentials (a `CredentialVault`): what the control process's `TokenVault` last
    wrote to the cache file, read at every use. Nothing is issued or written here, so one process owns
    issuance and the file, and a key renewed there is the one the next connect here presents. Sharing
    the 0600 file keeps every secret off the spine.

    `own_approval` (a stream worker on another machine, `--accounts`): when the file holds no valid approval
    key for an account, issue one with the account's own app key and secret and keep it in memory until it
    nears its end. No access token is ever issued here and the file is never written, so the control
    process's credentials are untouched."""

    def __init__(
        self,
        accounts: Sequence[Account],
        clock: Clock,
        settings: TokenSettings | None = None,
        *,
        rest_url: str | None = None,
        cache_dir: Path | None = None,
        own_approval: bool = False,
    ) -> None:
        self.clock = clock
        self._accounts = {account.name: account for account in accounts}
        self._rest_url = rest_url
        self._own_approval = own_approval
        self._own: dict[str, ApprovalKey] = {}
        self._own_lock = threading.Lock()
        self.cache_dir = (cache_dir or Path((settings or TokenSettings()).cache_dir)).expanduser()
        self._paths = {
            account.name: cache_file(
                self.cache_dir, account, rest_url or (PAPER_REST_URL if account.paper else REAL_REST_URL)
            )
            for account in accounts
        }
        for account in accounts:
            register_secret(account.app_key)
            register_secret(account.app_secret)

    def __repr__(self) -> str:
        return f"TokenCache({', '.join(self._paths)}; cache {self.cache_dir})"

    def approval_key(self, account: str) -> SecretStr:
        """The approval key the control process last wrote for `account`; CredentialsUnavailable if none
        is valid."""
        _, _, approval = self._read(account)
        if approval is None and self._own_approval:
            approval = self._issued_here(account)
        if approval is None:
            raise CredentialsUnavailable(f"{account}: no valid approval key in the token cache "
                                         f"{self._paths[account]} (the control process writes it)")
        return approval.key

    def _issued_here(self, account: str) -> ApprovalKey:
        """This worker's own approval key for `account`: the one held while valid, else a new one."""
        with self._own_lock:
            held = self._own.get(account)
            if held is not None and self.clock.now() - held.issued_at < APPROVAL_LIFETIME - VALIDITY_MARGIN:
                return held
            client = KisRestClient(self._accounts[account], base_url=self._rest_url, clock=self.clock)
            try:
                approval = client.issue_approval_key()
            finally:
                client.close()
            register_secret(approval.key)
            self._own[account] = approval
            logger.info("{}: no approval key in the token cache here: issued this worker's own WebSocket "
                        "approval key (kept in memory; the control's tokens are untouched)", account)
            return approval

    def token_source(self, account: str) -> TokenSource:
        return _CachedTokenSource(self, account)

    def access_token(self, account: str) -> SecretStr:
        """The access token the control process last wrote for `account`; CredentialsUnavailable if none
        is valid."""
        token, _, _ = self._read(account)
        if token is None:
            raise CredentialsUnavailable(f"{account}: no valid access token in the token cache "
                                         f"{self._paths[account]} (the control process writes it)")
        return token.token

    def _read(self, account: str) -> tuple[AccessToken | None, datetime | None, ApprovalKey | None]:
        if account not in self._paths:
            raise KeyError(f"no account named {account!r} in the token cache")
        return _read_cache_file(account, self._paths[account], self.clock.now())


class _CachedTokenSource:
    """`kis.rest.TokenSource` over the cache file: a rejected token is answered with a newer one from the
    file when the control process has written one, else the rejection stands."""

    def __init__(self, cache: TokenCache, account: str) -> None:
        self._cache = cache
        self._account = account

    def __repr__(self) -> str:
        return f"<cached token source {self._account}>"

    def current(self) -> SecretStr:
        return self._cache.access_token(self._account)

    def refresh(self, rejected: SecretStr) -> SecretStr:
        return self._cache.access_token(self._account)


class _VaultTokenSource:
    """`kis.rest.TokenSource` for one account of the vault."""

    def __init__(self, vault: TokenVault, account: str) -> None:
        self._vault = vault
        self._account = account

    def __repr__(self) -> str:
        return f"<token source {self._account}>"

    def current(self) -> SecretStr:
        return self._vault._current(self._account)

    def refresh(self, rejected: SecretStr) -> SecretStr:
        return self._vault._refresh(self._account, rejected)


def cache_file(cache_dir: Path, account: Account, server: str) -> Path:
    """`{cache_dir}/{sha256(app key, server)[:32]}.json`: the key itself never names the file."""
    material = f"{account.app_key.get_secret_value()}\n{server}"
    return cache_dir / f"{hashlib.sha256(material.encode()).hexdigest()[:32]}.json"


def _read_cache_file(
    name: str, path: Path, now: datetime
) -> tuple[AccessToken | None, datetime | None, ApprovalKey | None]:
    """The credentials in `path` still valid at `now` (each None when absent, expired or unreadable; a
    damaged file is logged in one line that quotes nothing of it). Every secret read is registered."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None, None
    except OSError as error:
        logger.warning("{}: token cache {} unreadable ({}); ignoring it", name, path, error.strerror)
        return None, None, None
    try:
        token, issued_at, approval = _parse_cache(json.loads(raw))
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        logger.warning("{}: token cache {} is not valid ({}); ignoring it", name, path, _reason(error))
        return None, None, None
    if token is not None and token.is_valid_at(now, VALIDITY_MARGIN):
        register_secret(token.token)
    else:
        token = issued_at = None
    if approval is not None and now - approval.issued_at < APPROVAL_LIFETIME - VALIDITY_MARGIN:
        register_secret(approval.key)
    else:
        approval = None
    return token, issued_at, approval


def _digest(secret: SecretStr) -> str:
    return hashlib.sha256(secret.get_secret_value().encode()).hexdigest()


def _parse_cache(document: Any) -> tuple[AccessToken | None, datetime | None, ApprovalKey | None]:
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("version") != CACHE_VERSION:
        raise ValueError(f"unknown version {document.get('version')!r}")
    token = issued_at = approval = None
    if "access_token" in document:
        token = AccessToken(
            token=SecretStr(str(document["access_token"])),
            expires_at=_aware(document["expires_at"]),
            token_type=str(document.get("token_type", "Bearer")),
        )
        issued_at = _aware(document["issued_at"])
    if "approval_key" in document:
        approval = ApprovalKey(
            key=SecretStr(str(document["approval_key"])), issued_at=_aware(document["approval_issued_at"])
        )
    return token, issued_at, approval


def _aware(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError("a cached time has no time zone")
    return moment


def _reason(error: Exception) -> str:
    """One line that names the problem without quoting the file's content (which holds secrets)."""
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON (line {error.lineno})"
    if isinstance(error, RecursionError):
        return "not JSON (nested too deeply)"
    return "a field has the wrong type or format"
