"""Where the CPU goes during a phase: CPU seconds of each service, PostgreSQL, the broker and the bench
itself (from /proc), and optionally a py-spy profile of each service."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.stack import Stack

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, cpu seconds, cpu seconds of its exited children) for every process we can read."""
    out: dict[int, tuple[int, float, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry.name)] = (
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / _TICK,
            (int(fields[13]) + int(fields[14])) / _TICK,
        )
    return out


def _tree(table: dict[int, tuple[int, float, float]], root: int) -> set[int]:
    pids, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, row in table.items() if row[0] == parent and p not in pids]
        pids.update(kids)
        frontier += kids
    return pids


def groups(stack: Stack) -> dict[str, int]:
    roots = {name: p.pid for name, p in stack.procs.items()}
    if stack.pg is not None:
        pidfile = stack.pg.datadir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            roots["postgres"] = int(pidfile.read_text().split()[0])
    if stack.kafka is not None and stack.kafka.pid:
        roots["broker"] = stack.kafka.pid
    roots["bench"] = os.getpid()
    return roots


def cpu_snapshot(stack: Stack, table: dict[int, tuple[int, float, float]] | None = None) -> dict[str, float]:
    """CPU seconds per process group (`table`: a /proc read to use, so that `pg_split` can share it)."""
    if not Path("/proc/self/stat").exists():
        return {}
    table = _proc_table() if table is None else table
    out = {}
    for name, root in groups(stack).items():
        pids = {root} if name == "bench" else _tree(table, root)
        # Exited children (PostgreSQL backends that closed) count through their reaped time.
        out[name] = sum(table[p][1] + table[p][2] for p in pids if p in table)
    return out


#: PostgreSQL's processes by what they do, from their titles ("postgres: bt_events batterytrace 127.0.0.1(...) idle"):
#: a backend by the role it logged in as (each service has its own), autovacuum, the rest as background.
_PG_ROLES = {"bt_events": "events", "bt_portal": "portal", "bt_registry": "registry"}


@dataclass(frozen=True)
class PgSnapshot:
    """PostgreSQL's processes at one moment: each one's kind and CPU seconds, and the CPU of those that ended (the
    postmaster's reaped children: autovacuum workers finish after their tables, backends end with their session)."""

    processes: dict[int, tuple[str, float]]
    ended: float

    def since(self, before: PgSnapshot) -> dict[str, float]:
        """CPU seconds between the two snapshots by kind; `ended`: the processes that ended in between (what they
        used after `before`, and all of what those born in between used), mostly autovacuum workers."""
        out: dict[str, float] = {}
        for pid, (kind, cpu) in self.processes.items():
            out[kind] = out.get(kind, 0.0) + cpu - before.processes.get(pid, (kind, 0.0))[1]
        gone = sum(cpu for pid, (_, cpu) in before.processes.items() if pid not in self.processes)
        out["ended"] = self.ended - before.ended - gone
        return out


def snapshots(stack: Stack) -> tuple[dict[str, float], PgSnapshot | None]:
    """`cpu_snapshot` and `pg_split` from one read of /proc, so that the split sums to PostgreSQL's total (two reads
    apart let a busy server's CPU run on between them)."""
    if not Path("/proc/self/stat").exists():
        return {}, None
    table = _proc_table()
    return cpu_snapshot(stack, table), pg_split(stack, table)


def pg_split(stack: Stack, table: dict[int, tuple[int, float, float]] | None = None) -> PgSnapshot | None:
    """PostgreSQL's processes by whose work they do: each service's backends (by the role they logged in as),
    autovacuum, background processes (WAL writer, checkpointer, I/O workers, the postmaster itself), other
    sessions (the bench's own, the tools')."""
    root = groups(stack).get("postgres")
    if root is None or not Path("/proc/self/stat").exists():
        return None
    table = _proc_table() if table is None else table
    if root not in table:
        return None
    processes: dict[int, tuple[str, float]] = {root: ("background", table[root][1])}
    for pid in _tree(table, root) - {root}:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        words = title.removeprefix("postgres: ").split()
        if title.startswith("postgres: autovacuum"):
            kind = "autovacuum"
        elif words and words[0] in _PG_ROLES:
            kind = _PG_ROLES[words[0]]
        elif len(words) >= 3 and (words[2] == "[local]" or "(" in words[2]):  # a client backend of another role
            kind = "other sessions"
        else:
            kind = "background"
        processes[pid] = (kind, table[pid][1] + table[pid][2])
    return PgSnapshot(processes, table[root][2])


def cpu_snapshot_of(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process (and its own exited children)."""
    if not Path("/proc/self/stat").exists():
        return dict.fromkeys(roots, 0.0)
    table = _proc_table()
    return {name: table[pid][1] + table[pid][2] if pid in table else 0.0 for name, pid in roots.items()}


def exited_cpu(pid: int) -> tuple[float, float] | None:
    """CPU seconds of an exited, not yet reaped child (a zombie: `os.waitid(..., WEXITED | WNOWAIT)`): its own,
    and that of the children it waited for. None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK


@contextlib.contextmanager
def profiled(stack: Stack, directory: Path | None, phase: str, services: list[str]) -> Iterator[None]:
    """py-spy record each service for the phase (when a directory is given; py-spy is a dev dependency)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if directory is None or spy is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in services:
        p = stack.procs.get(name)
        if p is None:
            continue
        out = directory / f"{phase}-{name}.txt"
        procs.append(
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(p.pid),
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        yield
    finally:
        for sp in procs:
            sp.send_signal(signal.SIGINT)
        for sp in procs:
            try:
                sp.wait(30)
            except subprocess.TimeoutExpired:
                sp.kill()
