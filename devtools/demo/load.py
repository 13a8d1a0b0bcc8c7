"""Loading the demo: posting the catalogue and the plan to the services over HTTP (participants, models,
batteries, lifecycle events in waves), with progress, then waiting for the portal to catch up and
printing headline figures from the ministry views."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devtools.demo.catalogue import ADMIN, BY_ID, ORGS, model_bodies
from devtools.demo.corrections import load_corrections
from devtools.demo.plan import SPAN_DAYS, Ev, PackPlan, build_plans
from devtools.demo.regime import implausible_report_refused
from devtools.demo.vehicles import pack_replacement_under_recall
from shared.auth import mint_token
from shared.contract.streams import TOPIC_LIFECYCLE, TOPIC_REGISTRY

console = Console(stderr=True)

EVENT_BATCH = 2500
REGISTER_BATCH = 2500


class DemoError(RuntimeError):
    pass


class Api:
    def __init__(self, clients: dict[str, httpx.AsyncClient], private_key: bytes) -> None:
        self.clients = clients
        self.private_key = private_key
        self._tokens: dict[str, dict[str, str]] = {}

    def auth(self, org: str) -> dict[str, str]:
        if org not in self._tokens:
            if org == ADMIN[0]:
                role, ministry = ADMIN[1], None
            else:
                role, ministry = BY_ID[org].role, BY_ID[org].ministry
            tok = mint_token(self.private_key, org=org, role=role, ministry=ministry, ttl_s=6 * 3600)
            self._tokens[org] = {"Authorization": f"Bearer {tok}"}
        return self._tokens[org]

    async def post(self, service: str, path: str, body: Any, org: str) -> httpx.Response:
        """POST, retrying a dropped connection and a 503 as its Retry-After says (a registration still on its way
        to the events service; a restarting service): every demo request is safe to repeat."""
        for attempt in range(60):
            try:
                r = await self.clients[service].post(path, json=body, headers=self.auth(org))
            except httpx.TransportError:
                if attempt >= 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if r.status_code != 503 or attempt == 59:
                return r
            await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
        raise AssertionError("unreachable")

    async def get(self, service: str, path: str, org: str | None = None, **params: Any) -> httpx.Response:
        headers = self.auth(org) if org else {}
        return await self.clients[service].get(path, headers=headers, params=params or None)


def _fail(what: str, r: httpx.Response) -> DemoError:
    return DemoError(f"{what}: HTTP {r.status_code}: {r.text[:2000]}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


async def _participants(api: Api, progress: Progress) -> int:
    task = progress.add_task("participants", total=len(ORGS))
    created = 0
    for o in ORGS:
        body = {"id": o.id, "name": o.name, "role": o.role}
        if o.ministry:
            body["ministry"] = o.ministry
        if o.region:
            body["region"] = o.region
        r = await api.post("registry", "/v1/participants", body, ADMIN[0])
        if r.status_code not in (201, 409):
            raise _fail(f"participant {o.id}", r)
        created += r.status_code == 201
        progress.advance(task)
    return created


async def _models(api: Api, progress: Progress) -> int:
    bodies = model_bodies()
    task = progress.add_task("models", total=len(bodies))
    created = 0
    for mfr, body in bodies:
        r = await api.post("registry", "/v1/models", body, mfr)
        if r.status_code not in (201, 409):
            raise _fail(f"model {body['id']}", r)
        created += r.status_code == 201
        progress.advance(task)
    return created


async def _register(api: Api, progress: Progress, plans: list[PackPlan], start: datetime) -> int:
    by_mfr: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in plans:
        for b in p.batteries:
            body = {k: v for k, v in b.items() if k != "_at"}
            body["manufactured_at"] = (start + timedelta(minutes=b["_at"])).isoformat()
            by_mfr[p.family.manufacturer].append(body)
    total = sum(len(v) for v in by_mfr.values())
    task = progress.add_task("batteries (cells, modules, packs)", total=total)
    created = 0
    for mfr, bodies in by_mfr.items():
        for i in range(0, len(bodies), REGISTER_BATCH):
            chunk = bodies[i : i + REGISTER_BATCH]
            while chunk:
                r = await api.post("registry", "/v1/batteries/bulk", {"batteries": chunk}, mfr)
                if r.status_code == 201:
                    created += len(chunk)
                    break
                problem = r.json() if r.headers.get("content-type", "").endswith("json") else {}
                if r.status_code == 409 and problem.get("code") == "duplicate-battery":
                    taken = {e["index"] for e in problem.get("errors", []) if "index" in e}
                    if not taken:
                        continue  # registered concurrently: retry
                    chunk = [b for j, b in enumerate(chunk) if j not in taken]
                    continue
                raise _fail(f"registering {mfr} batteries", r)
            progress.advance(task, min(REGISTER_BATCH, len(bodies) - i))
    return created


def _segments(events: list[Ev]) -> list[list[Ev]]:
    """A pack family's events split into runs of consecutive events by the same actor."""
    out: list[list[Ev]] = []
    for ev in events:
        if out and out[-1][0].actor == ev.actor:
            out[-1].append(ev)
        else:
            out.append([ev])
    return out


