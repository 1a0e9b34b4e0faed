"""Which control is active after reading the lease, and which copy of a saved document a takeover keeps."""

from __future__ import annotations

import pytest

from core.standby import Copy, LeaseStep, lease_step, newest_copy


@pytest.mark.parametrize(
    ("holder", "active", "step"),
    [
        (None, False, LeaseStep.TAKE),  # never taken, released, or expired
        (None, True, LeaseStep.TAKE),  # ours expired (NATS was away) and nobody took it: take it again
        ("host-a:/data", False, LeaseStep.RENEW),  # our previous incarnation's: no wait for its expiry
        ("host-a:/data", True, LeaseStep.RENEW),
        ("host-b:/data", False, LeaseStep.WAIT),
        ("host-b:/data", True, LeaseStep.STEP_DOWN),  # taken from us while we stopped renewing
    ],
)
def test_the_lease_step_follows_who_holds_it(holder: str | None, active: bool, step: LeaseStep) -> None:
    assert lease_step("host-a:/data", holder, active) is step


@pytest.mark.parametrize(
    ("disk", "spine", "kept"),
    [
        (None, None, None),
        (100.0, None, Copy.DISK),
        (None, 100.0, Copy.SPINE),
        (100.0, 100.5, Copy.SPINE),
        (100.5, 100.0, Copy.DISK),
        (100.0, 100.0, Copy.DISK),  # the same save on both sides: nothing to write
    ],
)
def test_the_newest_copy_wins(disk: float | None, spine: float | None, kept: Copy | None) -> None:
    assert newest_copy(disk, spine) is kept
