import json
import math
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from freezegun import freeze_time

from runtime.clock import KST
from runtime.jsonl import JsonlReader, JsonlWriter, encode_record, read_jsonl, tail_records
from runtime.state_store import StateStore


def test_records_round_trip_as_compact_lines(tmp_path: Path) -> None:
    path = tmp_path / "day" / "ticks.jsonl"
    moment = datetime(2024, 5, 2, 9, 0, 1, 500000, tzinfo=KST)
    with JsonlWriter(path) as writer:
        writer.write({"symbol": "005930", "price": 71200, "at": moment, "name": "삼성전자"})
        writer.write({"symbol": "000660", "price": 180500, "at": moment})
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == (
        '{"symbol":"005930","price":71200,"at":"2024-05-02T09:00:01.500000+09:00","name":"삼성전자"}'
    )
    contents = read_jsonl(path)
    assert contents.skipped == 0
    assert [record["price"] for record in contents.records] == [71200, 180500]


def test_lines_reach_the_file_on_flush_not_before(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = JsonlWriter(path)
    writer.write({"n": 1})
    assert path.read_bytes() == b""
    assert writer.buffered_lines == 1
    writer.flush()
    assert path.read_bytes() == b'{"n":1}\n'
    writer.close()
    assert writer.closed


def test_buffered_since_is_when_the_oldest_waiting_line_was_written(tmp_path: Path) -> None:
    with freeze_time("2024-03-04 01:00:00") as frozen, JsonlWriter(tmp_path / "a.jsonl") as writer:
        assert writer.buffered_since == math.inf
        writer.write({"n": 1})
        first = writer.buffered_since
        frozen.tick(0.3)
        writer.write({"n": 2})
        assert writer.buffered_since == first
        writer.flush()
        assert writer.buffered_since == math.inf
        frozen.tick(0.3)
        writer.write({"n": 3})
        assert writer.buffered_since == first + 0.6


def test_a_failed_flush_keeps_its_lines_waiting_since_they_were_written(tmp_path: Path) -> None:
    full = Path("/dev/full")  # every write fails with ENOSPC: a real full disk
    with freeze_time("2024-03-04 01:00:00") as frozen:
        writer = JsonlWriter(full)
        writer.write({"n": 1})
        since = writer.buffered_since
        frozen.tick(1.0)
        with pytest.raises(OSError, match="No space left"):
            writer.flush()
        assert writer.buffered_since == since
        writer.write({"n": 2})
        assert writer.buffered_since == since
        with pytest.raises(OSError):
            writer.close()


def test_a_full_buffer_flushes_whole_lines_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    writer = JsonlWriter(path, flush_bytes=100)
    for number in range(20):
        writer.write({"n": number, "pad": "x" * 10})
    on_disk = path.read_bytes()
    assert on_disk
    assert on_disk.endswith(b"\n")
    assert len(on_disk.splitlines()) + writer.buffered_lines == 20
    writer.close()
    assert [r["n"] for r in read_jsonl(path).records] == list(range(20))


def test_appending_after_a_torn_tail_keeps_new_records_intact(tmp_path: Path, warnings: list[str]) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2,"pri')
    with JsonlWriter(path) as writer:
        writer.write({"n": 3})
    assert any("torn" in line for line in warnings)
    contents = read_jsonl(path)
    assert [r["n"] for r in contents.records] == [1, 3]
    assert contents.skipped == 1


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, warnings: list[str]) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":3,"pr')
    reader = JsonlReader(path)
    assert [r["n"] for r in reader] == [1, 2]
    assert reader.skipped == 1
    assert len(warnings) == 1
    assert "torn last line 3" in warnings[0]


def test_invalid_lines_anywhere_are_skipped_never_raised(tmp_path: Path, warnings: list[str]) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'{"n":1}\n'
        b"not json\n"
        b"[1,2]\n"
        b"\n"
        b'{"n":\xff}\n'
        b'{"n":2}\n'
        b'"just a string"\n'
        + b"[" * 100000
        + b"\n"
        b'{"n":3}\n'
    )
    contents = read_jsonl(path)
    assert [r["n"] for r in contents.records] == [1, 2, 3]
    assert contents.skipped == 5
    assert len(warnings) == 5
    assert "line 2" in warnings[0]


def test_warnings_per_file_are_capped_but_everything_is_counted(tmp_path: Path, warnings: list[str]) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"bad\n" * 50 + b'{"n":1}\n')
    contents = read_jsonl(path)
    assert contents.skipped == 50
    assert contents.records == [{"n": 1}]
    assert len(warnings) == 6
    assert "50 invalid lines" in warnings[-1]


def test_missing_file_reads_as_empty_with_one_warning(tmp_path: Path, warnings: list[str]) -> None:
    contents = read_jsonl(tmp_path / "missing.jsonl")
    assert contents.records == []
    assert contents.skipped == 0
    assert len(warnings) == 1


