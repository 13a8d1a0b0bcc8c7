"""The benchmark suite itself keeps working: a --quick run end to end gives every figure a number."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_reports_every_figure_with_a_number(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, XDG_RUNTIME_DIR=os.environ.get("XDG_RUNTIME_DIR", "/tmp"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--batteries",
            "600",
            "--batch-events",
            "1200",
            "--single-events",
            "200",
            "--get-requests",
            "200",
            "--history-requests",
            "200",
            "--log-leaves",
            "20000",
            "--proof-requests",
            "300",
            "--catchup-timeout",
            "60",
            "--output",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result = orjson.loads(out.read_bytes())
    names = {(f["part"], f["name"]) for f in result["figures"]}
    for expected in [
        ("registry", "bulk registration"),
        ("registry", "GET battery p99"),
        ("events", "batch capture"),
        ("events", "batch capture ÷ COPY"),
        ("events", "single-event p99"),
        ("events", "outbox drained after single load"),
        ("portal", "freshness p99"),
        ("portal", "history p99"),
        ("portal", "view kats p99"),
        ("log", "batch capture, log off"),
        ("log", "batch capture, log on"),
        ("log", "capture cost of the log"),
        ("log", "inclusion proof p99"),
    ]:
        assert expected in names
    missing = [
        f["name"] for f in result["figures"] if not isinstance(f["value"], int | float) or math.isnan(f["value"])
    ]
    assert not missing, f"figures without a number: {missing}; notes: {result['notes']}"
