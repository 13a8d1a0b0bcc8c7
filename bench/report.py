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
    started_at: float = field(default_factory=time.time)

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

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration_s": round(time.time() - self.started_at, 1),
            "machine": {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform()},
            "config": self.config,
            "figures": [asdict(f) | {"passed": f.passed} for f in self.figures],
            "all_passed": all(f.passed is not False for f in self.figures),
            "cpu": self.cpu,
            "notes": self.notes,
        }

    def write(self, path: Path | None = None) -> Path:
        path = path or RESULTS / "latest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2))
        return path

    def print(self, console: Console) -> None:
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
        if self.cpu:
            console.print(self.cpu_table())
        for n in self.notes:
            console.print(f"note: {n}")

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


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
