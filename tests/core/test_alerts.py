from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.alerts import (
    AlertCooldown,
    alert_for_signal,
    alert_for_trigger,
    format_alert,
    make_alert,
    market_alert_label,
    system_alert_label,
)
from core.models import Trigger, TriggerKind
from core.signals import SignalHit, SignalKind

KST = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 1, 20, 10, 15, 3, tzinfo=KST)


def test_cooldown_blocks_repeats_until_exactly_the_end():
    cooldown = AlertCooldown(600)
    key = ("005930", "disparity")
    assert cooldown.should_send(key, T0)
    assert not cooldown.should_send(key, T0 + timedelta(seconds=599, microseconds=999_999))
    assert cooldown.should_send(key, T0 + timedelta(seconds=600))
    assert not cooldown.should_send(key, T0 + timedelta(seconds=601))


def test_cooldown_is_per_symbol_and_signal():
    cooldown = AlertCooldown(600)
    assert cooldown.should_send(("005930", "disparity"), T0)
    assert cooldown.should_send(("005930", "return_drop"), T0)
    assert cooldown.should_send(("000660", "disparity"), T0)
    assert not cooldown.should_send(("005930", "disparity"), T0 + timedelta(seconds=1))


def test_cooldown_state_survives_a_restart_and_prunes():
    first = AlertCooldown(600)
    first.should_send(("005930", "disparity"), T0)
    first.should_send(("000660", "disparity"), T0 + timedelta(seconds=300))
    restored = AlertCooldown(600, first.last_sent())
    assert not restored.should_send(("005930", "disparity"), T0 + timedelta(seconds=10))
    assert restored.prune(T0 + timedelta(seconds=600)) == 1
    assert set(restored.last_sent()) == {("000660", "disparity")}
    with pytest.raises(ValueError):
        AlertCooldown(-1)


def test_zero_cooldown_always_sends():
    cooldown = AlertCooldown(0)
    assert cooldown.should_send("k", T0) and cooldown.should_send("k", T0)


@given(st.lists(st.integers(0, 3000), max_size=40).map(sorted))
def test_cooldown_sends_are_spaced_by_the_cooldown(offsets):
    cooldown = AlertCooldown(600)
    sent = [o for o in offsets if cooldown.should_send(("A", "s"), T0 + timedelta(seconds=o))]
    assert all(b - a >= 600 for a, b in pairwise(sent))
    for o in offsets:  # every request either went out or fell inside the cooldown of one that did
        assert o in sent or any(0 <= o - s < 600 for s in sent)


def test_alert_text_has_code_name_condition_and_kst_time():
    at_utc = datetime(2026, 1, 20, 1, 15, 3, tzinfo=UTC)
    text = format_alert("005930", "삼성전자", "disparity", -0.08, -0.0852, at_utc)
    assert text == "[disparity] 005930 삼성전자 | disparity -8.52 % <= -8.00 % | 2026-01-20 10:15:03 KST"


def test_alert_text_for_every_known_signal_shows_value_and_threshold():
    cases = {
        "volume_surge": (3.0, 3.4, ("3.40x", "3.00x")),
        "trade_velocity": (10.0, 12.5, ("12.5/s", "10.0/s")),
        "volatility_spike": (2.0, 2.25, ("2.25x", "2.00x")),
        "realtime_volume": (5.0, 6.0, ("6.00x", "5.00x")),
        "realtime_price_move": (5.0, -5.5, ("-5.50 %", "5.00 %")),
        "return_drop": (-3.0, -3.2, ("-3.20 %", "-3.00 %")),
        "turnover_surge_fall": (3.0, 4.0, ("4.00x", "3.00x")),
        "something_new": (1.5, 2.5, ("2.5", "1.5")),
    }
    for signal, (threshold, value, shown) in cases.items():
        text = format_alert("000660", "SK하이닉스", signal, threshold, value, T0)
        assert text.startswith(f"[{signal}] 000660 SK하이닉스 | ")
        assert text.endswith("| 2026-01-20 10:15:03 KST")
        assert all(s in text for s in shown), text


def test_alerts_from_triggers_and_signals():
    trigger = Trigger(
        symbol="005930",
        kind=TriggerKind.VOLUME_SURGE,
        strength=0.7,
        value=3.5,
        threshold=3.0,
        detected_at=T0,
        expires_at=T0 + timedelta(seconds=300),
    )
    alert = alert_for_trigger(trigger, "삼성전자")
    assert (alert.symbol, alert.name, alert.signal, alert.threshold, alert.value, alert.at) == (
        "005930",
        "삼성전자",
        "volume_surge",
        3.0,
        3.5,
        T0,
    )
    assert "3.50x >= 3.00x" in alert.text
    later = T0 + timedelta(minutes=11)
    assert alert_for_trigger(trigger, "삼성전자", at=later).text.endswith("10:26:03 KST")
    hit = SignalHit("000660", SignalKind.RETURN_DROP, -3.0, -4.0, T0)
    assert alert_for_signal(hit, "SK하이닉스").text == format_alert(
        "000660", "SK하이닉스", "return_drop", -3.0, -4.0, T0
    )


def test_alert_is_frozen_and_needs_aware_time():
    alert = make_alert("005930", "삼성전자", "disparity", -0.08, -0.09, T0)
    with pytest.raises(ValidationError):
        alert.text = "x"
    with pytest.raises(ValidationError):
        make_alert("005930", "", "disparity", -0.08, -0.09, datetime(2026, 1, 20, 10, 0))


def test_every_system_alert_kind_has_a_readable_label() -> None:
    assert system_alert_label("overflow_rate.0.1") == "overflow rate above 10%"
    assert system_alert_label("overflow_rate.0.05") == "overflow rate above 5%"
    assert system_alert_label("scanner.safe_mode") == "scanner in safe mode"
    assert system_alert_label("scanner.safe_mode.ended") == "scanner out of safe mode"
    assert system_alert_label("universe.20240304") == "universe build failed (2024-03-04)"
    assert system_alert_label("tokens.acct1") == "token refresh failed (acct1)"
    assert system_alert_label("gaps_open.acct2") == "symbols without ticks, Track B suspended (acct2)"
    assert system_alert_label("ws_suspended.acct1") == "WebSocket down (acct1)"
    assert system_alert_label("ws_resumed.acct1") == "WebSocket back (acct1)"
    assert system_alert_label("recorder.write_failed") == "data files cannot be written"
    assert system_alert_label("recorder.write_recovered") == "data files written again"
    assert system_alert_label("something_new.x") == "something new x"


def test_a_market_alert_label_names_the_signal_in_words() -> None:
    at = datetime(2024, 3, 4, 1, 0, tzinfo=UTC)
    alert = make_alert("005930", "삼성전자", "turnover_surge_fall", 3.0, 3.5, at)
    assert market_alert_label(alert) == "turnover surge while falling 005930 삼성전자"


def test_a_dolpha1_signal_reads_as_its_distance_from_vwap_in_atr() -> None:
    at = datetime(2024, 3, 4, 10, 15, tzinfo=ZoneInfo("Asia/Seoul"))
    alert = make_alert("005930", "", "dolpha1_trade_short", 2.0, 2.4, at)
    assert alert.text == "[dolpha1_trade_short] 005930 | close 2.40 ATR above VWAP, beyond 2.00 ATR | " \
        "2024-03-04 10:15:00 KST"
    assert market_alert_label(alert) == "dolpha1 trade (short) 005930"
    assert system_alert_label("postgres") == "PostgreSQL unreachable"
