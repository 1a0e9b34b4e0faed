"""Fault switches of the KIS simulator, flipped by tests, the CLI (`--faults`) and a POST to the REST port's
`/_sim/faults` (the chaos day's), read by the REST and WebSocket servers; both speak `parse_faults`'s spec.

Windows are measured in real (monotonic) seconds, because faults model the network and the gateway, which
run on the wall clock even when the simulated market runs fast. Every method is thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Faults:
    """Thread-safe fault state. Setters arm a fault; the `rest_*` / `ws_*` / `take_*` queries read it."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._rate_limited_until = 0.0
        self._slow_until = 0.0
        self._slow_delay = 0.0
        self._token_epoch = 0
        self._drop_generation = 0
        self._drop_every: float | None = None
        self._refuse_until = 0.0
        self._malformed_left = 0
        self._truncated_left = 0
        self._silent_until = 0.0
        self._html_left = 0
        self._empty_left = 0

    # ---- REST -------------------------------------------------------------------------------------------

    def rate_limit_burst(self, seconds: float) -> None:
        """Every REST call answers EGW00201 for the next `seconds`."""
        with self._lock:
            until = self._monotonic() + _non_negative(seconds)
            self._rate_limited_until = max(self._rate_limited_until, until)

    def rest_rate_limited(self) -> bool:
        with self._lock:
            return self._monotonic() < self._rate_limited_until

    def slow_rest(self, delay_seconds: float, for_seconds: float) -> None:
        """Delay every REST answer by `delay_seconds` for the next `for_seconds`."""
        with self._lock:
            self._slow_delay = _non_negative(delay_seconds)
            self._slow_until = self._monotonic() + _non_negative(for_seconds)

    def rest_delay(self) -> float:
        """Seconds the REST server should wait before answering now (0 when no slow-down is armed)."""
        with self._lock:
            return self._slow_delay if self._monotonic() < self._slow_until else 0.0

    def html_errors(self, count: int) -> None:
        """The next `count` `/uapi` calls get an HTML error page with HTTP 502, as a failing proxy sends."""
        with self._lock:
            self._html_left += _count(count)

    def take_html_error(self) -> bool:
        """Consume one pending HTML error; True means: answer this `/uapi` call with the error page."""
        with self._lock:
            if self._html_left > 0:
                self._html_left -= 1
                return True
            return False

    def empty_bodies(self, count: int) -> None:
        """The next `count` `/uapi` calls get HTTP 200 with an empty body."""
        with self._lock:
            self._empty_left += _count(count)

    def take_empty_body(self) -> bool:
        with self._lock:
            if self._empty_left > 0:
                self._empty_left -= 1
                return True
            return False

    def expire_tokens(self) -> None:
        """Every access token issued so far answers EGW00123 from now on."""
        with self._lock:
            self._token_epoch += 1

    def token_epoch(self) -> int:
        """Tokens remember the epoch they were issued in; a token from an older epoch has expired."""
        with self._lock:
            return self._token_epoch

    # ---- WebSocket ---------------------------------------------------------------------------------------

    def drop_sessions(self) -> None:
        """Close every open WebSocket session now (sessions compare `drop_generation()` with their own)."""
        with self._lock:
            self._drop_generation += 1

    def drop_generation(self) -> int:
        with self._lock:
            return self._drop_generation

    def drop_every(self, seconds: float | None) -> None:
        """Drop sessions periodically, every `seconds` of a session's life (None switches it off)."""
        if seconds is not None and seconds <= 0:
            raise ValueError("drop_every needs a positive interval or None")
        with self._lock:
            self._drop_every = seconds

    def drop_interval(self) -> float | None:
        with self._lock:
            return self._drop_every

    def refuse_reconnects(self, seconds: float) -> None:
        """Refuse new WebSocket sessions for the next `seconds`."""
        with self._lock:
            self._refuse_until = max(self._refuse_until, self._monotonic() + _non_negative(seconds))

    def ws_refusing(self) -> bool:
        with self._lock:
            return self._monotonic() < self._refuse_until

    def malformed_frames(self, count: int) -> None:
        """The next `count` data frames sent (by any session) are garbled."""
        with self._lock:
            self._malformed_left += max(0, int(count))

    def take_malformed(self) -> bool:
        """Consume one pending malformed frame; True means: garble the frame you are about to send."""
        with self._lock:
            if self._malformed_left > 0:
                self._malformed_left -= 1
                return True
            return False

    def truncated_frames(self, count: int) -> None:
        """The next `count` data frames sent are cut short."""
        with self._lock:
            self._truncated_left += max(0, int(count))

    def take_truncated(self) -> bool:
        with self._lock:
            if self._truncated_left > 0:
                self._truncated_left -= 1
                return True
            return False

    def silence_sessions(self, seconds: float) -> None:
        """No data frames and no PINGPONG on any session for the next `seconds`."""
        with self._lock:
            self._silent_until = max(self._silent_until, self._monotonic() + _non_negative(seconds))

    def ws_silent(self) -> bool:
        with self._lock:
            return self._monotonic() < self._silent_until

    # ---- all ---------------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Switch every armed fault off (token expiry already applied stays applied)."""
        with self._lock:
            self._rate_limited_until = self._slow_until = self._refuse_until = self._silent_until = 0.0
            self._slow_delay = 0.0
            self._drop_every = None
            self._malformed_left = self._truncated_left = self._html_left = self._empty_left = 0


