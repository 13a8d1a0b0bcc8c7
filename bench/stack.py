"""The system under test: a fresh embedded PostgreSQL and tansu broker on free ports, migrations, and each
service as its own uvicorn process, laid out as `batterytrace dev` lays them out."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from devtools.dev import ALL_TOPICS, SERVICES, DevConfig, service_command, service_env, wait_healthy
from devtools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from devtools.reaper import guard
from shared.auth import generate_keypair
from shared.db import asyncpg_dsn
from shared.kafka import ensure_topics
from shared.migrate import upgrade_head

DATABASE = "batterytrace"


#: Every request of the bench comes from one address, and the public ones (inclusion proofs) carry no token, so
#: they share one per-participant budget (2,000/s by default), which a fast phase exceeds (a proof run measured
#: 4,459 of 20,000 answered 429). The limiter still runs on every request; its rate is lifted so that the bench
#: times the service, not the limit.
UNTHROTTLED = {
    f"{prefix}RATE_LIMIT_{name}": "1000000" for _, prefix in SERVICES.values() for name in ("PER_S", "BURST")
}

#: The bench's `shared_buffers` (`--shared-buffers`).
SHARED_BUFFERS = "4GB"
#: Server settings of the run besides `shared_buffers`, as a production server with this write load is set
#: (`--pg NAME=VALUE` overrides or adds): checkpoints spaced by time, not forced every gigabyte of WAL by the
#: embedded server's 1 GB `max_wal_size` (each checkpoint makes the next change of every page write the whole
#: page to the WAL again). Durability is unchanged: `synchronous_commit` and `full_page_writes` stay on; a crash
#: replays more WAL.
SERVER_SETTINGS = {"max_wal_size": "8GB", "checkpoint_timeout": "15min"}


@dataclass
class Stack:
    services: list[str]
    workers: int = 1
    keep: bool = False
    sql_stats: bool = False  # load pg_stat_statements (for --profile)
    #: PostgreSQL's buffer cache, as a production server is sized (about a sixth of this machine's 24 GiB), not
    #: the embedded server's 128 MB default, which a full run's 8 GB database outgrows ("" keeps the default).
    shared_buffers: str = SHARED_BUFFERS
    split: bool = False  # deploy/'s layout: HTTP, relay and consumer processes per service
    server_settings: dict[str, str] = field(default_factory=lambda: dict(SERVER_SETTINGS))
    host: str = "127.0.0.1"
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bt-bench-")))
    proc_urls: dict[str, str] = field(default_factory=dict)  # every process (HTTP and workers)
    db_url: str = ""
    private_key: bytes = b""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pg: EmbeddedPostgres | None = None
    kafka: EmbeddedKafka | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def urls(self) -> dict[str, str]:
        """Each service's HTTP process (the one named after the service)."""
        return {name: self.proc_urls[name] for name in self.services if name in self.proc_urls}

    @property
    def dsn(self) -> str:
        """Plain asyncpg DSN of the bench database (for COPY and progress counts)."""
        return asyncpg_dsn(self.db_url)

    def log_path(self, name: str) -> Path:
        return self.base / f"{name}.log"

    def start(self) -> None:
        self.pg = EmbeddedPostgres(self.base / "pg", ephemeral=True)
        self.pg.start()
        asyncio.run(self.pg.bootstrap(DATABASE))  # the roles; each service connects as its own
        self.db_url = self.pg.url(DATABASE)
        settings = ({"shared_buffers": self.shared_buffers} if self.shared_buffers else {}) | self.server_settings
        if self.sql_stats:
            settings["shared_preload_libraries"] = "pg_stat_statements"
            settings["pg_stat_statements.track_planning"] = "on"  # whether a prepared statement is planned per call
        for name, value in settings.items():  # server settings: they take effect on the restart
            asyncio.run(self._exec(f"ALTER SYSTEM SET {name} = '{value}'"))
        if settings:
            self.pg.pg_ctl("-w", "restart")
        if self.sql_stats:
            asyncio.run(self._exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        self.kafka = EmbeddedKafka(free_port(), host=self.host, log_path=self.log_path("kafka"))
        self.kafka.start()
        asyncio.run(ensure_topics(self.kafka.bootstrap, ALL_TOPICS))
        upgrade_head(self.pg.owner_url(DATABASE))
        private, public = generate_keypair(self.base / "keys")
        self.private_key = private.read_bytes()
        ports = {name: free_port() for name in SERVICES}
        cfg = DevConfig(
            data_dir=self.base, host=self.host, ports=ports, kafka_port=self.kafka.port, services=self.services
        )
        self.env = env = service_env(cfg, self.db_url, self.kafka.bootstrap, public) | UNTHROTTLED
        for name in self.services:
            for proc_name, toggles in self.roles(name):
                port = ports[name] if proc_name == name else free_port()
                self._spawn(proc_name, name, port, env | toggles)
        self._wait_healthy(list(self.procs))

    def _wait_healthy(self, names: list[str]) -> None:
        for proc_name in names:
            try:
                wait_healthy(self.proc_urls[proc_name], self.procs[proc_name])
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n--- {proc_name} log ---\n{self.log_tail(proc_name)}") from None

    def restart(self, service: str, overrides: dict[str, str] | None = None) -> None:
        """Stop every process of a service and start it again, on the same ports, with `overrides` on top of
        its environment (the bench's comparison runs: the events service with its log worker off)."""
        for proc_name, toggles in self.roles(service):
            p = self.procs.pop(proc_name)
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            port = int(self.proc_urls[proc_name].rsplit(":", 1)[1])
            self._spawn(proc_name, service, port, self.env | toggles | (overrides or {}))
        self._wait_healthy([proc_name for proc_name, _ in self.roles(service)])

    def roles(self, service: str) -> list[tuple[str, dict[str, str]]]:
        """The processes of a service: one that does everything (`make dev`), or, with `split`, the layout
        of deploy/: an HTTP process, a relay worker and a consumer worker (which also runs the verifier)."""
        if not self.split:
            return [(service, {})]
        prefix = SERVICES[service][1]

        def on(*roles: str) -> dict[str, str]:
            return {
                f"{prefix}RELAY_ENABLED": str("relay" in roles).lower(),
                f"{prefix}CONSUMERS_ENABLED": str("consumers" in roles).lower(),
                f"{prefix}VERIFIER_ENABLED": str("consumers" in roles).lower(),
            }

        out = [(service, on())]
        if service != "portal":
            out.append((f"{service}-relay", on("relay")))
        if service != "registry":
            out.append((f"{service}-consumer", on("consumers")))
        return out

    def _spawn(self, proc_name: str, service: str, port: int, env: dict[str, str]) -> None:
        workers = 1 if proc_name != service else self.workers  # workers of the HTTP process only
        cmd = service_command(service, self.host, port, graceful_s=10, workers=workers)
        out = open(self.log_path(proc_name), "ab")  # handed to the child process
        # Own session: a terminal Ctrl-C reaches the bench only, which then stops the services in order.
        self.procs[proc_name] = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        guard(self.procs[proc_name].pid)  # and a killed bench leaves none behind
        out.close()
        self.proc_urls[proc_name] = f"http://{self.host}:{port}"

    async def _exec(self, sql: str) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with code {p.returncode}\n{self.log_tail(name)}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()
        if self.kafka is not None:
            self.kafka.stop()
            self.kafka = None
        if self.pg is not None:
            self.pg.stop()
            self.pg = None
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)
