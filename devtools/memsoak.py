"""Where a service's memory goes under load: the soak's mixed load for `--minutes`, RSS sampled every 10 s,
and with tracemalloc on in every service (`BT_TRACEMALLOC_DUMP`) a snapshot after the warm-up, one before each
broker fault after the first (`--broker-faults`: the broker killed and restarted empty, then the whole ledger
republished) and one at the end. Prints each process's RSS slope; for each snapshot of the `--only` processes
where their memory was (RSS, the traced Python heap, pymalloc's arenas, glibc's heap in use and free-but-kept:
RSS that grows while the traced heap stays flat is the allocator's, not a leak) and the object types that grew; and the allocation sites that grew most
(by traceback) from the first snapshot to the last, and from the one after the first fault to the last (what
keeps growing once every cache has filled). At the end it has each of them call `malloc_trim(0)` and prints
the RSS before and after: the part of the growth that was only glibc's free memory.

    python -m devtools.memsoak [--minutes 5] [--warm-up 60] [--top 15] [--broker-faults 0] [--replays 0] [--no-trace]

With `--no-trace` the services run untraced (`BT_MEMDEBUG_PROBE`): the RSS verdicts, the split and the census at
each snapshot and the trim at the end, of the memory as production allocates it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import orjson

from devtools.soak import BATTERIES, Soak, describe, say, slopes
from shared.memdebug import ENV, PROBE_ENV

NAMES = ("registry", "events", "portal", "portal-consumer")


def _snapshot(base: Path, pid: int, n: int) -> tracemalloc.Snapshot | None:
    path = base / f"trace.{pid}.{n}.snap"
    for _ in range(100):
        if path.exists():
            time.sleep(0.5)  # let the dump finish
            return tracemalloc.Snapshot.load(str(path))
        time.sleep(0.2)
    return None


def _split(base: Path, pid: int, n: int) -> dict[str, Any]:
    path = base / f"trace.{pid}.{n}.json"
    for _ in range(50):
        if path.exists():
            time.sleep(0.2)  # let the write finish
            return dict(orjson.loads(path.read_bytes()))
        time.sleep(0.2)
    return {}


def _growth(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot, top: int) -> None:
    for stat in last.compare_to(first, "traceback")[:top]:
        print(f"  {stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks")
        for line in stat.traceback.format(limit=6, most_recent_first=True):
            print("     " + line)


def _report(base: Path, name: str, pid: int, snapshots: int, top: int, traced: bool) -> None:
    say(f"{name}: MiB at each snapshot (0: after the warm-up; i: before fault i + 1; last: the end)")
    print("   n      rss   traced  t.peak pymalloc m.used  m.free  m.mmap")
    for n in range(snapshots):
        m = _split(base, pid, n)  # waits for the dump
        cells = [
            m.get(k) for k in ("rss", "traced", "traced_peak", "pymalloc", "malloc_used", "malloc_free", "malloc_mmap")
        ]
        print(f"  {n:2d} " + " ".join(f"{c:7.1f}" if c is not None else "      -" for c in cells))
    census = [_split(base, pid, n).get("types", {}) for n in (0, 1, snapshots - 1)]
    growing = sorted(census[2], key=lambda t: census[1].get(t, 0) - census[2][t])[:top]
    say(f"{name}: objects by type that grew most from snapshot 1 to the last (at snapshots 0, 1, last)")
    for t in growing:
        print(f"  {t}: {census[0].get(t, 0)}, {census[1].get(t, 0)}, {census[2][t]}")
    if not traced:
        return
    first, last = _snapshot(base, pid, 0), _snapshot(base, pid, snapshots - 1)
    if first is None or last is None:
        say(f"{name}: no snapshots")
        return
    t0 = sum(s.size for s in first.statistics("filename")) / 2**20
    t1 = sum(s.size for s in last.statistics("filename")) / 2**20
    say(f"{name}: traced {t0:.1f} -> {t1:.1f} MiB; top growth by traceback:")
    _growth(first, last, top)
    if snapshots > 3:
        settled = _snapshot(base, pid, 1)
        assert settled is not None
        say(f"{name}: top growth from the snapshot before the second fault to the end:")
        _growth(settled, last, top)


async def run(
    minutes: float,
    warm_up_s: float,
    top: int,
    only: tuple[str, ...],
    broker_faults: int = 0,
    replays: int = 0,
    traced: bool = True,
) -> None:
    base = Path(tempfile.mkdtemp(prefix="bt-memsoak-"))
    os.environ[ENV if traced else PROBE_ENV] = str(base / "trace")
    soak = Soak(base, minutes, 1e9)
    await asyncio.to_thread(soak.start_infra)
    tasks: list[asyncio.Task[None]] = []
    try:
        for name in NAMES:
            await soak.start(name)
        for attempt in range(5):  # a busy machine: the first reads may time out
            try:
                await soak.seed()
                break
            except httpx.HTTPError as exc:
                say(f"seed attempt {attempt + 1}: {exc!r}")
        else:
            raise RuntimeError("could not seed")
        maker = soak.token("LGES", "manufacturer")
        ministry = soak.token("MOLIT", "ministry", "MOLIT")
        tasks = [asyncio.create_task(soak.poster(b)) for b in BATTERIES[:8]]
        tasks += [
            asyncio.create_task(soak.reader("registry", f"/v1/batteries/{BATTERIES[1]}", maker)),
            asyncio.create_task(soak.reader("events", f"/v1/batteries/{BATTERIES[2]}/events", maker)),
            asyncio.create_task(soak.reader("portal", "/v1/views/molit", ministry)),
            asyncio.create_task(soak.sample_rss()),
        ]
        say(f"load for {minutes} min, {broker_faults} broker faults (logs and snapshots in {base})")
        soak.t0 = time.monotonic()
        await asyncio.sleep(warm_up_s)
        for name in only:
            soak.procs[name].send_signal(signal.SIGUSR1)
        snapshots = 1
        if broker_faults:  # each: broker killed and restarted empty, then republished from the ledger
            for i in range(broker_faults):
                if i:
                    for name in only:
                        soak.procs[name].send_signal(signal.SIGUSR1)
                    snapshots += 1
                await soak.fault(i * 4)
                for _ in range(replays):  # the real soak's faults replayed up to 24,000 messages each
                    await soak.republish()
                await asyncio.sleep(max(30.0, (minutes * 60 - warm_up_s) / broker_faults - 30))
        else:
            await asyncio.sleep(max(0.0, minutes * 60 - warm_up_s))
        for name in only:
            soak.procs[name].send_signal(signal.SIGUSR1)
        snapshots += 1
        soak.stop.set()
        await asyncio.gather(*tasks)
        say(f"{len(soak.accepted)} events accepted, {len(soak.bad)} bad answers; answers: {dict(soak.statuses)}")
        for proc, r in slopes(soak.rss, soak.faults).items():
            say(describe(proc, r))
        for name in only:
            _report(base, name, soak.procs[name].pid, snapshots, top, traced)
            soak.procs[name].send_signal(signal.SIGUSR2)  # malloc_trim: how much RSS was free heap
            trimmed = base / f"trace.{soak.procs[name].pid}.trim.json"
            for _ in range(50):
                if trimmed.exists():
                    break
                await asyncio.sleep(0.2)
            if trimmed.exists():
                t = orjson.loads(trimmed.read_bytes())
                say(
                    f"{name}: malloc_trim(0) at the end: RSS {t['before']['rss']:.1f} -> {t['after']['rss']:.1f} MiB, "
                    f"glibc free {t['before'].get('malloc_free', 0):.1f} -> {t['after'].get('malloc_free', 0):.1f} MiB"
                )
    finally:
        soak.stop.set()
        for t in tasks:
            t.cancel()
        soak.shutdown()
        shutil.rmtree(base / "pg", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.memsoak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--warm-up", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=["events", "portal-consumer"])
    parser.add_argument("--replays", type=int, default=0, help="extra republishes of the whole ledger per fault")
    parser.add_argument("--broker-faults", type=int, default=0, help="broker faults (with republish) after warm-up")
    parser.add_argument(
        "--no-trace",
        action="store_true",
        help="no tracemalloc (which changes the memory it measures): RSS, the memory split and the census only",
    )
    args = parser.parse_args()
    asyncio.run(
        run(
            args.minutes,
            args.warm_up,
            args.top,
            tuple(args.only),
            args.broker_faults,
            args.replays,
            not args.no_trace,
        )
    )


if __name__ == "__main__":
    main()
