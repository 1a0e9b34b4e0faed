"""load_settings: profiles, layering of file / environment / overrides, and one-line errors for bad input."""

from __future__ import annotations

import json
import traceback
from datetime import time
from pathlib import Path
from typing import Any

import pytest

from config.loader import ConfigError, load_settings
from config.settings import Settings

SECRET_KEY = "PSkey-4f1e9c2b7a0d-DO-NOT-PRINT"
SECRET_SECRET = "secret-9b8a7c6d5e4f-DO-NOT-PRINT"


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def config_error(config_file: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file, env or {})
    text = str(caught.value)
    assert "\n" not in text, "a config error must be one line"
    assert text.startswith("config error")
    return text


# --- defaults and profiles -------------------------------------------------------------------------


def test_no_file_no_environment_gives_main_defaults_and_simulator_mode() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.profile == "main"
    assert settings.scan.interval_seconds == 600.0
    assert settings.scan.batch_size == 30
    assert settings.slots.max_slots == 41
    assert settings.triggers.volume_surge.enabled and settings.triggers.volume_surge.threshold == 3.0
    assert settings.triggers.trade_velocity.enabled and settings.triggers.trade_velocity.weight == 8.0
    assert settings.triggers.volatility_spike.enabled
    assert settings.triggers.volatility_spike.ttl_seconds == 300
    assert settings.triggers.manual.enabled and settings.triggers.manual.ttl_seconds is None
    assert settings.signals.enabled is False
    assert settings.data_dir == Path("./data") and settings.log_dir == Path("./logs")
    assert settings.log_retention_days == 14
    assert settings.accounts == () and settings.simulated
    assert settings.notifier.telegram_api_base == "https://api.telegram.org"
    assert not settings.notifier.telegram_enabled and not settings.notifier.discord_enabled


def test_hybrid_profile_from_the_config_file(tmp_path: Path) -> None:
    settings = load_settings(write_json(tmp_path / "c.json", {"profile": "hybrid"}), {})
    assert settings.profile == "hybrid"
    assert settings.scan.interval_seconds == 60.0
    assert settings.slots.max_slots == 20
    assert settings.signals.enabled is True
    assert settings.slots.resubscribe_cooldown_seconds == 180.0
    assert settings.alerts.cooldown_seconds == 600.0
    assert settings.slots.rebalance_interval_seconds == 60.0
    assert settings.signals.rank_by_closeness is True and settings.signals.breakout_enabled is False


def test_hybrid_b_profile_is_mode_b_of_the_hybrid_design() -> None:
    settings = load_settings(env={"OBSERVER_PROFILE": "hybrid_b"})
    assert settings.profile == "hybrid_b"
    assert (settings.scan.interval_seconds, settings.scan.safe_mode_interval_seconds) == (30.0, 60.0)
    assert settings.slots.max_slots == 40 and settings.slots.rebalance_interval_seconds == 60.0
    signals = settings.signals
    assert signals.enabled and signals.rank_by_closeness and signals.breakout_enabled
    assert load_settings(env={}).signals.rank_by_closeness is False  # main: the trigger ranking


def test_realtime_profile_runs_the_track_b_detectors_alone(tmp_path: Path) -> None:
    """track_b_independent_scanner.md as its own profile: only the tick detectors pick slots, weighted by the
    document's priorities; manual overrides stay; chosen by the file or the environment."""
    settings = load_settings(write_json(tmp_path / "c.json", {"profile": "realtime"}), {})
    assert settings.profile == "realtime"
    triggers = settings.triggers
    assert triggers.realtime.enabled
    assert (triggers.realtime.volume_weight, triggers.realtime.price_move_weight) == (0.9, 0.95)
    assert (triggers.realtime.volume_ratio, triggers.realtime.price_move_pct) == (5.0, 5.0)
    assert not (triggers.volume_surge.enabled or triggers.trade_velocity.enabled
                or triggers.volatility_spike.enabled)
    assert triggers.manual.enabled and triggers.market_cap_weight == 0.0
    assert settings.slots.max_slots == 41 and settings.slots.min_dwell_seconds == 120.0
    assert load_settings(None, {"OBSERVER_PROFILE": "realtime"}) == settings
    assert Settings().triggers.realtime.enabled is False  # main keeps them off (9.0 / 9.5 when turned on)
    main = Settings().triggers.realtime
    assert (main.volume_weight, main.price_move_weight) == (9.0, 9.5)


