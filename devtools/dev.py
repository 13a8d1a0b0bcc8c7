"""`batterytrace dev`: the whole system on one machine, on embedded PostgreSQL and Kafka. The bench and the
system tests start the services with the same command lines (`service_command`) and environment."""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from devtools.embedded import EmbeddedKafka, EmbeddedPostgres, wait_port
from devtools.reaper import guard
from shared.auth import generate_keypair
from shared.contract.streams import TOPIC_LIFECYCLE, TOPIC_REGISTRY, TOPICS
from shared.kafka import dlq_topic, ensure_topics
from shared.migrate import upgrade_head
from shared.roles import service_url

console = Console(stderr=True)
SERVICES = {
    "registry": ("services.registry.app:app", "BT_REGISTRY_"),
    "events": ("services.events.app:app", "BT_EVENTS_"),
    "portal": ("services.portal.app:app", "BT_PORTAL_"),
}
#: The EPCIS gateway: one base URL for capture (events) and query (portal), routed as the ingress does.
GATEWAY = ("services.gateway.app:app", "BT_GATEWAY_")
#: Every topic the services write, and the dead-letter topics of the consumed ones.
ALL_TOPICS = [*TOPICS, dlq_topic(TOPIC_REGISTRY), dlq_topic(TOPIC_LIFECYCLE)]


def service_command(service: str, host: str, port: int, *, graceful_s: int = 20, workers: int = 1) -> list[str]:
    """The uvicorn command line that runs one service (or the gateway) as its own process (dev, bench, system
    tests)."""
    factory = GATEWAY[0] if service == "gateway" else SERVICES[service][0]
    cmd = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", host, "--port", str(port)]
    # Keep-alive longer than a client's or load balancer's idle timeout (60 s is common): uvicorn's 5 s default
    # closes idle connections a client is about to reuse, which it sees as "server disconnected" (the GS1
    # conformance test did, 763 requests into one connection on a busy machine).
    cmd += ["--no-access-log", "--timeout-graceful-shutdown", str(graceful_s), "--timeout-keep-alive", "75"]
    return cmd + (["--workers", str(workers)] if workers > 1 else [])


def available_services() -> list[str]:
    """Which services exist in this build (each arrives with its issue)."""
    return [n for n in SERVICES if importlib.util.find_spec(f"services.{n}.app")]


@dataclass
class DevConfig:
    data_dir: Path
    host: str
    ports: dict[str, int]
    kafka_port: int
    services: list[str]
    database: str = "batterytrace"
    gateway_port: int = 8000