def _wire(ev: Ev, start: datetime) -> dict[str, Any]:
    location = {k: v for k, v in (("site", ev.site), ("region", ev.region)) if v}
    occurred = start + timedelta(minutes=ev.at)
    data = dict(ev.data)
    valid_days = data.pop("_valid_days", None)  # a certificate's validity, relative to the demo's clock
    if valid_days is not None:
        data["valid_until"] = (occurred + timedelta(days=valid_days)).date().isoformat()
    return {
        "event_id": ev.event_id,
        "battery_id": ev.battery_id,
        "type": ev.type,
        "occurred_at": occurred.isoformat(),
        "location": location,
        "data": data,
    }


async def _events(api: Api, progress: Progress, plans: list[PackPlan], start: datetime) -> int:
    """Waves: wave k posts every family's k-th run, one batch per actor (a run never splits across
    batches, and the runs of one wave touch disjoint families, so batches may go in parallel)."""
    families = [_segments(p.events) for p in plans]
    total = sum(len(p.events) for p in plans)
    task = progress.add_task("lifecycle events", total=total)
    sem = asyncio.Semaphore(3)

    async def send(actor: str, events: list[dict[str, Any]]) -> None:
        async with sem:
            r = await api.post("events", "/v1/events/batch", {"events": events}, actor)
            if r.status_code != 201:
                raise _fail(f"{len(events)} events by {actor}", r)
            progress.advance(task, len(events))

    wave = 0
    while True:
        runs: dict[str, list[list[Ev]]] = defaultdict(list)
        for segs in families:
            if wave < len(segs):
                runs[segs[wave][0].actor].append(segs[wave])
        if not runs:
            break
        jobs = []
        for actor, actor_runs in runs.items():
            batch: list[dict[str, Any]] = []
            for run in actor_runs:
                if batch and len(batch) + len(run) > EVENT_BATCH:
                    jobs.append(send(actor, batch))
                    batch = []
                batch.extend(_wire(ev, start) for ev in run)
            if batch:
                jobs.append(send(actor, batch))
        await asyncio.gather(*jobs)
        wave += 1
    return total


def _position(rows: list[dict[str, Any]], topic: str, key: str) -> int:
    return max((int(r[key]) for r in rows if str(r["topic"]).endswith(topic)), default=0)


async def _wait_applied(
    api: Api, consumer: str, topics: dict[str, str], progress: Progress, label: str, timeout_s: float
) -> bool:
    """Wait until `consumer` has applied, per topic, the newest position its producer wrote."""
    task = progress.add_task(label, total=None)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            done = True
            applied = (await api.get(consumer, "/v1/ops/positions")).json().get("applied", [])
            for topic, producer in topics.items():
                written = _position((await api.get(producer, "/v1/ops/positions")).json()["published"], topic,
                                    "written_position")  # fmt: skip
                if written and _position(applied, topic, "applied_position") < written:
                    done = False
            if done:
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        progress.update(task, total=1, completed=1)


async def _wait_portal(api: Api, progress: Progress, timeout_s: float) -> bool:
    topics = {TOPIC_REGISTRY: "registry", TOPIC_LIFECYCLE: "events"}
    deadline = time.monotonic() + timeout_s
    if not await _wait_applied(api, "portal", topics, progress, "portal catching up", timeout_s):
        return False
    # Positions are the newest applied per topic (any partition): also wait for the consumer to go idle.
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        status = (await api.get("portal", "/v1/ops/consumer")).json()
        now = (status.get("applied"), status.get("last_batch_at"))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 1.5:
            return True
        await asyncio.sleep(0.25)
    return False


async def _anchor(api: Api, plans: list[PackPlan]) -> datetime:
    """The demo's start: from the first pack if a previous run registered it, else from the clock."""
    first = plans[0].batteries[0]
    r = await api.get("registry", f"/v1/batteries/{first['id']}")
    if r.status_code == 200:
        made = datetime.fromisoformat(r.json()["manufactured_at"])
        return made - timedelta(minutes=first["_at"])
    now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    return now - timedelta(days=SPAN_DAYS)


async def _views(api: Api) -> dict[str, dict[str, Any]]:
    out = {}
    for code in ("MOTIE", "MOLIT", "MCEE", "KATS"):
        r = await api.get("portal", f"/v1/views/{code.lower()}", code)
        if r.status_code != 200:
            raise _fail(f"{code} view", r)
        out[code] = r.json()
    return out


SYMBOL = {
    "lithium": "Li",
    "nickel": "Ni",
    "cobalt": "Co",
    "manganese": "Mn",
    "copper": "Cu",
    "aluminium": "Al",
    "graphite": "C",
    "lead": "Pb",
}


