"""StateSaver: documents reach the real StateStore in tmp_path off the caller's thread, newest per name."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.state_saver import StateSaver
from runtime.state_store import StateStore

WAIT = 10.0


class Lines:
    """A log stand-in that keeps the error lines (the saver's only output besides the files)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, text: str, *args: object) -> None:
        self.errors.append(text.format(*args))


def test_saved_documents_are_on_disk_after_a_flush(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    saver = StateSaver(store, thread_name="test-saver")
    saver.save("book", {"live": [1, 2]})
    saver.save("other", {"day": "2024-03-04"})
    assert saver.flush(WAIT)
    assert store.load("book") == {"live": [1, 2]}
    assert store.load("other") == {"day": "2024-03-04"}
    assert saver.close(WAIT)


def test_the_newest_document_of_a_name_wins(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    saver = StateSaver(store, thread_name="test-saver")
    for version in range(200):
        saver.save("book", {"version": version})
    assert saver.close(WAIT)
    assert store.load("book") == {"version": 199}


def test_close_saves_what_is_waiting_and_refuses_later_saves(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    saver = StateSaver(store, thread_name="test-saver")
    saver.save("book", {"live": ["005930"]})
    assert saver.close(WAIT)
    assert store.load("book") == {"live": ["005930"]}
    with pytest.raises(RuntimeError, match="closed"):
        saver.save("book", {"live": []})


def test_a_document_that_is_not_json_is_one_error_line_and_the_saver_goes_on(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    lines = Lines()
    saver = StateSaver(store, thread_name="test-saver", log=lines)
    saver.save("bad", {"value": object()})
    assert saver.flush(WAIT)
    saver.save("good", {"value": 1})
    assert saver.close(WAIT)
    assert store.load("bad") is None and store.load("good") == {"value": 1}
    assert len(lines.errors) == 1 and lines.errors[0].startswith("could not save state bad: ")
