"""What a service keeps in memory per request or per event is bounded: the per-process caches that every
event or request touches stop growing once full, however many distinct keys arrive (the soak's RSS slope
must not come from them). Measured with tracemalloc."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from shared.contract.lifecycle import ts
from shared.limits import RateLimiter


def _growth_after_full(fill: Callable[[int, int], None], size: int) -> tuple[int, int]:
    """(bytes a full cache holds, bytes gained by feeding it `7 * size` more new keys once it had seen `3 * size`).
    Once full, a bounded cache only swaps entries (its hash table may settle one size up: hence not zero); a
    leak would gain about one full cache per `size` keys, seven times its footprint."""
    tracemalloc.start()
    try:
        gc.collect()
        empty = tracemalloc.get_traced_memory()[0]
        fill(0, size)
        gc.collect()
        footprint = tracemalloc.get_traced_memory()[0] - empty
        fill(size, 3 * size)
        gc.collect()
        settled = tracemalloc.get_traced_memory()[0]
        fill(3 * size, 10 * size)
        gc.collect()
        return footprint, tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()


def test_timestamp_cache_stops_growing_at_its_maxsize() -> None:
    maxsize = ts.cache_parameters()["maxsize"]
    assert maxsize is not None
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ts.cache_clear()

    def fill(start: int, end: int) -> None:
        for i in range(start, end):
            ts(base + timedelta(microseconds=i))

    footprint, grown = _growth_after_full(fill, maxsize)
    assert ts.cache_info().currsize == maxsize
    assert grown < footprint / 4, (footprint, grown)


def test_rate_limiter_stops_growing_at_max_keys() -> None:
    limiter = RateLimiter(rate=1, burst=2, max_keys=5_000)

    def fill(start: int, end: int) -> None:
        for i in range(start, end):
            limiter.take(f"10.0.{i // 250}.{i % 250}")

    footprint, grown = _growth_after_full(fill, limiter.max_keys)
    assert len(limiter) == limiter.max_keys
    assert grown < footprint / 4, (footprint, grown)
