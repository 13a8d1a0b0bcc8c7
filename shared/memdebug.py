"""Debug only: with `BT_TRACEMALLOC_DUMP=<path prefix>` set, a service process traces its allocations
(`tracemalloc`, `BT_TRACEMALLOC_DUMP_FRAMES` frames, default 10) and on SIGUSR1 writes a snapshot to `<prefix>.<pid>.<n>.snap` (load it with
`tracemalloc.Snapshot.load` and compare two with `compare_to(..., "traceback")`). Off unless the variable is
set; it costs memory and CPU, so never in production."""

from __future__ import annotations

import itertools
import os
import signal
import tracemalloc
from types import FrameType

ENV = "BT_TRACEMALLOC_DUMP"


def install_from_env() -> bool:
    prefix = os.environ.get(ENV)
    if not prefix or tracemalloc.is_tracing():
        return False
    tracemalloc.start(int(os.environ.get(ENV + "_FRAMES", "10")))
    counter = itertools.count()

    def dump(_signum: int, _frame: FrameType | None) -> None:
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        snap.dump(f"{prefix}.{os.getpid()}.{next(counter)}.snap")

    signal.signal(signal.SIGUSR1, dump)
    return True
