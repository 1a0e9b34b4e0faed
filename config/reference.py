"""The settings reference (`docs/configuration.md`), generated from the settings models so it cannot drift.

`python -m config.reference` prints it; `--check FILE` exits 1 when FILE differs (a test runs that).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import time
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from config.settings import Settings

HEAD = """# Configuration reference

Generated from `config/settings.py` by `python -m config.reference`; a test keeps this page equal to the code.
Every key can be set in the JSON file (`--config FILE` or `OBSERVER_CONFIG`), as an environment variable
`OBSERVER_<KEY>` or `OBSERVER_<SECTION>__<KEY>` (e.g. `OBSERVER_SCAN__INTERVAL_SECONDS=60`), and some by a
flag; a profile (`"profile": "main" | "hybrid" | ...`, see `config/profiles.py`) changes some defaults first.
A mistake stops the start with one line naming the key, the problem and the file, never the value.

| key | default | what |
|---|---|---|
"""

SKIPPED = {"accounts"}
"""Credentials come from the environment or an accounts file (README, Live use), never from here."""


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted key, default, description) of every leaf setting, sections in their declared order."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if not prefix and name in SKIPPED:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from rows(annotation, f"{key}.")
            continue
        yield key, render(field.get_default(call_default_factory=True)), one_line(field.description)


def render(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, BaseModel):
        return "`" + json.dumps(value.model_dump(mode="json"), ensure_ascii=False) + "`"
    if isinstance(value, tuple | list):
        return ", ".join(render(item) for item in value) or "[]"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    return str(value)


def one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def reference() -> str:
    body = "".join(f"| `{key}` | {default} | {text} |\n" for key, default, text in rows(Settings))
    return HEAD + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.reference", description=__doc__)
    parser.add_argument("--check", type=Path, metavar="FILE", help="exit 1 when FILE differs from the code")
    args = parser.parse_args(argv)
    text = reference()
    if args.check is None:
        sys.stdout.write(text)
        return 0
    if args.check.read_text(encoding="utf-8") != text:
        print(f"{args.check} differs from the settings: run python -m config.reference > {args.check}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
