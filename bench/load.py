"""A lean closed-loop load generator: pre-built requests, N workers, latencies in seconds.

The timed loop runs on aiohttp: the generator shares the machine's two cores with everything it
measures, and httpx spent ~1.3 ms of CPU per request (measured with `--profile`), which showed up in
every latency figure. Control calls (health, drains, counts) stay on httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@dataclass(frozen=True, slots=True)
class Req:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None
    weight: int = 1  # units of work it carries (batteries, events) for the progress bar and rates


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    units: int = 0
    errors: int = 0
    first_error: str = ""
    responses: list[bytes] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.units / self.elapsed if self.elapsed else 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)

    def add(self, other: Run) -> None:
        """Counts another run's requests into this one (a phase timed in several loops)."""
        self.latencies += other.latencies
        self.elapsed += other.elapsed
        self.units += other.units
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error

    def summary(self) -> dict[str, float]:
        """What a phase records of its timed loop: units done, units/s and the request latency percentiles."""
        return {"units": self.units, "rate": self.rate, "p50_ms": self.pct(50) * 1000, "p99_ms": self.pct(99) * 1000}


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a timed request got back (handed to `on_ok`)."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)


def client(base_url: str, concurrency: int, timeout_s: float = 60.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout_s)


async def closed_loop(
    http: httpx.AsyncClient,
    requests: Sequence[Req],
    concurrency: int,
    *,
    description: str,
    ok: int = 200,
    keep_responses: bool = False,
    on_ok: Callable[[int, Answer], Any] | None = None,
) -> Run:
    """`concurrency` workers send the requests in order as fast as answers come back, each on its own
    kept-alive connection to `http`'s base URL."""
    run = Run()
    total_units = sum(r.weight for r in requests)
    nxt = 0
    timeout = aiohttp.ClientTimeout(total=http.timeout.read)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(str(http.base_url), connector=connector, timeout=timeout) as session:
        with progress() as prog:
            task = prog.add_task(description, total=total_units)

            async def worker() -> None:
                nonlocal nxt
                while nxt < len(requests):
                    i = nxt
                    nxt += 1
                    r = requests[i]
                    t0 = time.perf_counter()
                    async with session.request(r.method, r.url, headers=r.headers, data=r.content) as resp:
                        body = await resp.read()
                    t1 = time.perf_counter()
                    if resp.status != ok:
                        run.errors += 1
                        if not run.first_error:
                            run.first_error = f"{r.method} {r.url}: {resp.status} {body[:500].decode(errors='replace')}"
                        continue
                    run.latencies.append(t1 - t0)
                    run.units += r.weight
                    if on_ok is not None:
                        on_ok(i, Answer(resp.status, body))
                    if keep_responses:
                        run.responses.append(body)
                    prog.advance(task, r.weight)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            run.elapsed = time.perf_counter() - started
    return run


async def wait_until(check: Callable[[], Any], *, timeout_s: float, interval_s: float = 0.05) -> float | None:
    """Poll an async check until truthy; the seconds it took, or None on timeout."""
    started = time.perf_counter()
    while True:
        if await check():
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_s:
            return None
        await asyncio.sleep(interval_s)
