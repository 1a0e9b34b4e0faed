"""The settings reference (`docs/configuration.md`): equal to the code, every setting described, no secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

from pydantic import BaseModel, SecretStr

from config.reference import rows
from config.settings import Settings
from core.settings import Section

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "config.reference", "--check", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )


def secret_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys of every SecretStr setting (alone or in a union), sections included."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += secret_keys(annotation, f"{prefix}{name}.")
        elif annotation is SecretStr or SecretStr in get_args(annotation):
            keys.append(f"{prefix}{name}")
    return keys


def test_the_committed_reference_equals_the_code() -> None:
    result = check(DOC)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_on_a_stale_reference(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("| `scan.interval_seconds` | 600.0 |",
                                                             "| `scan.interval_seconds` | 60.0 |"),
                     encoding="utf-8")
    result = check(stale)
    assert result.returncode == 1
    assert "differs from the settings" in result.stdout


def test_every_setting_has_a_description() -> None:
    undocumented = [key for key, _default, text in rows(Settings) if not text.strip()]
    assert undocumented == [], f"add an attribute docstring under: {', '.join(undocumented)}"


def test_no_secret_default_is_printed() -> None:
    shown = {key: default for key, default, _text in rows(Settings)}
    secrets = secret_keys(Settings)
    assert "notifier.telegram_bot_token" in secrets and "notifier.discord_webhook_url" in secrets
    assert {key: shown[key] for key in secrets} == dict.fromkeys(secrets, "-")


def test_a_secret_default_shows_as_secret() -> None:
    class WithSecret(Section):
        token: SecretStr = SecretStr("hunter2-not-for-print")
        """A secret with a default."""

    [(key, default, text)] = list(rows(WithSecret))
    assert (key, default, text) == ("token", "(secret)", "A secret with a default.")
