"""The minute jobs' switches: unset is off, simulator mode turns the unset ones on and leaves a choice the
configuration made; the PostgreSQL URL from the environment or `--postgres`, kept secret."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli import build_parser
from config.loader import load_settings

URL = "postgresql://observer:pw-7f3a9c1e@127.0.0.1:5432/observer"


def test_simulator_mode_turns_on_only_the_jobs_left_unset(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"pipeline": {"derivatives": False, "watchlist": ["005930"]}}), "utf-8")
    settings = load_settings(config, {})
    assert settings.pipeline.stock_candles is None and settings.pipeline.derivatives is False
    defaults = settings.pipeline.simulator_defaults()
    assert defaults == {"stock_candles": True, "candle_check": True, "futures_trades": True}
    simulated = load_settings(config, {}, overrides={"pipeline": defaults})
    pipeline = simulated.pipeline
    assert (pipeline.stock_candles, pipeline.derivatives, pipeline.candle_check) == (True, False, True)
    assert pipeline.watchlist == ("005930",)


def test_postgres_url_from_the_environment_or_the_flag_stays_secret() -> None:
    settings = load_settings(None, {"OBSERVER_POSTGRES_URL": URL})
    assert settings.postgres_url is not None and settings.postgres_url.get_secret_value() == URL
    assert "pw-7f3a9c1e" not in repr(settings) and "pw-7f3a9c1e" not in str(settings.model_dump())
    assert load_settings(None, {}).postgres_url is None
    assert build_parser().parse_args(["--postgres", URL]).postgres == URL
