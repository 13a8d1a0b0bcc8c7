"""What the pages show, assembled from the portal's own services (histories, views, passports) — never
through HTTP to this process. Only the operations page asks the other services, over their published
`/v1/ops/*` endpoints."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.history import repository as history_repo
from services.portal.history import service as history_service
from services.portal.ingest.consumer import NAME as INGEST
from services.portal.passports import service as passport_service
from services.portal.ui import repository as repo
from services.portal.vehicles import service as vehicles
from services.portal.views import service as views
from shared.auth import Ministry, Principal
from shared.db import raw_connection
from shared.outbox import applied_positions
from shared.problems import NotFound, Problem, Unprocessable, field_error
from shared.streams import application_lag, stream_report

KST = timezone(timedelta(hours=9), "KST")
BATTERY_ID = re.compile(r"^[A-Z0-9-]{1,24}$")
VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")


# ---- look-up ----


@dataclass(frozen=True)
class Found:
    battery_id: str
    by: str  # "id", "alias", "vin" or "digital_link"


async def resolve(session: AsyncSession, q: str, principal: Principal | None = None) -> Found | None:
    """A battery ID, or any alias the registry holds (GS1 Digital Link, EPC, VIN), or an installed VIN."""
    q = q.strip()
    if not q or len(q) > repo.MAX_PATH:  # no alias is that long: answered without a query
        return None
    conn = await raw_connection(session)
    if BATTERY_ID.match(q.upper()) and await history_repo.get_battery(conn, q.upper()) is not None:
        return Found(q.upper(), "id")
    if VIN.match(q.upper()) and principal is not None:
        # A VIN follows the installation relation now (services/portal/vehicles); who may not read the vehicle
        # is answered "not found", not redirected to a battery (the redirect would name it).
        try:
            await vehicles.vehicle(conn, principal, q.upper(), None)
        except NotFound:
            return None
        vin_battery = await vehicles.battery_for_vin(conn, q.upper())
        if vin_battery is not None:
            return Found(vin_battery, "vin")
    found = await history_repo.resolve_alias(conn, q)
    if found is not None:
        return Found(found, "vin" if VIN.match(q) else "alias")
    if VIN.match(q.upper()):
        found = await history_repo.resolve_alias(conn, q.upper())
        if found is not None:
            return Found(found, "vin")
    return None


async def resolve_digital_link(session: AsyncSession, url: str, path: str) -> str | None:
    """A scanned QR: the exact Digital Link URL first, then the canonical key its path names
    (`01/<GTIN>/21/<serial>`); both exact look-ups on indexed keys."""
    if len(url) > repo.MAX_PATH:
        return None
    found = await history_repo.resolve_alias(await raw_connection(session), url)
    if found is None and path.strip("/"):
        found = await repo.digital_link_by_path(session, path.strip("/"))
    return found


async def vehicle_page(session: AsyncSession, principal: Principal, vin: str, at: date | None) -> dict[str, Any]:
    """A vehicle's batteries (at the end of `at`, KST, or now) and their history (404 for who may not read it)."""
    when = end_of_day_kst(at) if at else None
    return {"vehicle": await vehicles.vehicle(await raw_connection(session), principal, vin, when)}


def looks_like_vin(q: str) -> bool:
    return bool(VIN.match(q.strip().upper()))


# ---- a battery ----


def end_of_day_kst(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), KST)


async def battery_page(session: AsyncSession, principal: Principal, battery_id: str, at: date | None) -> dict[str, Any]:
    """The whole history (403 for a participant that never handled it) and the passport at the viewer's
    access level."""
    when = end_of_day_kst(at) if at else None
    history = await history_service.history(await raw_connection(session), principal, battery_id, alias=None, at=when)
    passport = None
    if history["registry"] is not None:
        passport = await passport_service.passport(session, principal, history["battery_id"])
    return {"history": history, "passport": passport}


async def public_passport(session: AsyncSession, battery_id: str) -> dict[str, Any]:
    """Always the public level, whoever asks: this page is the one a QR code opens."""
    return await passport_service.passport(session, None, battery_id)


# ---- ministry dashboards ----


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    now: bool = False  # a stock at request time: the period does not apply


@dataclass
class Chart:
    title: str  # a message key
    bars: list[tuple[str, float]]
    unit: str = ""
    labelled: bool = True  # bar labels are codes to translate

    @property
    def top(self) -> float:
        return max((v for _, v in self.bars), default=0.0) or 1.0


