"""Figures against targets: the final table (stdout) and bench/results/latest.json."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
#: The CPU groups (bench/probe.py) that are the load generator, not the system under test.
LOADGEN_GROUPS = ("bench", "loadgen")
#: The raw limits measured in the same run (bench/limits.py), by name.
COPY_LIMIT = "raw COPY"
TX_LIMIT = "single-row transactions"
FASTAPI_LIMIT = "bare FastAPI"


@dataclass(frozen=True)
class Target:
    """What a phase is held to (issue 16): CPU ms per unit summed over the system, units/s, request p99, and
    its rate as a ratio to a raw limit measured in the same run."""

    cpu_ms_per_unit_system: float | None = None
    rate: float | None = None
    p99_ms: float | None = None
    limit: str | None = None
    ratio: float | None = None


PHASE_TARGETS = {
    "registry bulk": Target(cpu_ms_per_unit_system=0.08, rate=20_000, limit=COPY_LIMIT, ratio=0.25),
    "events batch": Target(cpu_ms_per_unit_system=0.15, rate=10_000, limit=COPY_LIMIT, ratio=0.3),
    "events single": Target(cpu_ms_per_unit_system=1.5, rate=1_000, p99_ms=50, limit=TX_LIMIT, ratio=0.4),
    "epcis capture": Target(cpu_ms_per_unit_system=0.3, rate=5_000),
    "registry GET": Target(p99_ms=5),
    "portal history": Target(p99_ms=10),
}


@dataclass
class Figure:
    part: str
    name: str
    value: float | None  # None: "n/a" (the endpoint or the phase does not exist)
    unit: str
    target: float | None = None  # None: reported for information
    op: str = ">="  # how value must compare with target
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.value is None or math.isnan(self.value):
            return False
        return self.value >= self.target if self.op == ">=" else self.value <= self.target


@dataclass
class Report:
    config: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: phase -> wall seconds, units of work and CPU seconds per process group
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    #: PostgreSQL's CPU seconds per phase by whose work (bench.probe.pg_split), with the phase's units.
    pg_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    #: phase -> rate, p50_ms, p99_ms, cpu_ms_per_unit_system, cpu_ms_per_unit_loadgen, target (and the ratio
    #: to its raw limit once `finalize` ran)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: raw limit -> rate (and how it was measured), see bench/limits.py
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: part -> wall seconds (the start of the system included): where a run's time goes
    part_seconds: dict[str, float] = field(default_factory=dict)
    #: the backup part's timings, sizes and checks (bench/backup.py); empty when it did not run
    backup: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    _finalized: bool = False

    def add(
        self,
        part: str,
        name: str,
        value: float | None,
        unit: str,
        target: float | None = None,
        op: str = ">=",
        note: str = "",
    ) -> Figure:
        fig = Figure(part, name, None if value is None else float(value), unit, target, op, note)
        self.figures.append(fig)
        return fig

    def record_phase(self, name: str, rec: dict[str, float], cpu: dict[str, float]) -> None:
        """A phase's summary: its timed loop's figures and CPU ms per unit, system and load generator apart."""
        units = rec.get("units", 0) or 0
        loadgen = sum(v for k, v in cpu.items() if k.startswith(LOADGEN_GROUPS))
        system = sum(v for k, v in cpu.items() if not k.startswith(LOADGEN_GROUPS))
        target = PHASE_TARGETS.get(name)
        self.phases[name] = {
            "units": units,
            "rate": rec.get("rate"),
            "p50_ms": rec.get("p50_ms"),
            "p99_ms": rec.get("p99_ms"),
            "cpu_ms_per_unit_system": 1000 * system / units if units and cpu else None,
            "cpu_ms_per_unit_loadgen": 1000 * loadgen / units if units and cpu else None,
            "target": None if target is None else {k: v for k, v in asdict(target).items() if v is not None},
        }

    def add_limit(self, name: str, rate: float | None, unit: str, note: str, **extra: Any) -> None:
        self.limits[name] = {"rate": rate, "unit": unit, "note": note, **extra}
        self.add("limits", name, rate, unit, note=note)

    def finalize(self) -> None:
        """Hold each phase to its targets: CPU per unit (system) and the ratio to its raw limit become figures
        of the table (the throughput and latency targets are figures of their parts already)."""
        if self._finalized:
            return
        self._finalized = True
        for name, ph in self.phases.items():
            target = PHASE_TARGETS.get(name)
            if target is None:
                continue
            if target.cpu_ms_per_unit_system is not None:
                loadgen = ph["cpu_ms_per_unit_loadgen"]
                self.add(
                    "cpu",
                    f"{name}: CPU per unit, system",
                    ph["cpu_ms_per_unit_system"],
                    "ms",
                    target.cpu_ms_per_unit_system,
                    "<=",
                    "" if loadgen is None else f"load generator {loadgen:.3f} ms per unit",
                )
            if target.limit is not None and target.ratio is not None:
                limit = (self.limits.get(target.limit) or {}).get("rate")
                ratio = ph["rate"] / limit if limit and ph["rate"] is not None else None
                ph["ratio_to_limit"] = {"limit": target.limit, "limit_rate": limit, "ratio": ratio}
                self.add(
                    "ratio",
                    f"{name} ÷ {target.limit}",
                    ratio,
                    "x",
                    target.ratio,
                    ">=",
                    "" if not limit else f"{_num(ph['rate'])}/s against {_num(limit)}/s measured in this run",
                )

    def as_dict(self) -> dict[str, Any]:
        self.finalize()
        return {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration_s": round(time.time() - self.started_at, 1),
            "machine": {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform()},
            "config": self.config,
            "figures": [asdict(f) | {"passed": f.passed} for f in self.figures],
            "all_passed": all(f.passed is not False for f in self.figures),
            "part_seconds": self.part_seconds,
            "phases": self.phases,
            "limits": self.limits,
            "cpu": self.cpu,
            "postgres_cpu": self.pg_cpu,
            "backup": self.backup,
            "notes": self.notes,
        }

    def write(self, path: Path | None = None) -> Path:
        path = path or RESULTS / "latest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2))
        return path

    def print(self, console: Console) -> None:
        self.finalize()
        table = Table(title="batterytrace bench", show_lines=False)
        for col, justify in (
            ("part", "left"),
            ("figure", "left"),
            ("measured", "right"),
            ("target", "right"),
            ("", "center"),
            ("note", "left"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for f in self.figures:
            mark = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: ""}[f.passed]
            target = "" if f.target is None else f"{f.op} {_num(f.target)} {f.unit}"
            value = "n/a" if f.value is None else f"{_num(f.value)} {f.unit}"
            table.add_row(f.part, f.name, value, target, mark, f.note)
        console.print(table)
        if self.phases:
            console.print(self.phase_table())
        if self.cpu:
            console.print(self.cpu_table())
        if any(len(rec) > 1 for rec in self.pg_cpu.values()):
            console.print(self.pg_table())
        for n in self.notes:
            console.print(f"note: {n}")

    def phase_table(self) -> Table:
        table = Table(title="per phase: throughput, latency, CPU ms per unit, ratio to its raw limit (target)")
        for col in ("phase", "rate /s", "p50 ms", "p99 ms", "CPU ms/unit system", "CPU ms/unit loadgen", "÷ limit"):
            table.add_column(col, justify="left" if col == "phase" else "right")

        def cell(value: float | None, target: float | None, op: str) -> str:
            text = "n/a" if value is None or math.isnan(value) else _num(value)
            if target is None:
                return text
            ok = value is not None and not math.isnan(value) and (value >= target if op == ">=" else value <= target)
            return f"{text} ({op} {_num(target)}) " + ("[green]✓[/]" if ok else "[red]✗[/]")

        for name, ph in self.phases.items():
            t = PHASE_TARGETS.get(name) or Target()
            ratio = ph.get("ratio_to_limit") or {}
            table.add_row(
                name,
                cell(ph["rate"], t.rate, ">="),
                cell(ph["p50_ms"], None, "<="),
                cell(ph["p99_ms"], t.p99_ms, "<="),
                cell(ph["cpu_ms_per_unit_system"], t.cpu_ms_per_unit_system, "<="),
                cell(ph["cpu_ms_per_unit_loadgen"], None, "<="),
                "" if not ratio else f"{cell(ratio['ratio'], t.ratio, '>=')} of {ratio['limit']}",
            )
        return table

    def cpu_table(self) -> Table:
        groups = sorted({k for rec in self.cpu.values() for k in rec} - {"wall_s", "units"})
        table = Table(title="where the CPU went: CPU ms per unit of work (and % of one core)")
        for col in ("phase", "units", "wall s", *groups):
            table.add_column(col, justify="left" if col == "phase" else "right")
        for phase, rec in self.cpu.items():
            units, wall = rec.get("units", 0) or 1, rec["wall_s"] or 1
            cells = [f"{1000 * rec.get(g, 0) / units:.3f} ({100 * rec.get(g, 0) / wall:.0f}%)" for g in groups]
            table.add_row(phase, f"{rec.get('units', 0):,.0f}", f"{rec['wall_s']:.1f}", *cells)
        return table

    def pg_table(self) -> Table:
        kinds = sorted({k for rec in self.pg_cpu.values() for k in rec} - {"units"})
        table = Table(
            title="PostgreSQL's CPU by whose work: CPU ms per unit of work",
            caption="ended: processes that ended during the phase (autovacuum workers, closed sessions)",
        )
        for col in ("phase", *kinds):
            table.add_column(col, justify="left" if col == "phase" else "right")
        for phase, rec in self.pg_cpu.items():
            units = rec.get("units", 0) or 1
            table.add_row(phase, *[f"{1000 * rec.get(k, 0) / units:.3f}" for k in kinds])
        return table


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
