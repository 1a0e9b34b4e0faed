"""`python run.py restore ARCHIVE --data-dir DIR`: a day's archive back into an empty data directory.

Exit 0 when every file of the manifest is in place with its size and sha256, 2 with one line when the
archive or the target will not do (nothing is left half restored in a directory that was not empty).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from store.backup import RestoreError, restore


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py restore", description="Restore a day's backup archive.")
    parser.add_argument("archive", type=Path, help="observer/backup/YYYYMMDD.tar.gz (or its copy)")
    parser.add_argument("--data-dir", type=Path, required=True, help="an empty (or new) directory")
    args = parser.parse_args(argv)
    if not args.archive.is_file():
        print(f"restore: {args.archive} is not a file", file=sys.stderr)
        return 2
    try:
        manifest = restore(args.archive, args.data_dir)
    except RestoreError as error:
        print(f"restore: {error}", file=sys.stderr)
        return 2
    files = manifest["files"]
    size = sum(entry["size"] for entry in files)
    print(f"restore: {manifest['day']}: {len(files)} files, {size:,} bytes verified in {args.data_dir}")
    return 0