def service_env(cfg: DevConfig, db_url: str, bootstrap: str, public_key: Path) -> dict[str, str]:
    """The services' environment; each connects to `db_url`'s database as its own role (shared/roles.py)."""
    env = dict(os.environ)
    for service, (_, prefix) in SERVICES.items():
        env[f"{prefix}DATABASE_URL"] = service_url(db_url, service)
        env[f"{prefix}KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        env[f"{prefix}JWT_PUBLIC_KEY_FILE"] = str(public_key)
    env["BT_EVENTS_REGISTRY_URL"] = f"http://{cfg.host}:{cfg.ports['registry']}"
    env["BT_PORTAL_EVENTS_URL"] = f"http://{cfg.host}:{cfg.ports['events']}"
    env["BT_PORTAL_REGISTRY_URL"] = f"http://{cfg.host}:{cfg.ports['registry']}"
    env["BT_PORTAL_SELF_URL"] = f"http://{cfg.host}:{cfg.ports['portal']}"
    env["BT_GATEWAY_EVENTS_URL"] = f"http://{cfg.host}:{cfg.ports['events']}"
    env["BT_GATEWAY_PORTAL_URL"] = f"http://{cfg.host}:{cfg.ports['portal']}"
    if is_loopback(cfg.host):  # the demo sign-in and plain-HTTP cookies: only on this machine's loopback
        env["BT_PORTAL_UI_DEV_SIGNIN"] = "true"
        env["BT_PORTAL_UI_COOKIE_SECURE"] = "false"
        env["BT_PORTAL_UI_DEV_SIGNING_KEY_FILE"] = str(public_key.parent / "jwt-private.pem")
    log_key, passport_key = dev_signing_keys(public_key.parent)
    env["BT_EVENTS_LOG_SIGNING_KEY_FILE"] = str(log_key)
    env["BT_EVENTS_VIN_PSEUDONYM_KEY_FILE"] = str(dev_vin_key(public_key.parent))
    env["BT_PORTAL_PASSPORT_SIGNING_KEY_FILE"] = str(passport_key)
    return env


def dev_signing_keys(keys: Path, origin: str = "batterytrace.kr/log") -> tuple[Path, Path]:
    """The transparency log's signed-note key and the passport JWS key, made once under the data directory so
    checkpoints and signed passports keep verifying across restarts of `make dev`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared.contract.tlog import Signer

    keys.mkdir(parents=True, exist_ok=True)
    log_key, passport_key = keys / "log.key", keys / "passport-private.pem"
    if not log_key.exists():
        log_key.write_text(Signer.generate(origin).encode() + "\n")
        log_key.chmod(0o600)
    if not passport_key.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        passport_key.write_bytes(pem)
        passport_key.chmod(0o600)
    return log_key, passport_key


def dev_vin_key(keys: Path) -> Path:
    """The key of VIN pseudonyms, made once under the data directory so a VIN keeps its pseudonym (and its
    vehicle look-up) across restarts of `make dev`."""
    from services.events.vins.service import generate_key_file

    return generate_key_file(keys / "vin-pseudonym.key")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with code {proc.returncode} before it was healthy")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout_s}s")


def run_dev(cfg: DevConfig, demo: bool = False) -> int:
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = cfg.data_dir.resolve()
    stopping = False
    procs: dict[str, subprocess.Popen[bytes]] = {}
    pg = EmbeddedPostgres(data_dir / "pg")
    kafka = EmbeddedKafka(cfg.kafka_port, host=cfg.host, log_path=data_dir / "kafka.log")

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            console.print(f"[yellow]batterytrace: {signal.Signals(signum).name}, stopping…[/]")
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with console.status("starting PostgreSQL…"):
            pg.start()
            asyncio.run(pg.bootstrap(cfg.database))  # the roles, as `batterytrace db bootstrap` makes them
        db_url = pg.url(cfg.database)
        console.print(f"PostgreSQL ready ({pg.datadir})")
        with console.status("starting the Kafka-compatible broker…"):
            kafka.start()
            asyncio.run(ensure_topics(kafka.bootstrap, ALL_TOPICS))
        console.print(f"Kafka ready at {kafka.bootstrap}")
        with console.status("applying migrations…"):
            upgrade_head(pg.owner_url(cfg.database))
        _, public_key = generate_keypair(data_dir / "keys")
        env = service_env(cfg, db_url, kafka.bootstrap, public_key)
        for name in cfg.services:
            procs[name] = subprocess.Popen(service_command(name, cfg.host, cfg.ports[name]), env=env)
            guard(procs[name].pid)  # a killed dev command leaves no service behind
        urls = {name: f"http://{cfg.host}:{cfg.ports[name]}" for name in cfg.services}
        for name in cfg.services:
            wait_healthy(urls[name], procs[name])
        parts = " ".join(f"{n}={u}" for n, u in urls.items())
        if {"events", "portal"} <= set(cfg.services):  # the EPCIS interface under one base URL
            gateway = f"http://{cfg.host}:{cfg.gateway_port}"
            procs["gateway"] = subprocess.Popen(service_command("gateway", cfg.host, cfg.gateway_port), env=env)
            guard(procs["gateway"].pid)
            wait_healthy(gateway, procs["gateway"])
            parts += f" epcis={gateway}/epcis"
        print(
            f"batterytrace ready: {parts} kafka={kafka.bootstrap} docs={urls[cfg.services[0]]}/docs",
            flush=True,
        )
        if demo:
            from devtools.demo import load_demo

            load_demo(urls, data_dir / "keys" / "jwt-private.pem")
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    console.print(f"[red]{name} exited with code {p.returncode}; stopping[/]")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        kafka.stop()
        pg.stop()
        console.print("batterytrace: stopped")


__all__ = ["DevConfig", "available_services", "run_dev", "wait_port"]