@dataclass
class Dashboard:
    ministry: Ministry
    period: dict[str, Any]
    figures: list[tuple[str, Any, str]] = field(default_factory=list)  # (message key, value, unit)
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise NotFound(f"This dashboard has no table '{name}'.", code="unknown-table", table=name)


def parse_month(value: str | None, name: str) -> date | None:
    """'2026-03' (what <input type=month> sends) or '2026-03-15'; empty means open-ended."""
    if not value:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}", value):
            return date.fromisoformat(value + "-01")
        return date.fromisoformat(value)
    except ValueError:
        raise Unprocessable(
            f"{name}: '{value}' is not a month (YYYY-MM)",
            errors=[field_error(name, "month", "expected YYYY-MM")],
        ) from None


def make_period(start: str | None, end: str | None, region: str | None) -> views.Period:
    return views.Period(parse_month(start, "from"), parse_month(end, "to"), region or None)


def _sum_by(rows: Sequence[Mapping[str, Any]], key: str, value: str) -> list[tuple[str, float]]:
    out: dict[str, float] = {}
    for r in rows:
        name = str(_plain(r[key]))
        out[name] = out.get(name, 0.0) + float(r[value] or 0)
    return sorted(out.items())


async def dashboard(session: AsyncSession, ministry: Ministry, p: views.Period) -> Dashboard:
    build = _BUILDERS[ministry]
    view = await getattr(views, ministry.value.lower())(session, p)
    d = Dashboard(ministry=ministry, period=view["period"])
    build(d, view)
    return d


def _motie(d: Dashboard, v: dict[str, Any]) -> None:
    reg, out, rec = v["registrations"], v["outcomes"], v["recovered_materials_kg"]
    d.figures = [
        ("fig.registered", reg["batteries"], ""),
        ("fig.packs", reg["packs"], ""),
        ("fig.pack_kwh", reg["pack_kwh"], "kWh"),
        ("fig.repurposed", out["totals"].get("repurposed", 0), ""),
        ("fig.remanufactured", out["totals"].get("remanufactured", 0), ""),
        ("fig.recycled", out["totals"].get("recycled", 0), ""),
    ]
    regs = reg["by_month_manufacturer_chemistry_kind"]
    # Every material a recycler reported (the view answers all of the contract's, most of them often 0).
    reported = [m for m in views.MATERIALS if rec["totals"].get(m)] or list(views.MATERIALS[:4])
    d.charts = [
        Chart("chart.registrations_by_month", _sum_by(regs, "month", "batteries"), labelled=False),
        Chart("chart.outcomes", sorted((k, float(n)) for k, n in out["totals"].items())),
        Chart("chart.recovered", [(m, float(rec["totals"][m])) for m in reported], "kg"),
    ]
    d.tables = [
        Table("registrations", ["month", "manufacturer", "chemistry", "kind", "batteries", "kwh"], regs),
        Table("outcomes_by_month", ["month", "outcome", "batteries"], out["by_month"]),
        Table("outcomes_by_manufacturer", ["manufacturer", "outcome", "batteries"], out["by_manufacturer"]),
        Table("recovered_by_month", ["month", *reported], rec["by_month"]),
        Table(
            "recycled_content",
            [
                "manufacturer",
                "chemistry",
                "batteries",
                "avg_lithium_pct",
                "avg_nickel_pct",
                "avg_cobalt_pct",
                "avg_lead_pct",
            ],
            [
                {
                    **{k: r[k] for k in ("manufacturer", "chemistry", "batteries")},
                    **{f"avg_{m}_pct": pct for m, pct in r["avg_pct"].items()},
                }
                for r in v["recycled_content_declared"]
            ],
        ),
    ]


