"""Suite-wide settings and shared fixtures. pykka reads time.monotonic for future timeouts, so freezegun must
leave it alone."""

import datetime as _dt
from collections.abc import Iterator

import freezegun
import pytest
from loguru import logger

freezegun.configure(extend_ignore_list=["pykka"])


def _logged(level: str) -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level=level)
    yield lines
    logger.remove(sink)


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The messages of every warning (and worse) logged during the test, in order."""
    yield from _logged("WARNING")


@pytest.fixture
def errors() -> Iterator[list[str]]:
    """The messages of every error (and worse) logged during the test, in order."""
    yield from _logged("ERROR")


# ---- KIS simulator -------------------------------------------------------------------------------------

@pytest.fixture
def kis_sim_config(tmp_path):
    """A small, fast simulator: 200 symbols on Monday 2024-03-04 from 09:30 at 10x speed, PINGPONG every
    0.5 s, sent-log in tmp_path. Override this fixture in a test module to change it
    (`dataclasses.replace(base, ...)`)."""
    from tools.kis_sim.server import SimConfig

    return SimConfig(
        seed=7,
        date=_dt.date(2024, 3, 4),
        start=_dt.time(9, 30),
        speed=10.0,
        n_symbols=200,
        pingpong_interval=0.5,
        sent_log=tmp_path / "kis_sim_sent.jsonl",
    )


@pytest.fixture
def kis_sim(kis_sim_config):
    """A started `KisSimulator` (REST + WebSocket on loopback), stopped after the test."""
    from tools.kis_sim.server import KisSimulator

    with KisSimulator(kis_sim_config) as simulator:
        yield simulator
