"""Debug only: with `BT_TRACEMALLOC_DUMP=<path prefix>` set, a service process traces its allocations
(`tracemalloc`, `BT_TRACEMALLOC_DUMP_FRAMES` frames, default 10) and on SIGUSR1 writes a snapshot to
`<prefix>.<pid>.<n>.snap` (load it with `tracemalloc.Snapshot.load` and compare two with
`compare_to(..., "traceback")`) and beside it `<prefix>.<pid>.<n>.json`: where the process's memory is at that
moment (`memory_split`) and the objects it holds by type (`object_census`), so RSS growth with a flat traced heap (memory the allocator holds but Python does not
use: fragmentation) tells itself apart from a leak. On SIGUSR2 it calls glibc's `malloc_trim(0)` and writes
`<prefix>.<pid>.trim.json`, the split before and after: how much of the RSS was the allocator's free memory. Off unless the variable is set; it costs memory and CPU, so
never in production.

`BT_MEMDEBUG_PROBE=<path prefix>` instead installs the same two signals without tracing (tracemalloc hooks the
allocator and doubles the memory per block, so it changes what it measures): SIGUSR1 writes only the `.json`
(the split and the census), SIGUSR2 the trim. How an untraced process's RSS splits, as production runs it."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import itertools
import os
import re
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType

import orjson

ENV = "BT_TRACEMALLOC_DUMP"
PROBE_ENV = "BT_MEMDEBUG_PROBE"
#: pymalloc's arena size on 64-bit CPython 3.10 and later.
ARENA_SIZE = 2**20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_free_heap() -> bool:
    """glibc's `malloc_trim(0)`: hand the heap it keeps free back to the OS. False where the C library has no
    such call (musl, macOS)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def _pymalloc_arenas() -> int | None:
    """The arenas pymalloc holds now (`sys._debugmallocstats`, which writes to fd 2 only)."""
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        found = re.search(rb"# arenas allocated current\s*=\s*([\d,]+)", f.read())
    return int(found.group(1).replace(b",", b"")) if found else None


def memory_split() -> dict[str, float]:
    """MiB: the process's RSS; what tracemalloc traces (Python's live allocations, and its peak); pymalloc's
        arenas (`pymalloc`: 1 MiB each, where Python's small objects live; an arena goes back only once empty; not
    while tracemalloc traces, which hooks the allocator); and
        glibc's `mallinfo2` where there is one: heap bytes in use (`malloc_used`), free but kept (`malloc_free`: what
        `malloc_trim` could hand back) and mmapped blocks (`malloc_mmap`)."""
    mib = 2**20
    out: dict[str, float] = {}
    arenas = _pymalloc_arenas()
    if arenas is not None:
        out["pymalloc"] = arenas * ARENA_SIZE / mib
    found = re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text())
    if found:
        out["rss"] = int(found.group(1)) / 1024
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        out |= {"traced": current / mib, "traced_peak": peak / mib}
    libc = _libc()
    if libc is not None and hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
        out |= {
            "malloc_used": info.uordblks / mib,
            "malloc_free": info.fordblks / mib,
            "malloc_mmap": info.hblkhd / mib,
        }
    return out


def object_census(top: int = 40) -> dict[str, int]:
    """How many objects the collector tracks, by type (the `top` most common): what a growing heap is made of,
    where tracemalloc only names the C code that allocated it (a traceback of the event loop alone)."""
    counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    return dict(counts.most_common(top))


def install_from_env() -> bool:
    prefix, traced = os.environ.get(ENV), True
    if not prefix:
        prefix, traced = os.environ.get(PROBE_ENV), False
    if not prefix or tracemalloc.is_tracing():
        return False
    if traced:
        tracemalloc.start(int(os.environ.get(ENV + "_FRAMES", "10")))
    counter = itertools.count()

    def dump(_signum: int, _frame: FrameType | None) -> None:
        n = next(counter)
        # The split first: the snapshot itself takes memory (and its file is what a reader waits for).
        Path(f"{prefix}.{os.getpid()}.{n}.json").write_bytes(orjson.dumps(memory_split() | {"types": object_census()}))
        if not traced:
            return
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        snap.dump(f"{prefix}.{os.getpid()}.{n}.snap")
        del snap
        tracemalloc.reset_peak()  # the next peak is the process's own, not this dump's

    def trim(_signum: int, _frame: FrameType | None) -> None:
        before = memory_split()
        release_free_heap()
        Path(f"{prefix}.{os.getpid()}.trim.json").write_bytes(orjson.dumps({"before": before, "after": memory_split()}))

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGUSR2, trim)
    return True