def _molit(d: Dashboard, v: dict[str, Any]) -> None:
    ins, rem, inc = v["inspections"], v["removals"], v["incidents"]
    d.figures = [
        ("fig.in_service_now", v["in_service_now"]["batteries"], ""),
        ("fig.installations", sum(r["batteries"] for r in v["installations"]), ""),
        ("fig.inspections", ins["inspections"], ""),
        ("fig.avg_soh", ins["avg_soh_pct"] if ins["avg_soh_pct"] is not None else "—", "%"),
        ("fig.removals", rem["batteries"], ""),
        ("fig.incidents", inc["incidents"], ""),
    ]
    d.charts = [
        Chart("chart.in_service_by_region", _sum_by(v["in_service_now"]["by_region"], "region", "batteries")),
        Chart("chart.removals_by_reason", sorted((k, float(n)) for k, n in rem["by_reason"].items())),
        Chart(
            "chart.soh_distribution",
            sorted((k, float(n)) for k, n in ins["soh_distribution"].items()),
            "",
            labelled=False,
        ),
    ]
    d.tables = [
        Table("in_service_now", ["region", "batteries"], v["in_service_now"]["by_region"], now=True),
        Table("installations", ["month", "region", "target", "batteries"], v["installations"]),
        Table("inspections_by_region", ["region", "inspections", "avg_soh_pct"], ins["by_region"]),
        Table(
            "soh_distribution",
            ["bucket", "inspections"],
            [{"bucket": k, "inspections": n} for k, n in sorted(ins["soh_distribution"].items())],
        ),
        Table("removals", ["region", "reason", "batteries"], rem["by_region"]),
        Table("incidents", ["kind", "severity", "incidents"], inc["by_kind_severity"]),
        Table("incidents_by_region", ["region", "incidents"], inc["by_region"]),
        Table("pre_removal_gradings", ["grade", "gradings", "avg_soh_pct"], v["pre_removal_gradings"]["by_grade"]),
    ]


def _mcee(d: Dashboard, v: dict[str, Any]) -> None:
    col, back, recy = v["collected"], v["backlog_now"], v["recycling"]
    d.figures = [
        ("fig.collected", col["batteries"], ""),
        ("fig.removed_not_collected", back["removed_not_collected"], ""),
        ("fig.collected_not_graded", back["collected_not_graded"], ""),
        ("fig.over_30_days", back["removed_over_30_days"] + back["collected_over_30_days"], ""),
        ("fig.recycled", recy["batteries"], ""),
        ("fig.black_mass", recy["black_mass_kg"], "kg"),
    ]
    d.charts = [
        Chart("chart.collected_by_region", _sum_by(col["by_region_centre"], "region", "batteries")),
        Chart("chart.recovery_rate", [(r["material"], float(r["rate_pct"] or 0)) for r in v["recovery"]], "%"),
        Chart("chart.backlog", [(k, float(n)) for k, n in back.items()]),
    ]
    d.tables = [
        Table("collected_by_region_centre", ["region", "centre", "batteries"], col["by_region_centre"]),
        Table("collected_by_month", ["month", "batteries"], col["by_month"]),
        Table(
            "backlog_now", ["measure", "batteries"], [{"measure": k, "batteries": n} for k, n in back.items()], now=True
        ),
        Table("recycling_by_process", ["process", "batteries", "input_mass_kg", "black_mass_kg"], recy["by_process"]),
        Table(
            "recovery",
            [
                "material",
                "recovered_kg",
                "contained_kg",
                "rate_pct",
                "eu_target_2027_pct",
                "eu_target_2031_pct",
                "meets_2027_target",
                "meets_2031_target",
            ],
            v["recovery"],
        ),
        Table(
            "disposals",
            ["method", "batteries"],
            [{"method": k, "batteries": n} for k, n in sorted(v["disposals"]["by_method"].items())],
        ),
        Table(
            "recycling_efficiency",
            [
                "recycler",
                "input_mass_kg",
                "recovered_kg",
                "efficiency_pct",
                "eu_target_2025_pct",
                "eu_target_2030_pct",
                "meets_2025_target",
                "meets_2030_target",
            ],
            [{"recycler": "KR", **v["recycling_efficiency"]}]
            + [{"recycler": r["recycler"], **r["recycling_efficiency"]} for r in v["by_recycler"]],
        ),
    ]


#: KATS's certificate lists: which battery, where it stands, its latest KC 10031 certificate.
CERTIFICATE_COLUMNS = ["battery_id", "state", "certificate_number", "certificate_body", "certificate_valid_until"]


