"""Benchmark of the simulator's WebSocket feed: records/s sent and the CPU the simulator process spends.

    python -m tools.kis_sim.bench_ws [--keys 3] [--trade-rate 45] [--seconds 20] [--sent-log FILE]

The simulator runs in this process; the clients (one session per app key, 41 H0STCNT0 subscriptions
each) run in a child process so their CPU is not counted. CPU% is `time.process_time()` over wall time
of this process (100 % = one core).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from datetime import time as dtime
from pathlib import Path

from core.subscriptions import MAX_REGISTRATIONS_PER_KEY
from tools.kis_sim.server import KisSimulator, SimConfig

_CLIENT = r"""
import json, sys, threading, time
import websocket
url, seconds, plan = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
counts = [0] * len(plan)
subscribed = threading.Barrier(len(plan) + 1)
def run(i, approval, codes):
    ws = websocket.create_connection(url + "/tryitout", timeout=10)
    for code in codes:
        header = {"approval_key": approval, "custtype": "P", "tr_type": "1", "content-type": "utf-8"}
        ws.send(json.dumps({"header": header, "body": {"input": {"tr_id": "H0STCNT0", "tr_key": code}}}))
    subscribed.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        message = ws.recv()
        if message.startswith("0|"):
            counts[i] += int(message[11:14])
    ws.close()
threads = [threading.Thread(target=run, args=(i, a, c)) for i, (a, c) in enumerate(plan)]
for t in threads:
    t.start()
subscribed.wait()
print("subscribed", flush=True)
for t in threads:
    t.join()
print(json.dumps({"received": sum(counts)}), flush=True)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kis_sim.bench_ws", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--keys", type=int, default=3, help="app keys (sessions), 41 symbols each (default 3)")
    add("--trade-rate", type=float, default=45.0, help="market trades/s per symbol (default 45)")
    add("--seconds", type=float, default=20.0, help="measurement window (default 20)")
    add("--sent-log", type=Path, default=None, help="also write the sent-log to this file")
    args = parser.parse_args(argv)

    config = SimConfig(
        seed=3, date=date(2024, 3, 4), start=dtime(10, 30), speed=1.0, n_symbols=max(200, args.keys * 41),
        trade_rate=args.trade_rate, pingpong_interval=10.0, sent_log=args.sent_log,
    )
    with KisSimulator(config) as sim:
        codes = sorted(sim.market.listings)
        plan = []
        for i in range(args.keys):
            approval = sim.accounts.issue_approval(f"BENCH-KEY-{i}", f"BENCH-SECRET-{i}")
            chunk = codes[i * MAX_REGISTRATIONS_PER_KEY:(i + 1) * MAX_REGISTRATIONS_PER_KEY]
            plan.append((approval, chunk))
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, sim.ws_url, str(args.seconds + 2), json.dumps(plan)],
            stdout=subprocess.PIPE, text=True,
        )
        assert client.stdout is not None
        client.stdout.readline()  # "subscribed"
        time.sleep(1.0)  # let subscriptions settle before measuring
        sent0, cpu0, wall0 = sim.ws.records_sent, time.process_time(), time.monotonic()
        time.sleep(args.seconds)
        sent1, cpu1, wall1 = sim.ws.records_sent, time.process_time(), time.monotonic()
        received = json.loads(client.stdout.readline())["received"]
        client.wait(30)
    wall = wall1 - wall0
    report = {
        "keys": args.keys,
        "subscriptions": args.keys * MAX_REGISTRATIONS_PER_KEY,
        "trade_rate_per_symbol": args.trade_rate,
        "seconds": round(wall, 2),
        "records_sent_per_s": round((sent1 - sent0) / wall),
        "simulator_cpu_percent_of_one_core": round((cpu1 - cpu0) / wall * 100, 1),
        "records_received_by_clients_total": received,
        "sent_log": bool(args.sent_log),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