def test_churn_levels_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="calm_replacements_per_hour"):
        load_settings(None, {"OBSERVER_SLOTS__CALM_REPLACEMENTS_PER_HOUR": "90"})


def test_explicit_values_beat_the_profile_and_environment_beats_the_file(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"profile": "hybrid", "slots": {"max_slots": 30}, "scan": {}})
    settings = load_settings(config, {"OBSERVER_SCAN__INTERVAL_SECONDS": "45"})
    assert settings.slots.max_slots == 30  # file over profile
    assert settings.scan.interval_seconds == 45.0  # environment over profile
    assert settings.signals.enabled is True  # untouched profile default
    env_wins = load_settings(config, {"OBSERVER_SLOTS__MAX_SLOTS": "25", "OBSERVER_PROFILE": "main"})
    assert env_wins.slots.max_slots == 25
    assert env_wins.profile == "main" and env_wins.scan.interval_seconds == 600.0


def test_overrides_win_over_environment_and_file(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"data_dir": "/from/file"})
    settings = load_settings(
        config,
        {"OBSERVER_DATA_DIR": "/from/env", "OBSERVER_LOG_DIR": "/logs/env"},
        overrides={"data_dir": tmp_path / "cli", "profile": "hybrid"},
    )
    assert settings.data_dir == tmp_path / "cli"
    assert settings.log_dir == Path("/logs/env")
    assert settings.profile == "hybrid"


def test_environment_values_are_typed_by_the_setting_they_name() -> None:
    settings = load_settings(
        None,
        {
            "OBSERVER_SLOTS__WATCHLIST": '["005930", "000660"]',
            "OBSERVER_TRIGGERS__MANUAL__ENABLED": "False",
            "OBSERVER_SCHEDULE__TOKEN_CHECK_TIME": "22:30",
            "OBSERVER_TOKENS__CACHE_DIR": "12345",
            "TELEGRAM_CHAT_ID": "-1001234",
            "TELEGRAM_BOT_TOKEN": "123:abc-token",
            "UNRELATED_VARIABLE": "ignored",
        },
    )
    assert settings.slots.watchlist == ("005930", "000660")
    assert settings.triggers.manual.enabled is False
    assert settings.schedule.token_check_time == time(22, 30)
    assert settings.tokens.cache_dir == "12345"
    assert settings.notifier.telegram_chat_id == "-1001234"
    assert settings.notifier.telegram_bot_token is not None
    assert settings.notifier.telegram_bot_token.get_secret_value() == "123:abc-token"
    assert settings.notifier.telegram_enabled


def test_observer_config_variable_names_the_file(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"gaps": {"expected_interval_ms": 250}})
    assert load_settings(None, {"OBSERVER_CONFIG": str(config)}).gaps.expected_interval_ms == 250


def test_schedule_times_from_the_file(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {
        "websocket": {"feed": "krx"}, "schedule": {"wakeup_time": "07:45", "track_a_start": "09:05"},
    })
    schedule = load_settings(config, {}).schedule
    assert schedule.wakeup_time == time(7, 45)
    assert schedule.track_a_start == time(9, 5)
    assert schedule.track_b_start == time(9, 30)


# --- bad configuration: one line naming the key, the problem and the source ------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"scna": {"interval_seconds": 60}})
    text = config_error(config)
    assert str(config) in text and "unknown key 'scna'" in text and "'scan'" in text


def test_unknown_nested_key_suggests_the_right_one(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"scan": {"intervall_seconds": 60}})
    text = config_error(config)
    assert text == (
        f"config error in {config}: unknown key 'scan.intervall_seconds' (did you mean 'interval_seconds'?)"
    )