def _kats(d: Dashboard, v: dict[str, Any]) -> None:
    reused, safety = v["reused_now"], v["safety_inspections"]
    results = _sum_by(safety["by_result_body"], "result", "inspections")
    d.figures = [
        ("fig.reused_now", reused["batteries"], ""),
        ("fig.safety_inspections", safety["inspections"], ""),
        ("fig.safety_pass", int(dict(results).get("pass", 0)), ""),
        ("fig.safety_fail", int(dict(results).get("fail", 0)), ""),
        ("fig.incidents_after_reuse", v["incidents_after_reuse"]["incidents"], ""),
    ]
    d.charts = [
        Chart("chart.reused_by_safety", _sum_by(reused["by_status_safety"], "safety", "batteries")),
        Chart("chart.grades", [(g["grade"], float(g["batteries"])) for g in v["grades"]]),
        Chart("chart.safety_results", results),
    ]
    d.tables = [
        Table("reused_now", ["status", "safety", "batteries"], reused["by_status_safety"], now=True),
        Table("safety_inspections", ["result", "body", "standard", "inspections"], safety["by_result_body"]),
        Table("grades", ["grade", "batteries", "avg_soh_pct"], v["grades"]),
        Table(
            "incidents_after_reuse", ["kind", "severity", "incidents"], v["incidents_after_reuse"]["by_kind_severity"]
        ),
        Table("certificates_expiring", CERTIFICATE_COLUMNS, v["certificates_expiring_90_days"], now=True),
        Table(
            "in_service_on_expired_certificate", CERTIFICATE_COLUMNS, v["in_service_on_expired_certificate"], now=True
        ),
    ]


_BUILDERS: dict[Ministry, Callable[[Dashboard, dict[str, Any]], None]] = {
    Ministry.MOTIE: _motie,
    Ministry.MOLIT: _molit,
    Ministry.MCEE: _mcee,
    Ministry.KATS: _kats,
}


def to_csv(table: Table) -> str:
    """UTF-8 with a byte-order mark, so spreadsheet programs read the Korean names right."""
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([neutralise(c) for c in table.columns])
    for row in table.rows:
        w.writerow(["" if row.get(c) is None else neutralise(_plain(row.get(c))) for c in table.columns])
    return buf.getvalue()


#: What a spreadsheet reads as the start of a formula (or, tab and CR, as a cell that hides one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading `'` and is shown as text
    (OWASP's CSV injection advice); numbers stay numbers. Header cells too."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _plain(value: Any) -> Any:
    """Months as YYYY-MM (the views give the first day of the month)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()[:7]
    return value


# ---- operations ----


async def _get(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        r = await http.get(url, timeout=3)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__}


async def operations(state: Any) -> dict[str, Any]:
    """Topics, consumer groups and lag (broker offsets), application lag (event positions), the outbox
    backlogs of the services that publish, dead letters, and this portal's consumer."""
    s = state.settings
    peers = {"registry": s.registry_url, "events": s.events_url}
    async with httpx.AsyncClient() as http:
        broker, own, *answers = await asyncio.gather(
            stream_report(state.kafka, s.kafka_topic_prefix, {}),
            applied_positions(state.engine, state.schema),
            *[_get(http, f"{url}/v1/ops/positions") for url in peers.values()],
            *[_get(http, f"{url}/v1/ops/outbox") for url in peers.values()],
        )
    positions = [a | {"service": name} for name, a in zip(peers, answers[: len(peers)], strict=True)]
    positions.append({"service": "portal", "published": [], "applied": own})
    outboxes = [{"service": name, **a} for name, a in zip(peers, answers[len(peers) :], strict=True)]
    topics = [t for t in broker.get("topics", []) if not t["topic"].endswith(".dlq")]
    dlq = [t for t in broker.get("topics", []) if t["topic"].endswith(".dlq")]
    return {
        "at": datetime.now(KST),
        "broker_error": broker.get("error"),
        "topics": topics,
        "groups": broker.get("groups", []),
        "application": application_lag([p for p in positions if "error" not in p]),
        "unreachable": [{"service": p["service"], "error": p["error"]} for p in positions if "error" in p],
        "outboxes": outboxes,
        "dead_letters": dlq,
        "consumer": state.consumers[INGEST].status(),
    }


def problem_message(exc: Problem) -> tuple[str, dict[str, Any]]:
    """The catalogue key and values for a problem the portal raised."""
    known = {
        "unknown-battery": "error.unknown_battery",
        "unknown-alias": "error.unknown_battery",
        "unknown-vehicle": "error.unknown_vehicle",
        "not-handled": "error.not_handled",
        "wrong-ministry": "error.wrong_ministry",
        "unknown-table": "error.unknown_table",
        "unknown-ministry": "error.unknown_ministry",
        "operators-only": "error.operators_only",
    }
    if exc.code in known:
        return known[exc.code], dict(exc.extra)
    if exc.status == 401:
        return "error.session", {}
    if exc.status == 422:
        return "error.invalid_input", {"detail": exc.detail}
    if exc.status == 404:
        return "error.not_found", {}
    return "", {}
