"""The README's code recipes, run as a user would copy them, on a real file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def readme_python_block(calling: str) -> str:
    """The first ```python block of the README whose code contains `calling`."""
    for block in PYTHON_BLOCK.findall(README.read_text(encoding="utf-8")):
        if calling in block:
            return block
    raise AssertionError(f"the README has no python block calling {calling!r}")


def run_recipe(code: str, path_suffix: str, real_path: Path) -> dict[str, Any]:
    """Run `code` with its one string literal ending in `path_suffix` replaced by `real_path`; its globals."""
    literal = re.compile(r'"[^"\n]*' + re.escape(path_suffix) + '"')
    assert len(literal.findall(code)) == 1, f"the recipe names one {path_suffix} file"
    namespace: dict[str, Any] = {}
    exec(literal.sub(repr(str(real_path)), code), namespace)  # the README's own code, on our own file
    return namespace