def test_wrong_type_names_key_problem_and_file(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"scan": {"interval_seconds": "ten"}})
    text = config_error(config)
    problem = "scan.interval_seconds: Input should be a valid number (got text)"
    assert text == f"config error in {config}: {problem}"


def test_numbers_written_as_text_in_the_file_are_wrong_types(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"slots": {"max_slots": "30"}})
    assert "slots.max_slots: Input should be a valid integer (got text)" in config_error(config)


def test_out_of_range_value(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"slots": {"max_slots": 42}})
    assert "slots.max_slots: Input should be less than or equal to 41" in config_error(config)


def test_several_problems_are_counted_on_the_same_line(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"slots": {"max_slots": 0}, "gaps": {"tolerance_ms": -1}})
    assert "(and 1 more problem)" in config_error(config)


def test_bad_json(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"scan": {"interval_seconds": 60,}}', encoding="utf-8")
    text = config_error(config)
    assert str(config) in text and "not valid JSON" in text and "line 1" in text


def test_missing_config_file(tmp_path: Path) -> None:
    config = tmp_path / "absent.json"
    assert config_error(config) == f"config error: config file {config} does not exist"


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    assert "is a directory" in config_error(tmp_path)


def test_config_file_that_is_not_an_object(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", [1, 2])
    assert "expected a JSON object" in config_error(config)


def test_duplicate_key_in_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"profile": "main", "profile": "hybrid"}', encoding="utf-8")
    assert "'profile' appears twice" in config_error(config)


def test_unknown_profile(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"profile": "turbo"})
    assert config_error(config) == (
        f"config error in {config}: profile: must be one of main, hybrid, hybrid_b, realtime")


def test_unknown_environment_variable_with_our_prefix() -> None:
    text = config_error(env={"OBSERVER_SCAN__INTERVALSECONDS": "60"})
    source = "environment variable OBSERVER_SCAN__INTERVALSECONDS"
    assert text == f"config error in {source}: unknown key 'scan.intervalseconds'"


def test_wrong_type_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"scan": {"batch_size": 20}})
    text = config_error(config, {"OBSERVER_SCAN__INTERVAL_SECONDS": "soon"})
    assert "environment variable OBSERVER_SCAN__INTERVAL_SECONDS" in text
    assert "scan.interval_seconds: Input should be a valid number" in text


def test_the_feed_and_sessions_from_the_file_set_the_day(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {
        "websocket": {"feed": "nxt"},
        "sessions": {"nxt": [{"name": "main", "start": "09:00", "end": "15:20"}]},
    })
    settings = load_settings(config, {})
    assert settings.websocket.feed == "nxt" and [s.name for s in settings.sessions.nxt] == ["main"]
    assert (settings.schedule.track_a_start, settings.schedule.track_a_stop) == (time(9), time(15, 20))


def test_the_default_feed_is_unified(tmp_path: Path) -> None:
    assert load_settings(None, {}).websocket.feed == "unified"
    assert load_settings(None, {"OBSERVER_WEBSOCKET__FEED": "krx"}).schedule.track_b_start == time(9, 30)


def test_phase_times_out_of_order(tmp_path: Path) -> None:
    schedule = {"track_b_start": "08:30", "track_b_stop": "08:00"}
    config = write_json(tmp_path / "c.json", {"schedule": schedule})
    text = config_error(config)
    assert str(config) in text and "schedule" in text and "phase times must increase" in text


def test_schedule_time_that_is_not_a_time(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"schedule": {"backup_time": "9pm"}})
    assert "schedule.backup_time: Input should be in a valid time format" in config_error(config)


# --- accounts -------------------------------------------------------------------------------------


