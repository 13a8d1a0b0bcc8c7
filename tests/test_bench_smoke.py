"""The benchmark suite itself keeps working: a --quick run end to end gives every figure a number."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import orjson

from bench.cli import PARTS

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
            "--only",
            ",".join(PARTS),  # every part, backup (not in the default list) too
            "--batteries",
            "600",
            "--batch-events",
            "1200",
            "--ledger-events",  # about 2,000 when the growth starts (600 MANUFACTURED, the batch load, probes)
            "5000",
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
        ("events", "batch capture while growing the ledger"),
        ("events", "single-event p99"),
        ("events", "outbox drained after single load"),
        ("portal", "freshness p99"),
        ("portal", "history p99"),
        ("portal", "view kats p99"),
        ("log", "batch capture, log off"),
        ("log", "batch capture, log on"),
        ("log", "capture cost of the log"),
        ("log", "inclusion proof p99"),
        ("limits", "raw COPY"),
        ("limits", "single-row transactions"),
        ("limits", "bare FastAPI"),
        ("backup", "backup wall"),
        ("backup", "dump size"),
        ("backup", "restore wall"),
        ("backup", "restored database differs"),
        ("ratio", "registry bulk ÷ raw COPY"),
        ("ratio", "events batch ÷ raw COPY"),
        ("ratio", "events single ÷ single-row transactions"),
        ("cpu", "events single: CPU per unit, system"),
    ]:
        assert expected in names
    missing = [
        f["name"] for f in result["figures"] if not isinstance(f["value"], int | float) or math.isnan(f["value"])
    ]
    assert not missing, f"figures without a number: {missing}; notes: {result['notes']}"
    # Issue 16: per phase the figures and the target it is held to, CPU per unit apart for the load generator.
    for phase in ("registry bulk", "registry GET", "events batch", "events single", "epcis capture", "portal history"):
        summary = result["phases"][phase]
        for key in ("rate", "p50_ms", "p99_ms", "cpu_ms_per_unit_system", "cpu_ms_per_unit_loadgen"):
            assert isinstance(summary[key], int | float) and summary[key] >= 0, (phase, key, summary)
        assert summary["target"], phase
    # Issue 16, item 2: the ledger grown before the single-event phase, by accepted batches.
    assert result["phases"]["events batch, growing the ledger"]["units"] > 0
    assert next(f["value"] for f in result["figures"] if f["name"] == "ledger events after growing") >= 5_000
    # PostgreSQL's CPU by whose work: each service's backends are told apart by the role they log in as.
    pg = result["postgres_cpu"]["events single"]
    assert pg["events"] > 0 and pg["units"] > 0, pg
    for phase, rec in result["postgres_cpu"].items():
        split = sum(v for k, v in rec.items() if k != "units")
        assert abs(split - result["cpu"][phase]["postgres"]) < 0.05 + 0.02 * result["cpu"][phase]["postgres"], phase
    for limit in ("raw COPY", "single-row transactions", "bare FastAPI"):
        assert result["limits"][limit]["rate"] > 0
    # Issue 17: the backup restores into the same database (counts, log checkpoint and root, ledger hashes).
    backup = result["backup"]
    assert backup["differences"] == [], backup["differences"]
    assert backup["dump_bytes"] > 0 and backup["counts"]["events.ledger"] > 0
    for step in ("backup", "restore"):
        assert backup[step]["wall_s"] > 0 and backup[step]["tools_cpu_s"] >= 0, backup[step]
