"""`python run.py ctl ...`: a command-line client of the observer.

    python run.py ctl status
    python run.py ctl pin 005930 [--url http://127.0.0.1:8600]
    python run.py ctl trigger 005930 --ttl 600
    python run.py ctl picks 005930 000660:0.8 [--scheduled]
    python run.py ctl scan | trackb pause | trackb resume
    python run.py ctl pin 005930 --nats nats://127.0.0.1:4222 [--instance main]

Reads go to the HTTP API. A control command goes to the HTTP API too, which sends it over the spine to the
control process; with `--nats URL` (or `OBSERVER_NATS_URL`) the command is sent over NATS directly, as
`ctl:<login name>` in the audit. The HTTP token comes from `OBSERVER_HTTP_TOKEN` (never a flag, so it stays
out of the process list). Exit 0 when done, 1 when the observer refused (its sentence printed), 2 for a
usage error or when it cannot be reached (no control process answering over NATS included).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from spine.control import NoControl, request_once
from surfaces.server import DEFAULT_BIND, TOKEN_ENV

READS = ("status", "slots", "candidates", "overflow", "alerts", "gaps", "health")
NATS_ENV = "OBSERVER_NATS_URL"
INSTANCE_ENV = "OBSERVER_SPINE__INSTANCE"
TIMEOUT_SECONDS = 15.0


def build_parser() -> argparse.ArgumentParser:
    """`--url` goes before or after the command (`ctl --url U pin 005930` or `ctl pin 005930 --url U`)."""
    parser = argparse.ArgumentParser(prog="run.py ctl", description="Read and steer a running observer.")
    url_help = f"the observer (http://{DEFAULT_BIND})"
    parser.add_argument("--url", default=f"http://{DEFAULT_BIND}", help=url_help)
    nats_help = f"send control commands over NATS here, not through --url (${NATS_ENV})"
    instance_help = f"the observer's spine.instance (${INSTANCE_ENV}, else main)"
    parser.add_argument("--nats", default=os.environ.get(NATS_ENV) or None, help=nats_help)
    parser.add_argument("--instance", default=os.environ.get(INSTANCE_ENV) or "main", help=instance_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=url_help)
    common.add_argument("--nats", default=argparse.SUPPRESS, help=nats_help)
    common.add_argument("--instance", default=argparse.SUPPRESS, help=instance_help)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, parents=[common])

    for name in READS:
        command(name, f"print /api/{name}")
    for name in ("pin", "unpin"):
        command(name, f"{name} a symbol").add_argument("symbol")
    trigger = command("trigger", "a manual trigger with a TTL")
    trigger.add_argument("symbol")
    trigger.add_argument("--ttl", type=float, default=600.0, help="seconds (600)")
    picks = command("picks", "load the day's picks: SYMBOL or SYMBOL:SCORE ...")
    picks.add_argument("picks", nargs="+")
    picks.add_argument("--scheduled", action="store_true", help="at the configured picks time (07:20)")
    command("scan", "force a Track A pass")
    command("trackb", "pause or resume Track B").add_argument("action", choices=("pause", "resume"))
    return parser


def request_for(args: argparse.Namespace) -> tuple[str, dict[str, Any] | None]:
    """(path, JSON body or None for a read) of the parsed command."""
    match args.command:
        case name if name in READS:
            return f"/api/{name}", None
        case "pin" | "unpin":
            return f"/api/control/{args.command}", {"symbol": args.symbol}
        case "trigger":
            return "/api/control/trigger", {"symbol": args.symbol, "ttl_seconds": args.ttl}
        case "picks":
            picks = [_pick(text) for text in args.picks]
            return "/api/control/picks", {"picks": picks, "when": "scheduled" if args.scheduled else "now"}
        case "scan":
            return "/api/control/scan", {}
        case _:
            return "/api/control/trackb", {"paused": args.action == "pause"}


def _pick(text: str) -> Any:
    symbol, sep, score = text.partition(":")
    if not sep:
        return symbol
    try:
        return {"symbol": symbol, "score": float(score)}
    except ValueError:
        return {"symbol": symbol, "score": score}


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    path, body = request_for(args)
    if body is not None and args.nats:
        return _over_nats(args, body)
    url = args.url.rstrip("/") + path
    headers = {"Accept": "application/json"}
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        url, data=data, headers=headers, method="GET" if data is None else "POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            sentence = json.loads(error.read()).get("error", error.reason)
        except ValueError:
            sentence = error.reason
        print(f"ctl: {error.code}: {sentence}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        print(f"ctl: cannot reach the observer at {args.url}: {reason}", file=sys.stderr)
        return 2
    if body is not None and isinstance(answer, dict) and "done" in answer:
        print(answer["done"])
    else:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0


def _over_nats(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """Send the control command as a request on the spine and print the control process's reply."""
    try:
        reply = request_once(args.nats, args.instance, args.command, {**body, "who": f"ctl:{_login()}"})
    except NoControl as error:
        print(f"ctl: 503: {error}", file=sys.stderr)
        return 2
    if not reply.ok:
        print(f"ctl: {reply.status}: {reply.error}", file=sys.stderr)
        return 1
    print(reply.done)
    return 0


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return "unknown"
