"""Reading the day's picks from the configured file or URL (`triggers.manual.picks_file` / `picks_url`)."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from core.picks import parse_picks

FETCH_TIMEOUT_SECONDS = 10.0
MAX_BYTES = 1024 * 1024
"""A picks document larger than this is refused (a list of 200 picks is a few kilobytes)."""


def read_picks(file: str | None, url: str | None) -> tuple[tuple[str, float], ...]:
    """(symbol, score) pairs from the file, else from the URL; OSError or ValueError with one line when
    neither gives a valid document (the URL's answer body never reaches the message)."""
    problems = []
    if file:
        try:
            return _parse(Path(file).expanduser().read_bytes(), f"picks file {file}")
        except (OSError, ValueError) as error:
            problems.append(str(error))
    if url:
        try:
            answer = requests.get(url, timeout=FETCH_TIMEOUT_SECONDS)
            if answer.status_code != 200:
                raise OSError(f"picks URL answered HTTP {answer.status_code}")
            return _parse(answer.content, "picks URL")
        except (OSError, ValueError) as error:
            problems.append(str(error))
    raise OSError("; ".join(problems) or "no picks file or URL configured")


def _parse(data: bytes, where: str) -> tuple[tuple[str, float], ...]:
    if len(data) > MAX_BYTES:
        raise ValueError(f"{where}: larger than {MAX_BYTES} bytes")
    try:
        document = json.loads(data)
    except ValueError:
        raise ValueError(f"{where}: not JSON") from None
    try:
        return parse_picks(document)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