def test_values_json_cannot_hold_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlWriter(path) as writer:
        with pytest.raises(TypeError, match="set"):
            writer.write({"bad": {1, 2}})
        with pytest.raises(ValueError, match="newline"):
            writer.write_line('{"a":1}\n{"b":2}')
        writer.write_line('{"a":1}')
    assert path.read_text() == '{"a":1}\n'


def test_text_with_newlines_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({"text": "line one\nline two"})
    assert len(path.read_bytes().splitlines()) == 1
    assert read_jsonl(path).records == [{"text": "line one\nline two"}]


def test_fsync_mode_writes_the_same_content(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlWriter(path, fsync=True) as writer:
        writer.write({"n": 1})
        writer.flush()
        writer.write({"n": 2})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"n": 1}, {"n": 2}]


def test_write_after_close_is_a_clear_error(tmp_path: Path) -> None:
    writer = JsonlWriter(tmp_path / "a.jsonl")
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="after close"):
        writer.write({"n": 1})


def test_encode_record_is_compact() -> None:
    assert encode_record({"a": 1, "b": [1, 2]}) == '{"a":1,"b":[1,2]}'


WRITER_SCRIPT = """
import sys
from pathlib import Path
from runtime.jsonl import JsonlWriter
from runtime.state_store import StateStore

root = Path(sys.argv[1])
writer = JsonlWriter(root / "ticks.jsonl", flush_bytes=1 << 20)
store = StateStore(root / "state")
number = 0
while True:
    writer.write({"n": number, "symbol": "005930", "price": 71200 + number % 50, "pad": "x" * 40})
    number += 1
    if number % 500 == 0:
        writer.flush()
        store.save("recorder", {"written": number})
        print(number, flush=True)
"""


def test_sigkill_mid_write_leaves_complete_lines_and_a_loadable_state(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        for _ in range(5):
            assert process.stdout.readline().strip()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    before = read_jsonl(tmp_path / "ticks.jsonl")
    assert before.skipped <= 1
    numbers = [record["n"] for record in before.records]
    assert numbers == list(range(len(numbers)))
    saved = StateStore(tmp_path / "state").load("recorder")
    assert saved is not None
    assert 2500 <= saved["written"] <= len(numbers)

    with JsonlWriter(tmp_path / "ticks.jsonl") as writer:
        writer.write({"n": "after restart"})
    after = read_jsonl(tmp_path / "ticks.jsonl")
    assert after.records[-1] == {"n": "after restart"}
    assert len(after.records) == len(numbers) + 1
    assert after.skipped == before.skipped


def test_tail_records_reads_only_the_complete_lines_of_the_end(tmp_path: Path) -> None:
    path = tmp_path / "ticks.jsonl"
    with JsonlWriter(path) as writer:
        for n in range(1_000):
            writer.write({"n": n, "pad": "x" * 20})
    with path.open("a", encoding="utf-8") as file:
        file.write('{"n": 1000, "pad": "to')  # torn by a power cut
    tail = tail_records(path, max_bytes=400)
    numbers = [record["n"] for record in tail]
    assert numbers == list(range(numbers[0], 1_000)) and 5 <= len(numbers) < 15  # the cut first line left out
    default = [record["n"] for record in tail_records(path)]
    assert default == list(range(1_000 - len(default), 1_000)) and len(default) > len(numbers)
    assert len(tail_records(path, max_bytes=10**9)) == 1_000
    assert tail_records(tmp_path / "missing.jsonl") == []


def test_a_writer_on_a_full_disk_keeps_taking_lines_and_says_how_much_waits() -> None:
    writer = JsonlWriter(Path("/dev/full"), flush_bytes=100)  # every write fails with ENOSPC
    for number in range(50):
        writer.write({"n": number, "pad": "x" * 10})  # past flush_bytes: its own flush fails, quietly
    assert writer.failing
    assert (writer.buffered_lines, writer.lines_accepted, writer.lines_flushed) == (50, 50, 0)
    assert writer.buffered_bytes == sum(len(encode_record({"n": n, "pad": "x" * 10})) + 1 for n in range(50))
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    assert writer.buffered_lines == 50
    with pytest.raises(OSError):
        writer.close()


def test_lines_flushed_counts_lines_on_disk_not_the_newline_that_ends_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n":0}\n{"n":')
    writer = JsonlWriter(path, flush_bytes=1 << 20)
    writer.write({"n": 1})
    writer.write_block(b'{"n":2}\n{"n":3}', 2)
    assert (writer.lines_flushed, writer.buffered_lines) == (0, 3)
    writer.flush()
    assert (writer.lines_flushed, writer.buffered_lines, writer.buffered_bytes) == (3, 0, 0)
    assert not writer.failing
    writer.close()
    assert [r["n"] for r in read_jsonl(path).records] == [0, 1, 2, 3]
