"""JSON Schemas of the public messages, generated from `spine.wire` into `schemas/<type>.json`.

    python -m spine.schemas          # rewrite the files
    python -m spine.schemas --check  # exit 1 when a file differs from the models

Each schema names its subject pattern (`x-subject`), so the folder documents the whole interface: the facts
(`<type>.json`), the control requests (`control_<command>.json`, what a client sends) and their reply
(`control_reply.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spine.subjects import ROOT
from spine.wire import CONTROL_REQUESTS, FACT_TYPES, ControlReply, ControlRequest, Fact, type_name

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def subject_of(model: type[Fact]) -> str:
    """The subject pattern as documented: `observer.<instance>.tick.<symbol>`."""
    pattern = model.subject_pattern.replace("{", "<").replace("}", ">")
    return f"{ROOT}.<instance>.{pattern}"


def schema_of(model: type[Fact]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    return {"$schema": DIALECT, "$id": f"{type_name(model)}.json", "x-subject": subject_of(model), **schema}


def request_schema_of(model: type[ControlRequest]) -> dict[str, Any]:
    """What a client sends (validation mode: a field with a default may be left out)."""
    schema = model.model_json_schema(mode="validation")
    subject = f"{ROOT}.<instance>.{model.subject_pattern()}"
    return {"$schema": DIALECT, "$id": f"control_{model.command}.json", "x-subject": subject, **schema}


def reply_schema() -> dict[str, Any]:
    schema = ControlReply.model_json_schema(mode="serialization")
    subject = f"the reply subject of a request on {ROOT}.<instance>.control.<command>"
    return {"$schema": DIALECT, "$id": "control_reply.json", "x-subject": subject, **schema}


def rendered() -> dict[str, str]:
    """File name -> text, for every public message type, control request and the control reply."""
    documents = {f"{type_name(model)}.json": schema_of(model) for model in FACT_TYPES}
    documents |= {f"control_{model.command}.json": request_schema_of(model) for model in CONTROL_REQUESTS}
    documents["control_reply.json"] = reply_schema()
    return {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in documents.items()}


def differences(folder: Path = SCHEMA_DIR) -> list[str]:
    """The files of `folder` that are missing, stale or no longer generated."""
    expected = rendered()
    found = {path.name for path in folder.glob("*.json")} if folder.is_dir() else set()
    problems = [f"{name}: no longer a message type" for name in sorted(found - set(expected))]
    for name, text in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{name}: differs from spine.wire")
    return problems


def write(folder: Path = SCHEMA_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in set(folder.glob("*.json")) - {folder / name for name in rendered()}:
        stale.unlink()
    written = []
    for name, text in rendered().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spine.schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for problem in problems:
            print(f"schemas/{problem}", file=sys.stderr)
        return 1 if problems else 0
    for path in write():
        print(path.relative_to(SCHEMA_DIR.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