def test_single_account_from_the_environment() -> None:
    settings = load_settings(
        None,
        {
            "KIS_APP_KEY": SECRET_KEY,
            "KIS_APP_SECRET": SECRET_SECRET,
            "KIS_ACCOUNT_NO": "12345678-22",
            "KIS_HTS_ID": "trader1",
            "KIS_PAPER": "true",
        },
    )
    (account,) = settings.accounts
    assert account.name == "acct1"
    assert account.app_key.get_secret_value() == SECRET_KEY
    assert account.app_secret.get_secret_value() == SECRET_SECRET
    assert (account.account_no, account.product_code) == ("12345678", "22")
    assert account.hts_id == "trader1" and account.paper is True and account.max_slots == 41
    assert not settings.simulated


def test_account_pool_from_the_accounts_file(tmp_path: Path) -> None:
    pool = write_json(
        tmp_path / "accounts.json",
        [
            {"app_key": "key-one-1111", "app_secret": "sec-one-1111", "account_no": "11112222"},
            {"app_key": "key-two-2222", "app_secret": "sec-two-2222", "paper": True, "max_slots": 20},
            {"name": "spare", "app_key": "key-three-3333", "app_secret": "sec-three-3333"},
        ],
    )
    accounts = load_settings(None, {"KIS_ACCOUNTS_FILE": str(pool)}).accounts
    assert [account.name for account in accounts] == ["acct1", "acct2", "spare"]
    assert [account.paper for account in accounts] == [False, True, False]
    assert [account.max_slots for account in accounts] == [41, 20, 41]
    assert accounts[0].account_no == "11112222"


def test_accounts_file_may_be_an_object_with_an_accounts_array(tmp_path: Path) -> None:
    pool = write_json(tmp_path / "a.json", {"accounts": [{"app_key": "k-123456", "app_secret": "s-123456"}]})
    assert len(load_settings(None, {"KIS_ACCOUNTS_FILE": str(pool)}).accounts) == 1


def test_environment_accounts_replace_accounts_in_the_config_file(tmp_path: Path) -> None:
    in_file = [{"app_key": "file-key-1", "app_secret": "file-s-1"}]
    config = write_json(tmp_path / "c.json", {"accounts": in_file})
    assert load_settings(config, {}).accounts[0].app_key.get_secret_value() == "file-key-1"
    from_env = load_settings(config, {"KIS_APP_KEY": "env-key-1", "KIS_APP_SECRET": "env-s-1"})
    assert [account.app_key.get_secret_value() for account in from_env.accounts] == ["env-key-1"]


def test_missing_accounts_file(tmp_path: Path) -> None:
    absent = tmp_path / "none.json"
    text = config_error(env={"KIS_ACCOUNTS_FILE": str(absent)})
    assert f"accounts file {absent}" in text and "does not exist" in text


def test_accounts_file_with_bad_json(tmp_path: Path) -> None:
    pool = tmp_path / "a.json"
    pool.write_text(f'[{{"app_key": "{SECRET_KEY}", "app_secret": }}]', encoding="utf-8")
    text = config_error(env={"KIS_ACCOUNTS_FILE": str(pool)})
    assert str(pool) in text and "not valid JSON" in text
    assert SECRET_KEY not in text


def test_accounts_file_entry_without_app_key(tmp_path: Path) -> None:
    pool = write_json(
        tmp_path / "a.json",
        [{"app_key": "key-one-1111", "app_secret": "sec-one-1111"}, {"app_secret": SECRET_SECRET}],
    )
    text = config_error(env={"KIS_ACCOUNTS_FILE": str(pool)})
    source = f"accounts file {pool} (KIS_ACCOUNTS_FILE)"
    assert text == f"config error in {source}: accounts[1].app_key: required but missing"


def test_blank_app_secret(tmp_path: Path) -> None:
    pool = write_json(tmp_path / "a.json", [{"app_key": SECRET_KEY, "app_secret": "  "}])
    text = config_error(env={"KIS_ACCOUNTS_FILE": str(pool)})
    assert text.endswith("accounts[0].app_secret: must not be empty") and SECRET_KEY not in text


def test_empty_environment_variables_count_as_unset() -> None:
    assert load_settings(None, {"OBSERVER_DATA_DIR": "", "KIS_APP_KEY": ""}) == Settings()


