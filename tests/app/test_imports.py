"""What a process imports is memory it carries all day: the stream process's modules leave out the libraries
of the control and store processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_stream_process_loads_neither_pyarrow_nor_psycopg() -> None:
    """`run.py --role stream` imports its entry point, the tree's plan and its own actors (recorder,
    connections): pyarrow and psycopg (about 60 MB) come only with the minute jobs and the store."""
    code = ("import sys, app.observer, actors.system, actors.recorder, actors.ws_connection; "
            "print(sorted(name for name in ('pyarrow', 'psycopg', 'numpy') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
