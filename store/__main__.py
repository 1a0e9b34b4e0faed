"""The store role as a process of its own: the spine's ticks and events into Parquet (and PostgreSQL).

    python -m store --nats URL --data-dir DIR [--postgres URL] [--instance NAME] [--log-dir DIR]
                    [--flush-seconds S] [--consumer NAME]
    python -m store --nats URL --postgres URL --shared [--ack-wait S] [--consumer NAME] ...  (a store worker)

`--postgres` defaults to `OBSERVER_POSTGRES_URL`; `--nats` takes a cluster's URLs comma-separated. With
`--shared` the store is one of several workers on one durable consumer, each message written by one of
them into the shared PostgreSQL (no Parquet, no `--data-dir`). SIGTERM or SIGINT stops it: buffered rows are
written and acknowledged and the partitions it wrote are compacted before it exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from loguru import logger

from store.role import StoreOptions, StoreRole

LOG_RETENTION_DAYS = 14
LOG_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {message}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nats", required=True, metavar="URL",
                        help="the NATS server of the spine (a cluster's URLs comma-separated)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="Parquet goes to DIR/observer/parquet/<table>/date=YYYYMMDD/ "
                             "(none with --shared)")
    parser.add_argument("--postgres", default=os.environ.get("OBSERVER_POSTGRES_URL") or None, metavar="URL",
                        help="also write PostgreSQL (default: OBSERVER_POSTGRES_URL; none: Parquet only)")
    parser.add_argument("--instance", default=os.environ.get("OBSERVER_SPINE__INSTANCE", "main"),
                        help="the spine instance to read (default: OBSERVER_SPINE__INSTANCE or main)")
    parser.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="write everything to DIR/store.log; the console then shows warnings only")
    parser.add_argument("--flush-seconds", type=float, default=60.0, metavar="S",
                        help="write buffered rows as a Parquet part every S seconds (<= 300; default 60)")
    parser.add_argument("--consumer", default="store",
                        help="stem of the durable consumers' names (default store)")
    parser.add_argument("--shared", action="store_true",
                        help="a store worker: share <consumer>_postgres_shared with the other workers "
                             "and write PostgreSQL only")
    parser.add_argument("--ack-wait", type=float, default=10.0, metavar="S",
                        help="with --shared: seconds before a message a worker holds goes to another "
                             "(default 10)")
    args = parser.parse_args(argv)
    if args.shared and args.data_dir is not None:
        parser.error("--shared writes PostgreSQL only: drop --data-dir")
    if not args.shared and args.data_dir is None:
        parser.error("--data-dir DIR is required (a store worker, --shared, has none)")
    return args


def setup_logging(log_dir: Path | None) -> None:
    """The console has the INFO lines only when there is no log file (under `run.py`, whose first lines are
    the mode, NATS and the dashboard, the store's own go to `store.log`)."""
    logger.remove()
    console = "INFO" if log_dir is None else "WARNING"
    logger.add(sys.stderr, level=console, format=LOG_FORMAT, diagnose=False, backtrace=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(log_dir / "store.log", level="DEBUG", format=LOG_FORMAT, rotation="00:00",
                   retention=timedelta(days=LOG_RETENTION_DAYS), encoding="utf-8", diagnose=False,
                   backtrace=False)


async def serve(role: StoreRole) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    await role.run(stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_dir)
    try:
        options = StoreOptions(nats_url=args.nats, data_dir=args.data_dir,
                               postgres_url=args.postgres, instance=args.instance,
                               flush_seconds=args.flush_seconds, consumer=args.consumer, shared=args.shared,
                               ack_wait_seconds=args.ack_wait)
    except ValueError as error:
        print(f"python -m store: {error}", file=sys.stderr)
        return 2
    role = StoreRole(options)
    if options.shared:
        logger.info("store: instance {} from {} into PostgreSQL, a worker of {}_postgres_shared",
                    options.instance, options.nats_url, options.consumer)
    else:
        logger.info("store: instance {} from {} into {}{}", options.instance, options.nats_url,
                    role.parquet_root, " and PostgreSQL" if options.postgres_url else "")
    asyncio.run(serve(role))
    logger.info("store: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