def _count(count: int) -> int:
    value = int(count)
    if value < 0:
        raise ValueError(f"a fault count must be >= 0, got {value}")
    return value


def _non_negative(seconds: float) -> float:
    value = float(seconds)
    if value < 0:
        raise ValueError(f"a fault duration must be >= 0, got {value}")
    return value


# ---- the fault spec language ----------------------------------------------------------------------------


FAULTS_PATH = "/_sim/faults"
"""The simulator's REST path a fault spec is POSTed to, to arm it now (not a KIS path)."""


class FaultSpecError(ValueError):
    """A `--faults` item could not be understood; the message names the item."""


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise FaultSpecError(f"fault {name}: {value!r} is not a number of seconds") from None
    if seconds < 0:
        raise FaultSpecError(f"fault {name}: needs seconds >= 0, got {value}")
    return seconds


def _whole_count(name: str, value: str) -> int:
    if not value.isdigit():
        raise FaultSpecError(f"fault {name}: {value!r} is not a whole number")
    return int(value)


def _slow_rest(faults: Faults, value: str) -> None:
    delay, sep, duration = value.partition(":")
    if not sep:
        raise FaultSpecError(f"fault slow_rest: expected DELAY:SECONDS, got {value!r}")
    faults.slow_rest(_seconds("slow_rest", delay), _seconds("slow_rest", duration))


def _drop_every(faults: Faults, value: str) -> None:
    seconds = _seconds("drop_every", value)
    if seconds == 0:
        raise FaultSpecError("fault drop_every: needs a positive number of seconds")
    faults.drop_every(seconds)


_WITH_VALUE: dict[str, Callable[[Faults, str], None]] = {
    "drop_every": _drop_every,
    "refuse": lambda f, v: f.refuse_reconnects(_seconds("refuse", v)),
    "malformed": lambda f, v: f.malformed_frames(_whole_count("malformed", v)),
    "truncated": lambda f, v: f.truncated_frames(_whole_count("truncated", v)),
    "silence": lambda f, v: f.silence_sessions(_seconds("silence", v)),
    "rate_limit": lambda f, v: f.rate_limit_burst(_seconds("rate_limit", v)),
    "slow_rest": _slow_rest,
    "html": lambda f, v: f.html_errors(_whole_count("html", v)),
    "empty": lambda f, v: f.empty_bodies(_whole_count("empty", v)),
}
_WITHOUT_VALUE: dict[str, Callable[[Faults], None]] = {
    "drop": Faults.drop_sessions,
    "expire_tokens": Faults.expire_tokens,
}


def parse_faults(spec: str) -> list[Callable[[Faults], None]]:
    """Parse a `--faults` spec into actions; raises FaultSpecError before anything is armed."""
    actions: list[Callable[[Faults], None]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if name in _WITHOUT_VALUE and not sep:
            actions.append(_WITHOUT_VALUE[name])
        elif name in _WITH_VALUE and sep:
            setter, text = _WITH_VALUE[name], value.strip()
            probe = Faults()
            setter(probe, text)  # validate now, so a bad spec fails before the servers start
            actions.append(lambda faults, setter=setter, text=text: setter(faults, text))
        else:
            known = sorted([*_WITH_VALUE, *_WITHOUT_VALUE])
            raise FaultSpecError(f"unknown fault item {item!r}; known: {', '.join(known)}")
    return actions
