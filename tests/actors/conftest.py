"""Fixtures shared by the actor tests. The simulator is the suite's `kis_sim` (tests/conftest.py); a module
that needs another one overrides `kis_sim_config` (`dataclasses.replace(kis_sim_config, ...)`)."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest

from config.accounts import Account
from tests.actors.control_plane_support import sim_account


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    """Every actor a test started is stopped after it, also when the test failed halfway."""
    yield
    pykka.ActorRegistry.stop_all(timeout=5)


@pytest.fixture
def accounts() -> tuple[Account, Account]:
    """Two simulator accounts with fresh random credentials."""
    return (sim_account("acct1"), sim_account("acct2"))
