import gc
from collections.abc import Iterator

import pytest

from runtime.gc_freeze import freeze_startup_objects


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_the_objects_alive_at_the_freeze_leave_the_collected_generations(unfrozen_after: None) -> None:
    startup = {"kept": [object() for _ in range(100)]}
    before = len(gc.get_objects())
    frozen = freeze_startup_objects()
    assert frozen >= before // 2
    assert not any(o is startup for o in gc.get_objects())  # a full collection no longer walks it
    later: list[object] = [startup]
    assert any(o is later for o in gc.get_objects())  # new objects are collected as usual
