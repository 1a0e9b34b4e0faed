from pathlib import Path

import pytest

from runtime.state_store import StateStore


def test_saved_state_loads_back(tmp_path: Path) -> None:
    state = {"slots": ["005930", "000660"], "cooldowns": {"035720": "2024-05-02T09:01:00+09:00"}}
    StateStore(tmp_path / "state").save("slots.acct1", state)
    assert StateStore(tmp_path / "state").load("slots.acct1") == state


def test_missing_state_is_none_without_a_warning(tmp_path: Path, warnings: list[str]) -> None:
    assert StateStore(tmp_path).load("nothing") is None
    assert warnings == []


def test_save_replaces_the_whole_document_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("a", {"v": 1, "old": True})
    store.save("a", {"v": 2})
    assert store.load("a") == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"slots": ["005930", "0006', "Unterminated string"),
        (b"", "empty file"),
        (b"[1, 2]", "not an object"),
        (b"{\"a\": \"\xff\"}", "utf-8"),
    ],
)
def test_corrupt_state_is_moved_aside_with_one_warning(
    tmp_path: Path, warnings: list[str], content: bytes, reason: str
) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "slots.json").write_bytes(content)
    assert store.load("slots") is None
    assert len(warnings) == 1
    assert reason in warnings[0]
    assert "slots.json.corrupt-1" in warnings[0]
    assert (tmp_path / "slots.json.corrupt-1").read_bytes() == content
    assert not (tmp_path / "slots.json").exists()


def test_each_corrupt_copy_is_kept(tmp_path: Path, warnings: list[str]) -> None:
    store = StateStore(tmp_path)
    for attempt in range(3):
        (tmp_path / "s.json").write_text(f"broken {attempt}")
        assert store.load("s") is None
    assert [(tmp_path / f"s.json.corrupt-{n}").read_text() for n in (1, 2, 3)] == [
        "broken 0",
        "broken 1",
        "broken 2",
    ]
    store.save("s", {"fresh": 1})
    assert store.load("s") == {"fresh": 1}
    assert len(warnings) == 3


def test_unserialisable_data_is_refused_and_the_old_file_survives(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("a", {"v": 1})
    with pytest.raises(TypeError, match="cannot be saved"):
        store.save("a", {"v": {1, 2}})
    with pytest.raises(TypeError, match="cannot be saved"):
        store.save("a", {"v": float("nan")})
    with pytest.raises(TypeError, match="must be a dict"):
        store.save("a", [1, 2])  # type: ignore[arg-type]
    assert store.load("a") == {"v": 1}


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "slots.json", ".hidden", "x" * 200])
def test_names_that_are_paths_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="state name"):
        StateStore(tmp_path).save(name, {})


def test_a_save_cut_off_before_its_rename_leaves_the_old_state(tmp_path: Path) -> None:
    StateStore(tmp_path).save("a", {"v": 1})
    (tmp_path / "a.json.tmp-999-1").write_text('{"v": 2, "half')
    store = StateStore(tmp_path)
    assert store.load("a") == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_delete_removes_the_document(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("a", {"v": 1})
    store.delete("a")
    store.delete("a")
    assert store.load("a") is None
