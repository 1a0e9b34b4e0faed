"""The free-space floor: one FELL per fall, RECOVERED only past the margin, a floor of 0 never below."""

from __future__ import annotations

from core.disk_floor import DiskFloor, FloorChange


def test_a_fall_is_said_once_and_recovery_needs_the_margin() -> None:
    floor = DiskFloor(1000)
    readings = [1500, 999, 500, 1050, 1099, 1100, 1200, 900]
    fell, recovered = FloorChange.FELL, FloorChange.RECOVERED
    assert [floor.update(free) for free in readings] == [None, fell, None, None, None, recovered, None, fell]
    assert floor.below


def test_a_floor_of_zero_is_never_reached() -> None:
    floor = DiskFloor(0)
    assert [floor.update(free) for free in (0, 10, 0)] == [None, None, None] and not floor.below
