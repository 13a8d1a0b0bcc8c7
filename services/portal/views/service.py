"""Each ministry's figures, summed from the pre-aggregated flows (by month) and stocks (now)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.views import repository as repo
from services.portal.views import targets
from shared.contract.lifecycle import MATERIALS as MATERIALS
from shared.problems import Unprocessable, field_error

BACKLOG_AGE = timedelta(days=30)
#: KATS: certificates expiring within this many days are listed.
EXPIRY_HORIZON = timedelta(days=90)
#: The most batteries a KATS list answers (the soonest first).
CERTIFICATE_LIST_MAX = 500


class Period:
    """A month-granular period: figures are kept per Korean calendar month."""

    def __init__(self, start: date | None, end: date | None, region: str | None) -> None:
        if start and end and start > end:
            raise Unprocessable(
                "from: must not be after to", errors=[field_error("from", "before-to", "must not be after 'to'")]
            )
        self.start = start.replace(day=1) if start else None
        self.end = end.replace(day=1) if end else None
        self.region = region

    def describe(self) -> dict[str, Any]:
        return {"from_month": self.start, "to_month": self.end, "region": self.region}


def _group(
    rows: Iterable[dict[str, Any]], by: Sequence[str], names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Sum n and every amount over rows grouped by `by` (renamed to `names`)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = tuple(r[k] for k in by)
        acc = out.setdefault(key, {"n": 0, "amounts": {}})
        acc["n"] += r["n"]
        for name, value in r.get("amounts", {}).items():
            acc["amounts"][name] = acc["amounts"].get(name, 0.0) + value
    result = []
    for key in sorted(out, key=lambda k: tuple(str(x) for x in k)):
        result.append({**dict(zip(names or by, key, strict=True)), **out[key]})
    return result


def _total(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    grouped = _group(rows, ())
    return grouped[0] if grouped else {"n": 0, "amounts": {}}


def _of(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["metric"] == metric]


def _avg(total: float, n: int) -> float | None:
    return round(total / n, 2) if n else None


def _n(rows: Iterable[dict[str, Any]]) -> int:
    return sum(r["n"] for r in rows)


def _counts(
    rows: Iterable[dict[str, Any]],
    count: str,
    by: Sequence[str],
    names: Sequence[str] | None = None,
    *,
    soh: bool = False,
) -> list[dict[str, Any]]:
    """How many (as `count`) in each group of `by`, the group named by `names`; with `soh`, its average SoH."""
    out = []
    for g in _group(rows, by, names):
        item = {name: g[name] for name in names or by}
        item[count] = g["n"]
        if soh:
            item["avg_soh_pct"] = _avg(g["amounts"].get("soh_pct", 0.0), g["n"])
        out.append(item)
    return out


def _incidents(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"incidents": _n(rows), "by_kind_severity": _counts(rows, "incidents", ("k1", "k2"), ("kind", "severity"))}


async def motie(session: AsyncSession, p: Period) -> dict[str, Any]:
    # Registrations have no region (a battery is registered, not located): the region filter does not apply.
    reg = await repo.flows(session, ["registered"], start=p.start, end=p.end, region=None)
    rows = await repo.flows(session, ["outcome", "recycled"], start=p.start, end=p.end, region=p.region)
    outcomes, recycled = _of(rows, "outcome"), _of(rows, "recycled")
    registrations = [
        {
            "month": g["month"],
            "manufacturer": g["k1"],
            "chemistry": g["k2"],
            "kind": g["k3"],
            "batteries": g["n"],
            "kwh": round(g["amounts"].get("kwh", 0.0), 3),
        }
        for g in _group(reg, ("month", "k1", "k2", "k3"))
    ]
    packs = [r for r in reg if r["k3"] == "pack"]
    return {
        "period": p.describe(),
        "registrations": {
            "batteries": _n(reg),
            "packs": _n(packs),
            "pack_kwh": round(_total(packs)["amounts"].get("kwh", 0.0), 3),
            "by_month_manufacturer_chemistry_kind": registrations,
        },
        "outcomes": {
            "totals": {g["outcome"]: g["n"] for g in _group(outcomes, ("k1",), ("outcome",))},
            "by_month": _counts(outcomes, "batteries", ("month", "k1"), ("month", "outcome")),
            "by_manufacturer": _counts(outcomes, "batteries", ("k2", "k1"), ("manufacturer", "outcome")),
        },
        "recovered_materials_kg": {
            "totals": {m: round(_total(recycled)["amounts"].get(m, 0.0), 3) for m in MATERIALS},
            "by_month": [
                {"month": g["month"], **{m: round(g["amounts"].get(m, 0.0), 3) for m in MATERIALS}}
                for g in _group(recycled, ("month",))
            ],
        },
        "recycled_content_declared": [
            {
                "manufacturer": g["manufacturer"],
                "chemistry": g["chemistry"],
                "batteries": g["n"],
                "avg_pct": {
                    m: _avg(g["amounts"].get(f"rc_{m}", 0.0), g["n"]) for m in ("lithium", "nickel", "cobalt", "lead")
                },
            }
            for g in _group(reg, ("k1", "k2"), ("manufacturer", "chemistry"))
        ],
    }


async def molit(session: AsyncSession, p: Period) -> dict[str, Any]:
    rows = await repo.flows(
        session, ["installed", "inspected", "removed", "incident", "graded"], start=p.start, end=p.end, region=p.region
    )
    in_service = await repo.counts(session, region=p.region, states=["in_service"])
    inspected, removed, incidents = _of(rows, "inspected"), _of(rows, "removed"), _of(rows, "incident")
    insp_total = _total(inspected)
    pre_removal = [r for r in _of(rows, "graded") if r["k2"] == "pre_removal"]
    return {
        "period": p.describe(),
        "pre_removal_gradings": {
            "gradings": _n(pre_removal),
            "by_grade": _counts(pre_removal, "gradings", ("k1",), ("grade",), soh=True),
        },
        "in_service_now": {"batteries": _n(in_service), "by_region": _counts(in_service, "batteries", ("region",))},
        "installations": _counts(
            _of(rows, "installed"), "batteries", ("month", "region", "k1"), ("month", "region", "target")
        ),
        "inspections": {
            "inspections": insp_total["n"],
            "avg_soh_pct": _avg(insp_total["amounts"].get("soh_pct", 0.0), insp_total["n"]),
            "soh_distribution": {g["bucket"]: g["n"] for g in _group(inspected, ("k1",), ("bucket",))},
            "by_region": _counts(inspected, "inspections", ("region",), soh=True),
        },
        "removals": {
            "batteries": _n(removed),
            "by_reason": {g["reason"]: g["n"] for g in _group(removed, ("k1",), ("reason",))},
            "by_region": _counts(removed, "batteries", ("region", "k1"), ("region", "reason")),
        },
        "incidents": {**_incidents(incidents), "by_region": _counts(incidents, "incidents", ("region",))},
    }


async def mcee(session: AsyncSession, p: Period) -> dict[str, Any]:
    rows = await repo.flows(
        session, ["collected", "recycled", "recycled_contained", "disposed"], start=p.start, end=p.end, region=p.region
    )
    stocks = await repo.counts(session, region=p.region, states=["removed", "collected"])
    old = await repo.waiting_since_before(session, datetime.now(UTC) - BACKLOG_AGE, region=p.region)
    collected, recycled = _of(rows, "collected"), _of(rows, "recycled")
    contained_rows = _of(rows, "recycled_contained")
    recovered, contained = _total(recycled)["amounts"], _total(contained_rows)["amounts"]
    rec_total = _total(recycled)
    lithium = [r for r in recycled if r["k3"] == "lithium"]
    by_recycler = {g["recycler"]: g for g in _group(recycled, ("k2",), ("recycler",))}
    held = {g["recycler"]: g["amounts"] for g in _group(contained_rows, ("k1",), ("recycler",))}
    lithium_by = {g["recycler"]: g["amounts"] for g in _group(lithium, ("k2",), ("recycler",))}
    coll_total = _total(collected)
    return {
        "period": p.describe(),
        "collected": {
            "batteries": _n(collected),
            "kg": round(coll_total["amounts"].get("kg", 0.0), 3),
            "kwh": round(coll_total["amounts"].get("kwh", 0.0), 3),
            "by_region_centre": [
                {
                    "region": g["region"],
                    "centre": g["centre"],
                    "batteries": g["n"],
                    "kg": round(g["amounts"].get("kg", 0.0), 3),
                    "kwh": round(g["amounts"].get("kwh", 0.0), 3),
                }
                for g in _group(collected, ("region", "k1"), ("region", "centre"))
            ],
            "by_month": [
                {
                    "month": g["month"],
                    "batteries": g["n"],
                    "kg": round(g["amounts"].get("kg", 0.0), 3),
                    "kwh": round(g["amounts"].get("kwh", 0.0), 3),
                }
                for g in _group(collected, ("month",))
            ],
        },
        "backlog_now": {
            "removed_not_collected": sum(r["n"] for r in stocks if r["state"] == "removed"),
            "removed_over_30_days": old.get("removed", 0),
            "collected_not_graded": sum(r["n"] for r in stocks if r["state"] == "collected"),
            "collected_over_30_days": old.get("collected", 0),
        },
        "recycling": {
            "batteries": rec_total["n"],
            "input_mass_kg": round(rec_total["amounts"].get("input_mass_kg", 0.0), 3),
            "black_mass_kg": round(rec_total["amounts"].get("black_mass_kg", 0.0), 3),
            "by_process": [
                {
                    "process": g["process"],
                    "batteries": g["n"],
                    "input_mass_kg": round(g["amounts"].get("input_mass_kg", 0.0), 3),
                    "black_mass_kg": round(g["amounts"].get("black_mass_kg", 0.0), 3),
                }
                for g in _group(recycled, ("k1",), ("process",))
            ],
        },
        "recovery": targets.recoveries(MATERIALS, recovered, contained),
        "recycling_efficiency": _efficiency(lithium),
        "by_recycler": [
            {
                "recycler": name,
                "batteries": g["n"],
                "recovery": targets.recoveries(MATERIALS, g["amounts"], held.get(name, {})),
                "recycling_efficiency": _efficiency_of(lithium_by.get(name, {})),
            }
            for name, g in by_recycler.items()
        ],
        "disposals": {
            "batteries": _n(_of(rows, "disposed")),
            "by_method": {
                g["method"] or "unspecified": g["n"] for g in _group(_of(rows, "disposed"), ("k1",), ("method",))
            },
        },
    }


def _efficiency_of(amounts: dict[str, float]) -> dict[str, Any]:
    return targets.efficiency({m: amounts.get(m, 0.0) for m in MATERIALS}, amounts.get("input_mass_kg", 0.0))


def _efficiency(lithium_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Recycling efficiency of the lithium-based batteries recycled (Annex XII part B)."""
    return {"batteries": _n(lithium_rows), **_efficiency_of(_total(lithium_rows)["amounts"])}


