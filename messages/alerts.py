"""Alerts for the notifier. The notifier applies the cooldown per key, so every source obeys it."""

from __future__ import annotations

from core.alerts import Alert
from messages.base import Message


class AlertRaised(Message):
    """A market alert (trigger or signal); cooldown key (symbol, signal)."""

    alert: Alert


class SystemAlert(Message):
    """An operational alert (safe mode, connection down, overflow level, universe fallback)."""

    key: str
    text: str
