"""The layering of setup.cfg's import-linter contracts holds: `core` imports only `core`, each package imports
only those below it, `app` reaches the simulator only through its starter, and no package's modules import
each other in a circle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.count(" KEPT") == 4 and "BROKEN" not in done.stdout