async def kats(session: AsyncSession, p: Period) -> dict[str, Any]:
    rows = await repo.flows(
        session, ["safety_inspected", "graded", "incident"], start=p.start, end=p.end, region=p.region
    )
    reused = [r for r in await repo.counts(session, region=p.region) if r["status"] in ("repurposed", "remanufactured")]
    today = datetime.now(UTC).date()
    expiring = await repo.certificates(
        session, after=today, until=today + EXPIRY_HORIZON, region=p.region, limit=CERTIFICATE_LIST_MAX
    )
    expired = await repo.certificates(
        session, until=today - timedelta(days=1), region=p.region, states=["in_service"], limit=CERTIFICATE_LIST_MAX
    )
    inspections = _of(rows, "safety_inspected")
    # Gradings after removal: a pre-removal grading (MOLIT's) decides no reuse until the battery is out.
    graded = [r for r in _of(rows, "graded") if r["k2"] != "pre_removal"]
    after_reuse = [r for r in _of(rows, "incident") if r["k3"] == "after_reuse"]
    return {
        "period": p.describe(),
        "reused_now": {"batteries": _n(reused), "by_status_safety": _counts(reused, "batteries", ("status", "safety"))},
        "safety_inspections": {
            "inspections": _n(inspections),
            "by_result_body": _counts(inspections, "inspections", ("k1", "k2", "k3"), ("result", "body", "standard")),
        },
        "grades": _counts(graded, "batteries", ("k1",), ("grade",), soh=True),
        "certificates_expiring_90_days": expiring,
        "in_service_on_expired_certificate": expired,
        "incidents_after_reuse": _incidents(after_reuse),
    }
