"""Print one symbol's ticks live from the observer's spine.

    python examples/print_ticks.py 005930 nats://127.0.0.1:PORT [INSTANCE]

The URL is the one `python run.py` prints on its `NATS` line; INSTANCE is `spine.instance` ("main").
"""

import asyncio
import json
import sys

import nats


async def main(symbol: str, url: str, instance: str = "main") -> None:
    nc = await nats.connect(url)

    async def show(msg) -> None:
        tick = json.loads(msg.data)
        print(tick["exchange_time"], tick["price"], tick["volume"], tick["source"], flush=True)

    await nc.subscribe(f"observer.{instance}.tick.{symbol}", cb=show)
    await asyncio.Event().wait()  # until Ctrl-C


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
