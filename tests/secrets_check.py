"""Look for credentials where they must never be: log files, data files, exception messages, reprs.

A plain module (not a test) so that unit tests and the end-to-end run can share it:

    from tests.secrets_check import assert_no_secrets_in_tree, assert_no_secrets_in_text

    secrets = {"app key": key, "app secret": secret, "access token": token, "approval key": approval}
    checked = assert_no_secrets_in_tree(tmp_path, secrets, exclude=[token_cache_dir])
    assert checked > 0

A secret is searched for in the forms a leak takes: as is, JSON-escaped (a JSONL record), URL-encoded (a
logged URL or form body), and as 16-character fragments from its start, middle and end (a message cut
short, a secret split across a line). Reports name the file, the secret's label and the form, never the
secret itself, so a failing test does not leak what it protects.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

FRAGMENT = 16
"""Length of the start/middle/end pieces searched for; a secret shorter than twice this is searched whole."""
MIN_SECRET = 8
"""Shorter values would match ordinary text by chance, so they are refused as test secrets."""
CHUNK = 8 * 1024 * 1024

Secrets = Mapping[str, str | SecretStr] | Iterable[str | SecretStr]


@dataclass(frozen=True, slots=True)
class Needle:
    label: str
    form: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Leak:
    where: str
    label: str
    form: str
    offset: int

    def __str__(self) -> str:
        return f"{self.where}: {self.label} ({self.form}) at offset {self.offset}"


def needles(secrets: Secrets, fragment: int = FRAGMENT) -> tuple[Needle, ...]:
    """Every byte string whose presence means a secret leaked."""
    labelled = (
        secrets.items()
        if isinstance(secrets, Mapping)
        else ((f"secret {n}", s) for n, s in enumerate(secrets))
    )
    found: dict[bytes, Needle] = {}
    for label, secret in labelled:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if len(value) < MIN_SECRET:
            raise ValueError(f"{label}: a test secret needs at least {MIN_SECRET} characters")
        forms = {
            "as is": value,
            "JSON-escaped": json.dumps(value)[1:-1],
            "JSON-escaped ASCII": json.dumps(value, ensure_ascii=True)[1:-1],
            "URL-encoded": quote(value, safe=""),
            "form-encoded": quote_plus(value, safe=""),
        }
        if fragment and len(value) >= 2 * fragment:
            middle = (len(value) - fragment) // 2
            forms |= {
                "start fragment": value[:fragment],
                "middle fragment": value[middle : middle + fragment],
                "end fragment": value[-fragment:],
            }
        for form, text in forms.items():
            data = text.encode("utf-8")
            found.setdefault(data, Needle(label, form, data))
    return tuple(found.values())


def find_in_bytes(data: bytes, where: str, search: Iterable[Needle]) -> list[Leak]:
    leaks = []
    for needle in search:
        offset = data.find(needle.data)
        if offset >= 0:
            leaks.append(Leak(where, needle.label, needle.form, offset))
    return leaks


def find_in_text(text: str, where: str, secrets: Secrets) -> list[Leak]:
    return find_in_bytes(text.encode("utf-8", "surrogateescape"), where, needles(secrets))


def assert_no_secrets_in_text(text: str, secrets: Secrets, where: str = "text") -> None:
    """Fail if `text` (an exception message, a repr, a log line) holds any form of any secret."""
    leaks = find_in_text(text, where, secrets)
    assert not leaks, "secret leaked: " + "; ".join(map(str, leaks))


def find_secrets_in_tree(
    root: Path, secrets: Secrets, *, exclude: Iterable[Path] = ()
) -> tuple[int, list[Leak]]:
    """(files checked, leaks found) for every regular file under `root`: its name (relative to `root`) and its
    content (gzip files are read unpacked)."""
    search = needles(secrets)
    overlap = max((len(needle.data) for needle in search), default=1) - 1
    skipped = [Path(path).resolve() for path in exclude]
    checked = 0
    leaks: list[Leak] = []
    for path in sorted(Path(root).rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        real = path.resolve()
        if any(real == skip or skip in real.parents for skip in skipped):
            continue
        checked += 1
        where = _masked(str(path), search)
        for leak in find_in_bytes(
            str(path.relative_to(root)).encode("utf-8", "surrogateescape"), str(path), search
        ):
            leaks.append(Leak(where, leak.label, f"{leak.form}, in the file's name", leak.offset))
        seen: set[tuple[str, str]] = set()
        for start, chunk in _chunks(path, overlap):
            for leak in find_in_bytes(chunk, where, search):
                if (leak.label, leak.form) not in seen:
                    seen.add((leak.label, leak.form))
                    leaks.append(Leak(leak.where, leak.label, leak.form, start + leak.offset))
    return checked, leaks


def assert_no_secrets_in_tree(root: Path, secrets: Secrets, *, exclude: Iterable[Path] = ()) -> int:
    """Fail if any file under `root` (except those under `exclude`) holds any form of any secret.

    Returns how many files were checked, so a caller can assert that there was something to check.
    """
    checked, leaks = find_secrets_in_tree(root, secrets, exclude=exclude)
    assert not leaks, f"secret leaked into {len(leaks)} place(s): " + "; ".join(map(str, leaks))
    return checked


def _masked(text: str, search: Iterable[Needle]) -> str:
    """`text` (a path) with every needle replaced by its label, so a report never shows a secret."""
    for needle in sorted(search, key=lambda item: len(item.data), reverse=True):
        text = text.replace(needle.data.decode("utf-8", "replace"), f"<{needle.label}>")
    return text


def _chunks(path: Path, overlap: int) -> Iterator[tuple[int, bytes]]:
    """The file's bytes in overlapping pieces (so a secret across a boundary is still found)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        position = 0
        tail = b""
        while block := handle.read(CHUNK):
            joined = tail + block
            yield position - len(tail), joined
            position += len(block)
            tail = joined[-overlap:] if overlap else b""
