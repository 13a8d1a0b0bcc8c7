"""The three services as real processes (uvicorn), for fault and shutdown tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devtools.dev import SERVICES, service_command
from devtools.embedded import free_port
from devtools.reaper import guard
from shared.roles import service_url
from tests.conftest import eventually


class StallWarning(UserWarning):
    """A service that is up did not answer a read within the client's timeout."""


@dataclass
class System:
    db_url: str
    bootstrap: str
    topic_prefix: str
    public_key: str
    ports: dict[str, int] = field(default_factory=lambda: {n: free_port() for n in SERVICES})
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bt-system-logs-")))

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for service, (_, p) in SERVICES.items():
            env |= {
                f"{p}DATABASE_URL": service_url(self.db_url, service),  # each service as its own role
                f"{p}KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                f"{p}KAFKA_TOPIC_PREFIX": self.topic_prefix,
                f"{p}JWT_PUBLIC_KEY_FILE": self.public_key,
                f"{p}KAFKA_SESSION_TIMEOUT_MS": "2000",
                f"{p}KAFKA_HEARTBEAT_INTERVAL_MS": "300",
                f"{p}LOG_LEVEL": "ERROR",
                f"{p}RELAY_IDLE_SLEEP_S": "0.01",
            }
        env["BT_EVENTS_REGISTRY_URL"] = self.url("registry")
        env["BT_PORTAL_EVENTS_URL"] = self.url("events")
        env["BT_PORTAL_REGISTRY_URL"] = self.url("registry")
        env["BT_PORTAL_SELF_URL"] = self.url("portal")
        return env

    async def start(self, *names: str) -> None:
        for name in names or tuple(SERVICES):
            log = (self.log_dir / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                service_command(name, "127.0.0.1", self.ports[name]),
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            guard(self.procs[name].pid)  # a killed test run leaves no service behind
            log.close()  # the child has its own descriptor
        for name in names or tuple(SERVICES):
            await self.wait_healthy(name)

    async def wait_healthy(self, name: str) -> None:
        async def ok() -> bool:
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(self.url(name) + "/healthz", timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await eventually(ok, timeout_s=60)
        except AssertionError:
            proc = self.procs.get(name)
            code = proc.poll() if proc else None
            where = stacks_of(proc.pid) if proc and code is None else ""
            raise AssertionError(
                f"{name} not healthy within 60 s (exit code {code}); its log:\n{self.log_tail(name)}{where}"
            ) from None

    def log_tail(self, name: str, chars: int = 4000) -> str:
        """For a failing assertion's message: every "unhandled error" line of a service's log (each names
        its exception chain), then the end of the log (errors only: LOG_LEVEL=ERROR)."""
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace")
        unhandled = [line[:2000] for line in text.splitlines() if "unhandled error" in line]
        return "\n".join(unhandled) + "\n---\n" + text[-chars:]

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        shutil.rmtree(self.log_dir, ignore_errors=True)  # a failing assertion has quoted what it needed

    async def probe(self, client: httpx.AsyncClient, name: str, path: str, headers: dict[str, str]) -> int | None:
        """The status of a GET to service `name`, or None when it did not answer within the client's timeout (a
        service that is up but slow is "not yet", not a failure); such a stall is reported as a warning with where
        the service was, so that it is seen, not hidden."""
        proc = self.procs.get(name)
        answer = await get_or_stall(client, self.url(name) + path, headers, proc)
        return None if answer is None else answer.status_code


#: A read each service authenticates (a registered participant gets 404 for the unknown battery, anyone else 401).
PROBES = {"events": "/v1/batteries/NONE/state", "portal": "/v1/batteries/NONE/history"}


async def register_participants(
    sut: System, token: Any, orgs: list[tuple[str, str]], admitted_by: Sequence[str] = ("events",)
) -> None:
    """Register the participants a system test uses (the services run as in production: only registered
    participants' tokens work), and wait until every service in `admitted_by` learnt them from the stream."""
    await register_at(sut.url("registry"), sut.url(admitted_by[0]), token, orgs, PROBES[admitted_by[0]])
    for name in admitted_by[1:]:
        await admitted_at(sut.url(name), token, orgs, PROBES[name])


async def register_at(
    registry_url: str, admitting_url: str, token: Any, orgs: list[tuple[str, str]], probe: str = PROBES["events"]
) -> None:
    """`register_participants` for services started without a `System`."""
    from tests.events_helpers import BOOTSTRAP_ADMIN
    from tests.factories import participant

    async with httpx.AsyncClient(base_url=registry_url, timeout=30) as reg:
        admin = token(BOOTSTRAP_ADMIN, "admin")
        for org, role in orgs:
            await participant(reg, admin, org, role)
    await admitted_at(admitting_url, token, orgs, probe)


async def get_or_stall(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], proc: subprocess.Popen[bytes] | None = None
) -> httpx.Response | None:
    """A GET's answer, or None when it did not come within the client's timeout: a service that is up but slow is
    "not yet", not a failure. Such a stall is reported as a `StallWarning` (with the stacks and CPU of `proc`, the
    service's process, when it is known and alive), so that it is seen, not hidden."""
    try:
        return await client.get(url, headers=headers)
    except httpx.TimeoutException:
        where = stacks_of(proc.pid) if proc is not None and proc.poll() is None else ""
        warnings.warn(f"{url} did not answer GET in time{where}", StallWarning, stacklevel=3)
        return None


async def admitted_at(url: str, token: Any, orgs: list[tuple[str, str]], probe: str) -> None:
    """Wait until the service at `url` knows every participant in `orgs` (its authenticated read stops
    answering 401)."""

    async with httpx.AsyncClient(timeout=10) as c:

        async def admitted() -> bool:
            for org, role in orgs:
                ministry = org if role == "ministry" else None
                answer = await get_or_stall(c, url + probe, token(org, role, ministry=ministry))
                if answer is None:
                    return False
                if answer.status_code == 401:
                    assert answer.json()["code"] == "unknown-participant", answer.text
                    return False
                assert answer.status_code == 404, answer.text
            return True

        await eventually(admitted, timeout_s=60)


def stacks_of(pid: int) -> str:
    """Where a live process that has not come up is (py-spy, a dev dependency), with the CPU it has had: a start
    that waits on something shows what, a start starved of CPU shows little CPU."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    try:
        ticks = sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])
        cpu = f"\n--- CPU so far: {ticks / os.sysconf('SC_CLK_TCK'):.1f} s; load average {os.getloadavg()}"
    except OSError:
        cpu = ""
    if spy is None:
        return cpu
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    return f"{cpu}\n--- py-spy dump:\n{(dump.stdout or dump.stderr)[-6000:]}"