def _summary(counts: dict[str, int], views: dict[str, dict[str, Any]], seconds: float) -> Table:
    m, lt, c, k = views["MOTIE"], views["MOLIT"], views["MCEE"], views["KATS"]
    rec = {r["material"]: r for r in c["recovery"]}

    def rate(mat: str) -> str:
        v = rec.get(mat, {}).get("rate_pct")
        return "—" if v is None else f"{v:.1f} %"

    table = Table(title=f"batterytrace demo loaded in {seconds:.0f} s", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("loaded", f"{counts['packs']:,} packs · {counts['batteries']:,} batteries · "
                            f"{counts['events']:,} lifecycle events · {counts['participants_total']} participants")  # fmt: skip
    reg = m["registrations"]
    table.add_row("MOTIE", f"{reg['batteries']:,} batteries registered, {reg['packs']:,} packs = "
                           f"{reg['pack_kwh']:,.0f} kWh; outcomes {m['outcomes']['totals']}; recovered kg "
                           + ", ".join(f"{SYMBOL[k]} {v:,.0f}" for k, v in m["recovered_materials_kg"]["totals"].items()))  # fmt: skip
    ins = lt["inspections"]
    table.add_row("MOLIT", f"{lt['in_service_now']['batteries']:,} in service; {ins['inspections']:,} inspections "
                           f"(avg SoH {ins['avg_soh_pct']} %); removals {lt['removals']['by_reason']}; "
                           f"{lt['incidents']['incidents']} incidents")  # fmt: skip
    bl = c["backlog_now"]
    table.add_row("MCEE", f"{c['collected']['batteries']:,} collected at {len(c['collected']['by_region_centre'])} "
                          f"centres; backlog {bl['removed_not_collected']} removed / {bl['collected_not_graded']} "
                          f"collected ({bl['removed_over_30_days']} + {bl['collected_over_30_days']} over 30 days); "
                          f"{c['recycling']['batteries']} recycled; recovery Li {rate('lithium')}, Ni {rate('nickel')}, "
                          f"Co {rate('cobalt')}; {c['disposals']['batteries']} disposed")  # fmt: skip
    table.add_row("KATS", f"{k['reused_now']['batteries']} reused now "
                          + str({f"{r['status']}/{r['safety']}": r["batteries"] for r in k["reused_now"]["by_status_safety"]})
                          + f"; {k['safety_inspections']['inspections']} safety inspections; grades "
                          + str({g["grade"]: g["batteries"] for g in k["grades"]})
                          + f"; {k['incidents_after_reuse']['incidents']} incidents after reuse")  # fmt: skip
    return table


async def load_demo_async(
    urls: dict[str, str],
    private_key_path: Path,
    *,
    packs: int = 2000,
    seed: int = 7,
    clients: dict[str, httpx.AsyncClient] | None = None,
    portal_timeout_s: float = 300.0,
    quiet: bool = False,
) -> dict[str, int]:
    """Load the demo through the services' HTTP APIs. `clients` (tests) replace connections to `urls`."""
    started = time.monotonic()
    own: list[httpx.AsyncClient] = []
    if clients is None:
        clients = {}
        for name in ("registry", "events", "portal"):
            client = httpx.AsyncClient(base_url=urls[name], timeout=httpx.Timeout(600, connect=10))
            clients[name] = client
            own.append(client)
    api = Api(clients, await asyncio.to_thread(private_key_path.read_bytes))
    plans = build_plans(seed, packs)
    try:
        with _progress() as progress:
            if quiet:
                progress.stop()
            participants = await _participants(api, progress)
            models = await _models(api, progress)
            start = await _anchor(api, plans)
            created = await _register(api, progress, plans, start)

            async def lifecycle() -> int:
                # Let the events service learn the new batteries from the registry stream (read-through
                # on a miss would also work, one battery at a time).
                await _wait_applied(
                    api, "events", {TOPIC_REGISTRY: "registry"}, progress, "events service catching up", 120
                )
                return await _events(api, progress, plans, start)

            # VINs are attached by the INSTALLED events (the registry refuses VIN aliases).
            events, aliases = await lifecycle(), 0
            refused = await implausible_report_refused(api, plans, start)
            stories = await load_corrections(api, plans, start)  # a mistaken RECYCLED corrected, an amendment
            story = await pack_replacement_under_recall(api, plans, start)  # devtools/demo/vehicles.py
            caught_up = await _wait_portal(api, progress, portal_timeout_s)
        views = await _views(api)
        seconds = time.monotonic() - started
        counts = {
            "participants": participants,
            "participants_total": len(ORGS),
            "models": models,
            "packs": packs,
            "batteries": sum(len(p.batteries) for p in plans),
            "batteries_created": created,
            "events": events,
            "aliases": aliases,
            **story,
            "portal_caught_up": int(caught_up),
            "implausible_refused": refused,
            "corrected_packs": int(stories["corrected_pack"] is not None),
            "amended_packs": int(stories["amended_pack"] is not None),
            "seconds": round(seconds),
        }
        if not quiet:
            if not caught_up:
                console.print(f"[yellow]the portal had not caught up after {portal_timeout_s:.0f} s[/]")
            console.print(_summary(counts, views, seconds))
        return counts
    finally:
        for client in own:
            await client.aclose()


def load_demo(urls: dict[str, str], private_key_path: Path, *, packs: int = 2000, seed: int = 7) -> dict[str, int]:
    """Load the demo into running services at `urls` (registry, events, portal); returns counts."""
    return asyncio.run(load_demo_async(urls, private_key_path, packs=packs, seed=seed))
