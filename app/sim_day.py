"""Where a simulated day starts when the data folder already holds some of it: after its last record.

A second `run.py --sim` on the same `--data-dir` and `--date` continues the simulated day the way a
restart later the same day would: the simulator's clock starts after the latest time the day's files
carry (the sent log, tick files, gap markers, ledgers, snapshots), so no file gets lines that go back in
time and no alert is raised twice; the observer then opens its usual `observer_restart` gaps from each
symbol's last streamed tick (`app.downtime`). A day already recorded up to the close cannot resume.
Only the tail of each file is read.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path

from runtime.clock import KST
from runtime.jsonl import tail_records


class DayAlreadyRun(ValueError):
    """The simulated day was recorded up to its close; the message is one line saying what to do."""


def latest_record(folders: list[Path], day: date) -> datetime | None:
    """The latest time of `day` carried by a top-level value of the last records of the day's JSONL files
    under `folders` (files named for the day or inside a folder named for it)."""
    stamp, prefix = f"{day:%Y%m%d}", day.isoformat() + "T"
    latest: datetime | None = None
    for folder in folders:
        for path in folder.rglob("*.jsonl"):
            if stamp not in path.parts and not path.name.startswith(stamp):
                continue
            for record in tail_records(path):
                for value in record.values():
                    if not isinstance(value, str) or not value.startswith(prefix):
                        continue
                    try:
                        moment = datetime.fromisoformat(value)
                    except ValueError:
                        continue
                    if moment.tzinfo is not None and (latest is None or moment > latest):
                        latest = moment
    return latest


def start_time(
    folders: list[Path], day: date, requested: time, close: time
) -> tuple[time, datetime | None]:
    """The simulated start: `requested`, or the whole second after the day's latest record when that is
    later (then also that record's time). Raises DayAlreadyRun when that second is past `close` (the last
    session's end on the streamed feed)."""
    latest = latest_record(folders, day)
    if latest is None:
        return requested, None
    resume = (latest.astimezone(KST) + timedelta(seconds=1)).replace(microsecond=0)
    if resume <= datetime.combine(day, requested, tzinfo=KST):
        return requested, None
    if resume.date() != day or resume.time() >= close:
        raise DayAlreadyRun(
            f"the simulated {day:%Y-%m-%d} is already recorded up to {latest.astimezone(KST):%H:%M:%S}, past "
            f"the {close:%H:%M} close: use another --date or --data-dir"
        )
    return resume.time(), latest
