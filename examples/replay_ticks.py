"""Replay one symbol's ticks of the day from the spine's JetStream stream, from a time on, then follow live.

    python examples/replay_ticks.py 005930 nats://127.0.0.1:PORT 09:00 [INSTANCE]
"""

import asyncio
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy


async def main(symbol: str, url: str, since: str, instance: str = "main") -> None:
    kst = ZoneInfo("Asia/Seoul")
    hour, minute = map(int, since.split(":"))
    start = datetime.now(kst).replace(hour=hour, minute=minute, second=0, microsecond=0)
    nc = await nats.connect(url)
    sub = await nc.jetstream().subscribe(
        f"observer.{instance}.tick.{symbol}", ordered_consumer=True,
        deliver_policy=DeliverPolicy.BY_START_TIME, config=ConsumerConfig(opt_start_time=start),
    )
    async for msg in sub.messages:
        tick = json.loads(msg.data)
        print(tick["exchange_time"], tick["price"], tick["volume"], tick["source"], flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
