"""One outbox relay as its own process, for the leader tests:
`python -m tests.relay_process DB_URL BOOTSTRAP SCHEMA TOPIC_PREFIX BATCH_SIZE`. Stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from shared.db import make_engine
from shared.outbox import OutboxRelay


async def main(db_url: str, bootstrap: str, schema: str, prefix: str, batch_size: int) -> None:
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(
        engine,
        schema,
        bootstrap=bootstrap,
        topic_prefix=prefix,
        partitions=2,
        batch_size=batch_size,
        idle_sleep_s=0.01,
        standby_poll_s=0.2,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    relay.start()
    try:
        await stop.wait()
    finally:
        await relay.stop()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
