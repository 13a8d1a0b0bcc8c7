"""Servers started by the dev command, the tests and the bench stop by themselves when what started them dies.

A normal exit stops them (each owner's `stop`), but a SIGKILLed pytest, a killed bench or a closed terminal runs
no cleanup: the embedded PostgreSQL, the broker and the service processes would live on, holding ports, memory
and CPU (found: orphan brokers after killed test runs, an orphan PostgreSQL after a killed bench). `guard` starts
a small watcher process per server: it waits on the owner's and the server's process file descriptors (Linux
`pidfd_open`; a one-second poll elsewhere) and, when the owner is gone first, sends the server its stop signal,
kills it after a grace period, and removes its ephemeral data directory. When the server ends first, the watcher
just exits.

    python -m devtools.reaper OWNER_PID SERVER_PID [--signal TERM] [--grace 10] [--remove DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid: int) -> bool:
    """Alive and not merely a zombie: a process that has exited but that its parent has not reaped yet (a daemon
    such as a restarted postmaster is reaped by init, a moment after it exits) still answers `alive`."""
    if not alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: `alive` is all we know
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the state follows the command name, which may hold spaces


def wait_gone(pid: int, timeout_s: float) -> bool:
    """True once `pid` no longer runs; False if it still does after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_first(owner: int, server: int) -> str:
    """'owner' or 'server': whichever process ends first."""
    fds: dict[int, str] = {}
    try:
        for pid, name in ((owner, "owner"), (server, "server")):
            fds[os.pidfd_open(pid)] = name
    except (AttributeError, OSError):
        for fd in fds:
            os.close(fd)
        fds = {}
    if fds:
        try:
            ready, _, _ = select.select(list(fds), [], [])
            return fds[ready[0]]
        finally:
            for fd in fds:
                os.close(fd)
    while True:  # no pidfd: poll
        if not alive(server):
            return "server"
        if not alive(owner) or os.getppid() != owner:
            return "owner"
        time.sleep(1.0)


def stop(server: int, sig: int, grace_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(server, sig)
    deadline = time.monotonic() + grace_s
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(server, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.reaper", description=__doc__.split("\n\n")[0])
    p.add_argument("owner", type=int, help="the process whose death stops the server")
    p.add_argument("server", type=int, help="the server's process ID")
    p.add_argument("--signal", default="TERM", help="the server's stop signal (TERM; PostgreSQL: INT, fast shutdown)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds before SIGKILL")
    p.add_argument("--remove", type=Path, help="a directory to remove after the server stopped (ephemeral data)")
    args = p.parse_args(argv)
    if wait_first(args.owner, args.server) == "server":
        return 0
    stop(args.server, signal.Signals[f"SIG{args.signal}"], args.grace)
    if args.remove is not None:
        shutil.rmtree(args.remove, ignore_errors=True)
    return 0


def guard(server: int, *, sig: str = "TERM", grace_s: float = 10.0, remove: Path | None = None) -> None:
    """Have `server` stopped when this process dies (see the module's docstring). The watcher runs in its own
    session, so a Ctrl-C to the terminal's process group reaches the owner, which stops its servers itself."""
    cmd = [sys.executable, "-m", "devtools.reaper", str(os.getpid()), str(server), "--signal", sig]
    cmd += ["--grace", str(grace_s)]
    if remove is not None:
        cmd += ["--remove", str(remove)]
    root = Path(__file__).resolve().parent.parent
    subprocess.Popen(
        cmd,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
