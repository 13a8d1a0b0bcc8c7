"""One outbox relay process for the relay bench: `python -m bench.relay_worker DB_URL BOOTSTRAP SCHEMA`."""

from __future__ import annotations

import asyncio
import sys

from shared.db import make_engine
from shared.outbox import OutboxRelay


async def main(db_url: str, bootstrap: str, schema: str) -> None:
    engine = make_engine(db_url, pool_size=2)
    relay = OutboxRelay(engine, schema, bootstrap=bootstrap, partitions=4, batch_size=1000, idle_sleep_s=0.01)
    relay.start()
    try:
        await asyncio.Event().wait()  # the bench terminates the process when the backlog is 0
    finally:
        await relay.stop()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