def test_accounts_file_of_the_wrong_shape(tmp_path: Path) -> None:
    pool = write_json(tmp_path / "a.json", {"app_key": "k", "app_secret": "s"})
    assert "unknown key 'app_key'" in config_error(env={"KIS_ACCOUNTS_FILE": str(pool)})
    empty = write_json(tmp_path / "e.json", [])
    assert "the accounts list is empty" in config_error(env={"KIS_ACCOUNTS_FILE": str(empty)})


def test_misspelt_account_key_gets_a_suggestion(tmp_path: Path) -> None:
    pool = write_json(tmp_path / "a.json", [{"app_key": "k-123456", "app_secret": "s-123456", "hts": "me"}])
    text = config_error(env={"KIS_ACCOUNTS_FILE": str(pool)})
    assert "unknown key 'accounts[0].hts' (did you mean 'hts_id'?)" in text


def test_two_accounts_with_one_app_key(tmp_path: Path) -> None:
    entry = {"app_key": SECRET_KEY, "app_secret": SECRET_SECRET}
    pool = write_json(tmp_path / "a.json", [entry, {**entry, "name": "other"}])
    text = config_error(env={"KIS_ACCOUNTS_FILE": str(pool)})
    assert "accounts[0] and accounts[1] have the same app key" in text
    assert SECRET_KEY not in text


def test_app_key_without_secret() -> None:
    text = config_error(env={"KIS_APP_KEY": SECRET_KEY})
    assert "KIS_APP_SECRET is not set" in text and SECRET_KEY not in text


def test_accounts_file_and_single_account_together(tmp_path: Path) -> None:
    pool = write_json(tmp_path / "a.json", [{"app_key": "k-123456", "app_secret": "s-123456"}])
    env = {"KIS_ACCOUNTS_FILE": str(pool), "KIS_APP_KEY": SECRET_KEY, "KIS_APP_SECRET": SECRET_SECRET}
    assert "not both" in config_error(env=env)


# --- secrets never printed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        {"app_key": SECRET_KEY, "app_secret": SECRET_SECRET, "app_sceret": SECRET_SECRET},
        {"app_key": SECRET_KEY, "app_secret": SECRET_SECRET, "max_slots": SECRET_KEY},
        {"app_key": SECRET_KEY, "app_secret": SECRET_SECRET, "account_no": SECRET_KEY},
        {"app_key": [SECRET_KEY], "app_secret": SECRET_SECRET},
        {"app_key": SECRET_KEY, "app_secret": SECRET_SECRET, "paper": SECRET_SECRET},
    ],
)
def test_secret_values_never_appear_in_the_error_or_its_traceback(
    tmp_path: Path, entry: dict[str, Any]
) -> None:
    pool = write_json(tmp_path / "a.json", [entry])
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"KIS_ACCOUNTS_FILE": str(pool)})
    printed = "".join(traceback.format_exception(caught.value))
    assert "accounts[0]" in str(caught.value)
    assert SECRET_KEY not in printed and SECRET_SECRET not in printed


def test_secret_typed_into_a_misspelt_notifier_key_is_not_echoed(tmp_path: Path) -> None:
    config = write_json(tmp_path / "c.json", {"notifier": {"telegram_bot_tokn": SECRET_KEY}})
    text = config_error(config)
    assert "unknown key 'notifier.telegram_bot_tokn'" in text and SECRET_KEY not in text


def test_loaded_secrets_are_hidden_in_repr_and_dumps(tmp_path: Path) -> None:
    config = write_json(
        tmp_path / "c.json",
        {"notifier": {"discord_webhook_url": SECRET_SECRET, "telegram_bot_token": SECRET_SECRET}},
    )
    settings = load_settings(config, {"KIS_APP_KEY": SECRET_KEY, "KIS_APP_SECRET": SECRET_SECRET})
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert SECRET_KEY not in shown and SECRET_SECRET not in shown
    assert settings.notifier.discord_enabled
