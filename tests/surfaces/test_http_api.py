"""The HTTP surface of a running observer (`run.py --sim --http 127.0.0.1:0` with a token): every way in
without and with a wrong token, the JSON API, each control command through the API and `run.py ctl` with its
audit line, bad requests refused with nothing changed, `/metrics` against the summary JSON, and no secret in
any answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.deploy.test_monitoring_files import referenced_metrics
from tests.surfaces.support import (
    FAKE_APP_KEY,
    FAKE_APP_SECRET,
    REPO,
    WEBHOOK,
    RunningObserver,
    call,
    observer_env,
    start_observer,
    wait_until,
)

TOKEN = "surface-test-token-0123456789abcdef"
TOKEN_NAME = "ops-desk"
NAMED_TOKENS = {"alice": "alice-token-0123456789abcdef", "bob": "bob-token-0123456789abcdef"}
READS = [
    "/api/status",
    "/api/slots",
    "/api/candidates",
    "/api/overflow",
    "/api/alerts",
    "/api/gaps",
    "/api/health",
    "/metrics",
]
CONTROLS = ["pin", "unpin", "trigger", "picks", "scan", "trackb"]
SECRETS = (FAKE_APP_KEY, FAKE_APP_SECRET, TOKEN, *NAMED_TOKENS.values(), "surfaceFAKEwebhookSECRET",
           "SIM-SECRET", "SIM-APPKEY")


@pytest.fixture(scope="module")
def observer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("surface")
    env = observer_env(
        OBSERVER_HTTP_TOKEN=TOKEN,
        OBSERVER_HTTP_TOKEN_NAME=TOKEN_NAME,
        OBSERVER_HTTP_TOKENS=",".join(f"{name}:{token}" for name, token in NAMED_TOKENS.items()),
        DISCORD_WEBHOOK_URL=WEBHOOK,
    )
    running = start_observer(tmp, env=env)
    try:
        yield running
    finally:
        running.stop()


def slotted(observer: RunningObserver) -> list[str]:
    _, slots, _ = call(observer.url, "/api/slots", token=TOKEN)
    return [row["symbol"] for account in slots["accounts"] for row in account["slots"]]


def universe_symbol(observer: RunningObserver, avoid: set[str]) -> str:
    """A symbol of today's universe that is not slotted when the candidates have one (else a slotted symbol
    that is not pinned: all the candidates may fit in the 40 slots)."""

    def find() -> str | None:
        _, candidates, _ = call(observer.url, "/api/candidates", token=TOKEN)
        for row in candidates["candidates"]:
            if row["symbol"] not in avoid:
                return row["symbol"]
        return None

    try:
        return wait_until(find, 10, "a ranked candidate outside the slots")
    except AssertionError:
        pinned = set(call(observer.url, "/api/slots", token=TOKEN)[1]["pinned"])
        return next(symbol for symbol in slotted(observer) if symbol not in pinned)


def ctl(
    observer: RunningObserver, *args: str, token: str | None = TOKEN, url_first: bool = False
) -> subprocess.CompletedProcess[str]:
    """`run.py ctl <command> --url URL` (or `ctl --url URL <command>`), the token from the environment."""
    env = observer_env(**({"OBSERVER_HTTP_TOKEN": token} if token else {}))
    url = ["--url", observer.url]
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), "ctl", *(url if url_first else []), *args,
         *([] if url_first else url)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def audit_lines(observer: RunningObserver) -> list[dict[str, Any]]:
    path = observer.data_dir / "observer" / "system" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_way_in_needs_the_token(observer: RunningObserver) -> None:
    for path in [*READS, "/api/events"]:
        for token in (None, "wrong-token", TOKEN[:-1], NAMED_TOKENS["alice"] + "x"):
            status, answer, _ = call(observer.url, path, token=token)
            assert status == 401, (path, token, status)
            assert "token" in answer["error"]
    for command in CONTROLS:
        for token in (None, "wrong-token"):
            status, _, _ = call(
                observer.url, f"/api/control/{command}", body={"symbol": "005930"}, token=token
            )
            assert status == 401, (command, token)
    # Basic auth or a token in the query string is no way in either.
    status, _, _ = call(observer.url, "/api/status", headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    status, _, _ = call(observer.url, f"/api/status?token={TOKEN}")
    assert status == 401
    for path in READS:
        status, _, _ = call(observer.url, path, token=TOKEN)
        assert status == 200, path
    assert audit_lines(observer) == [], "a refused caller changed nothing and left no command"


def test_each_named_token_is_its_name_in_the_audit(observer: RunningObserver) -> None:
    for name, token in [(TOKEN_NAME, TOKEN), *NAMED_TOKENS.items()]:
        assert call(observer.url, "/api/status", token=token)[0] == 200
        status, answer, _ = call(observer.url, "/api/control/scan", body={"who": "mallory"}, token=token)
        assert status == 200 and answer["ok"], answer
        last = audit_lines(observer)[-1]
        assert (last["who"], last["what"], last["ok"]) == (name, "scan", True)
        assert last["request"] == {}, "the caller's own `who` never replaces the token's name"


def nats_url(observer: RunningObserver) -> str:
    """The spine of the run, from its `observer: NATS <url> ...` line."""
    for line in observer.output.read_text(errors="replace").splitlines():
        if line.startswith("observer: NATS "):
            return line.split()[2]
    raise AssertionError("no NATS line")


def test_an_outside_nats_client_pins_and_gets_the_reply(observer: RunningObserver) -> None:
    wait_until(lambda: slotted(observer), 60, "slots filled")
    symbol = universe_symbol(observer, set(slotted(observer)))

    async def pin() -> dict[str, Any]:
        nc = await nats.connect(nats_url(observer))
        try:
            request = json.dumps({"symbol": symbol, "who": "desk-bot"}).encode()
            return json.loads((await nc.request("observer.main.control.pin", request, timeout=15)).data)
        finally:
            await nc.close()

    reply = asyncio.run(pin())
    assert (reply["type"], reply["ok"], reply["status"]) == ("control_reply", True, 200)
    assert f"{symbol} pinned" in reply["done"] and reply["error"] is None
    assert symbol in call(observer.url, "/api/slots", token=TOKEN)[1]["pinned"]
    last = audit_lines(observer)[-1]
    assert (last["who"], last["what"], last["ok"]) == ("desk-bot", "pin", True)
    assert last["request"] == {"symbol": symbol}
    done = ctl(observer, "unpin", symbol, "--nats", nats_url(observer))
    assert done.returncode == 0 and f"{symbol} unpinned" in done.stdout, done.stderr
    assert symbol not in call(observer.url, "/api/slots", token=TOKEN)[1]["pinned"]
    assert audit_lines(observer)[-1]["who"].startswith("ctl:")


def test_probes_and_the_page_need_no_token(observer: RunningObserver) -> None:
    for path in ("/healthz", "/readyz"):
        status, answer, _ = call(observer.url, path)
        assert status in (200, 503) and set(answer) == {"ok", "reasons"}
    status, page, headers = call(observer.url, "/")
    assert status == 200 and "<title>Observer</title>" in page
    assert "default-src 'self'" in headers["content-security-policy"]


def test_the_api_answers_with_the_run(observer: RunningObserver) -> None:
    status = wait_until(
        lambda: (s := call(observer.url, "/api/status", token=TOKEN)[1])["phase"] == "full_operation" and s,
        60,
        "FULL_OPERATION",
    )
    assert status["trading_day"] is True
    assert status["accounts"][0]["account"] == "sim1" and status["accounts"][0]["capacity"] == 40
    # Started at 09:29, after the whole wake-up sequence: every step skipped (once the tokens actor is up).
    wakeup = wait_until(lambda: call(observer.url, "/api/status", token=TOKEN)[1]["wakeup"]["steps"] and
                        call(observer.url, "/api/status", token=TOKEN)[1]["wakeup"], 30, "the wake-up steps")
    assert [row["step"] for row in wakeup["steps"]] == [
        "wake", "ws_preconnect", "system_warmup", "health_check", "token_refresh", "health_after_refresh",
        "ready"]
    assert {row["state"] for row in wakeup["steps"]} == {"skipped"} and wakeup["next"] is None
    assert set(status["context"]) == {"synced_at", "snapshots", "movers", "degraded", "baseline"}
    assert status["dashboard"] == observer.url
    wait_until(lambda: slotted(observer), 60, "slots filled")
    _, slots, _ = call(observer.url, "/api/slots", token=TOKEN)
    row = slots["accounts"][0]["slots"][0]
    assert set(row) >= {
        "symbol",
        "name",
        "venue",
        "score",
        "trigger",
        "since",
        "ticks_per_second",
        "last_price",
        "sparkline",
    }
    _, health, _ = call(observer.url, "/api/health", token=TOKEN)
    assert health["alive"] is True and {a["id"] for a in health["actors"]} >= {"slots", "triggers", "ws.sim1"}
    assert health["spine"] == "connected"
    _, gaps, _ = call(observer.url, "/api/gaps", token=TOKEN)
    assert set(gaps) >= {"detected", "recovered", "marked", "rate", "open"}
    _, overflow, _ = call(observer.url, "/api/overflow", token=TOKEN)
    assert set(overflow) == {"now", "ledger", "total"}
    _, alerts, _ = call(observer.url, "/api/alerts", token=TOKEN)
    assert alerts["sent"] + alerts["failed"] + alerts["suppressed"] >= 0 and "recent" in alerts


def test_the_event_stream_sends_updates(observer: RunningObserver) -> None:
    import urllib.request

    request = urllib.request.Request(
        observer.url + "api/events", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    updates = []
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for raw in stream:
            line = raw.decode()
            if line.startswith("data: "):
                updates.append(json.loads(line[6:]))
                if len(updates) == 2:
                    break
    assert {"status", "slots", "candidates", "overflow", "alerts", "gaps", "health", "charts"} <= set(
        updates[0]
    )
    assert updates[1]["status"]["now"] > updates[0]["status"]["now"]


def test_pin_unpin_and_a_manual_trigger_through_the_api(observer: RunningObserver) -> None:
    wait_until(lambda: slotted(observer), 60, "slots filled")
    symbol = universe_symbol(observer, set(slotted(observer)))
    status, answer, _ = call(observer.url, "/api/control/pin", body={"symbol": symbol}, token=TOKEN)
    assert status == 200 and answer["ok"] and "pinned" in answer["done"]
    wait_until(lambda: symbol in call(observer.url, "/api/slots", token=TOKEN)[1]["pinned"], 30, "pinned")
    wait_until(lambda: symbol in slotted(observer), 60, "the pinned symbol takes a slot")
    status, answer, _ = call(observer.url, "/api/control/unpin", body={"symbol": symbol.lower()}, token=TOKEN)
    assert status == 200 and "unpinned" in answer["done"]
    assert symbol not in call(observer.url, "/api/slots", token=TOKEN)[1]["pinned"]
    status, answer, _ = call(
        observer.url, "/api/control/trigger", body={"symbol": symbol, "ttl_seconds": 300}, token=TOKEN
    )
    assert status == 200 and f"manual trigger on {symbol}" in answer["done"]
    ranked = call(observer.url, "/api/candidates", token=TOKEN)[1]["candidates"]
    assert any(c["symbol"] == symbol for c in ranked)  # its strongest trigger names the candidate
    lines = audit_lines(observer)
    assert [line["what"] for line in lines[-3:]] == ["pin", "unpin", "trigger"]
    assert all(line["who"] == TOKEN_NAME and line["ok"] for line in lines[-3:])
    assert all(line["at"] for line in lines)


def test_bad_requests_are_one_sentence_and_change_nothing(observer: RunningObserver) -> None:
    wait_until(lambda: slotted(observer), 60, "slots filled")
    before = call(observer.url, "/api/slots", token=TOKEN)[1]["pinned"]
    audited = len(audit_lines(observer))
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("pin", {"symbol": "NOPE"}, 400, "unknown symbol"),
        ("pin", {"symbol": "999999"}, 422, "not in today's universe"),
        ("pin", {}, 400, "symbol is missing"),
        ("trigger", {"symbol": "999999", "ttl_seconds": 60}, 422, "not in today's universe"),
        ("trigger", {"symbol": before[0] if before else "005930", "ttl_seconds": 0}, 400, "out of range"),
        ("trigger", {"symbol": "005930", "ttl_seconds": 10**9}, 400, "out of range"),
        ("trigger", {"symbol": "005930", "ttl_seconds": "soon"}, 400, "must be a number"),
        ("picks", {"picks": []}, 400, "non-empty list"),
        ("picks", {"picks": [{"symbol": "005930", "score": 7}]}, 400, "from 0 to 1"),
        ("trackb", {"paused": "yes"}, 400, "true"),
        ("reboot", {}, 404, "unknown command"),
    ]
    for command, body, expected, words in cases:
        status, answer, _ = call(observer.url, f"/api/control/{command}", body=body, token=TOKEN)
        assert status == expected, (command, body, answer)
        assert words in answer["error"] and "\n" not in answer["error"]
    status, answer, _ = call(
        observer.url,
        "/api/control/pin",
        raw=b'{"symbol": ',
        token=TOKEN,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and answer["error"] == "the request body is not valid JSON"
    assert call(observer.url, "/api/slots", token=TOKEN)[1]["pinned"] == before
    refused = audit_lines(observer)[audited:]
    assert refused and not any(line["ok"] for line in refused)


def test_control_refuses_cross_site_forms(observer: RunningObserver) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, answer, _ = call(
        observer.url, "/api/control/pin", raw=b"symbol=005930", token=TOKEN, headers=form
    )
    assert status == 415 and "JSON" in answer["error"]
    evil = {"Origin": "https://evil.example", "Content-Type": "application/json"}
    status, answer, _ = call(observer.url, "/api/control/scan", raw=b"{}", token=TOKEN, headers=evil)
    assert status == 403 and "another site" in answer["error"]
    status, _, _ = call(observer.url, "/api/control/scan", method="GET", token=TOKEN)
    assert status == 405


def test_the_cli_steers_through_the_api(observer: RunningObserver) -> None:
    wait_until(lambda: slotted(observer), 60, "slots filled")
    symbol = universe_symbol(observer, set(slotted(observer)))
    done = ctl(observer, "pin", symbol)
    assert done.returncode == 0 and f"{symbol} pinned" in done.stdout
    done = ctl(observer, "unpin", symbol)
    assert done.returncode == 0 and "unpinned" in done.stdout
    done = ctl(observer, "trigger", symbol, "--ttl", "120")
    assert done.returncode == 0 and "manual trigger" in done.stdout
    other = next(candidate for candidate in slotted(observer) if candidate != symbol)
    done = ctl(observer, "picks", symbol, f"{other}:0.5")
    assert done.returncode == 0 and "2 picks loaded" in done.stdout
    done = ctl(observer, "picks", symbol, "--scheduled")
    assert done.returncode == 0
    assert "1 picks will replace the current picks at 2024-03-05 07:20" in done.stdout
    done = ctl(observer, "trackb", "pause")
    assert done.returncode == 0 and "Track B paused" in done.stdout
    wait_until(lambda: not slotted(observer), 30, "slots emptied while paused")
    assert call(observer.url, "/api/status", token=TOKEN)[1]["track_b_paused"] is True
    done = ctl(observer, "trackb", "resume")
    assert done.returncode == 0 and "Track B resumed" in done.stdout
    wait_until(lambda: slotted(observer), 60, "slots filled again after the resume")
    done = ctl(observer, "scan")
    assert done.returncode == 0 and ("pass started" in done.stdout or "already running" in done.stdout)
    done = ctl(observer, "pin", "999999")
    assert done.returncode == 1 and "not in today's universe" in done.stderr
    done = ctl(observer, "status", token="wrong")
    assert done.returncode == 1 and "401" in done.stderr
    done = ctl(observer, "status", url_first=True)
    assert done.returncode == 0 and json.loads(done.stdout)["phase"] == "full_operation"
    whats = [line["what"] for line in audit_lines(observer) if line["ok"]]
    assert whats[-8:] == ["pin", "unpin", "trigger", "picks", "picks", "trackb", "trackb", "scan"]


def test_no_secret_in_any_answer(observer: RunningObserver) -> None:
    texts = [json.dumps(call(observer.url, path, token=TOKEN)[1]) for path in READS]
    texts.append(call(observer.url, "/", token=TOKEN)[1])
    audit = observer.data_dir / "observer" / "system" / "audit.jsonl"
    if audit.exists():
        texts.append(audit.read_text(encoding="utf-8"))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_zz_metrics_agree_with_the_summary(observer: RunningObserver, tmp_path: Path) -> None:
    """Last in the module: it stops the run and compares the final scrape with the summary JSON."""

    def metric(text: str, name: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )

    _, text, headers = call(observer.url, "/metrics", token=TOKEN)
    assert headers["content-type"].startswith("text/plain")
    for name in (
        "observer_slots_in_use",
        "observer_slots_capacity",
        "observer_ticks_total",
        "observer_gaps_total",
        "observer_gap_rate",
        "observer_recoveries_total",
        "observer_rest_calls_total",
        "observer_rest_rate_limited_total",
        "observer_token_expiry_seconds",
        "observer_overflows_total",
        "observer_alerts_total",
        "observer_restarts_total",
        "observer_process_resident_memory_bytes",
        "observer_process_cpu_seconds_total",
        "observer_data_dir_free_bytes",
        "observer_spine_connected",
    ):
        assert f"\n{name}" in text, name
    # 40 registrations (one is the notice) less the books and program trading of the top 3 slots and the
    # held positions (websocket.extra_registrations_max: 12 at most) are the tick slots.
    assert 40 - 12 <= metric(text, "observer_slots_capacity") <= 40 - 6
    assert metric(text, "observer_rest_calls_total") > 0
    assert metric(text, "observer_spine_connected") == 1
    assert 0 < metric(text, "observer_token_expiry_seconds") <= 24 * 3600
    for name in referenced_metrics():
        assert f"\n{name}" in text, f"deploy/ names {name}, which /metrics does not export"
    scraped_ticks = metric(text, "observer_ticks_recorded_total")
    scraped_scans = metric(text, "observer_scans_total")
    assert observer.stop() == 0
    summary = json.loads(observer.summary.read_text(encoding="utf-8"))
    assert 0 < scraped_ticks <= summary["ticks_recorded"]
    assert scraped_scans <= summary["scans"]
    assert metric(text, "observer_restarts_total") == sum(summary["restarts"].values())
    assert metric(text, "observer_gaps_total") <= (
        summary["gaps_detected"] + summary["gaps_recovered"] + summary["gaps_marked"]
    )
