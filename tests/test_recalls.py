"""Recalls (issue 13 item 8): MOLIT (or an admin) registers a campaign in the registry; it is published on
`battery.registry.v1`; a REMOVED with reason `recall` names a known campaign covering the battery; affected
batteries show it in their history and authority passport; MOLIT's view counts affected, removed, remaining."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from shared.contract.recalls import Campaign, Range, covers
from tests.conftest import eventually
from tests.events_helpers import BOOTSTRAP_ADMIN, stack
from tests.portal_helpers import portal_app, portal_settings

CAMPAIGN = {
    "id": "MOLIT-2026-017",
    "title": "Cell swelling risk",
    "maker": "LGES",
    "models": ["NCM-PACK-77"],
    "serial_ranges": [],
    "vin_ranges": [],
    "opened_on": "2026-11-20",
}


# ---- the covering rule, pure ----
def c(**over: Any) -> Campaign:
    return Campaign.model_validate(CAMPAIGN | over)


@pytest.mark.parametrize(
    ("campaign", "facts", "covered"),
    [
        (c(), {"manufacturer": "LGES", "model_id": "NCM-PACK-77"}, True),
        (c(), {"manufacturer": "SDI", "model_id": "NCM-PACK-77"}, False),
        (c(), {"manufacturer": "LGES", "model_id": "LFP-PACK-60"}, False),
        (c(models=[]), {"manufacturer": "LGES", "model_id": "LFP-PACK-60"}, True),
        (c(serial_ranges=[{"first": "SN00000010", "last": "SN00000019"}]), {"serial": "SN00000015"}, True),
        (c(serial_ranges=[{"first": "SN00000010", "last": "SN00000019"}]), {"serial": "SN00000020"}, False),
        (c(serial_ranges=[{"first": "SN00000010", "last": "SN00000019"}]), {"serial": "SN0000001"}, False),
        (
            c(vin_ranges=[{"first": "KMHEM41AP6A100000", "last": "KMHEM41AP6A199999"}]),
            {"vins": ["KMHEM41AP6A150000"]},
            True,
        ),
        (c(vin_ranges=[{"first": "KMHEM41AP6A100000", "last": "KMHEM41AP6A199999"}]), {"vins": []}, False),
    ],
)
def test_a_campaign_covers_its_makers_models_in_its_ranges(
    campaign: Campaign, facts: dict[str, Any], covered: bool
) -> None:
    base: dict[str, Any] = {"manufacturer": "LGES", "model_id": "NCM-PACK-77", "serial": None, "vins": []}
    assert covers(campaign, **(base | facts)) is covered


def test_a_range_is_ordered_and_of_one_length() -> None:
    with pytest.raises(ValueError):
        Range(first="B", last="A")
    with pytest.raises(ValueError):
        Range(first="A1", last="A")
    assert c().opened_on == date(2026, 11, 20)


# ---- end to end ----
async def test_molit_registers_a_campaign_and_a_recall_removal_names_it(make_settings, token) -> None:
    async with stack(make_settings, token, streams=True) as s, portal_app(portal_settings(make_settings)) as portal:
        molit = s.as_role("ministry")
        covered = [await s.battery(), await s.battery()]

        # only MOLIT or an admin registers; the same campaign again is a retry, other facts under its ID a 409
        r = await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=s.as_role("ministry", "MOTIE"))
        assert r.status_code == 403
        r = await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=s.as_role("oem"))
        assert r.status_code == 403
        r = await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=molit)
        assert r.status_code == 201, r.text
        assert (await s.registry.post("/v1/recalls", json=CAMPAIGN, headers=molit)).status_code == 200
        r = await s.registry.post(
            "/v1/recalls", json=CAMPAIGN | {"title": "else"}, headers=token(BOOTSTRAP_ADMIN, "admin")
        )
        assert r.status_code == 409 and r.json()["code"] == "duplicate-campaign"

        for b in covered:
            await s.transfer_to(b, "oem")
            await s.ok(
                b, "INSTALLED", "oem", data={"vin": "KMHEM41AP6A100001" if b == covered[0] else "KMHEM41AP6A100002"}
            )

        # the events service learns the campaign from the stream; until then (and for an unknown one) 422
        r = await s.post(covered[0], "REMOVED", "dismantler", data={"reason": "recall", "recall_campaign": "NOPE-1"})
        assert r.status_code == 422 and r.json()["code"] == "unknown-recall-campaign"

        async def removed() -> Any:
            r = await s.post(
                covered[0], "REMOVED", "dismantler", data={"reason": "recall", "recall_campaign": CAMPAIGN["id"]}
            )
            return r if r.status_code == 201 else None

        await eventually(removed, timeout_s=30)
        # a recall removal of a battery a known campaign covers must name it
        r = await s.post(covered[1], "REMOVED", "dismantler", data={"reason": "recall"})
        assert r.status_code == 422 and r.json()["code"] == "recall-campaign-required"
        assert CAMPAIGN["id"] in r.json()["detail"]
        # a campaign named with another reason is refused
        r = await s.post(
            covered[1], "REMOVED", "dismantler", data={"reason": "accident", "recall_campaign": CAMPAIGN["id"]}
        )
        assert r.status_code == 422 and any(e["field"].startswith("data") for e in r.json()["errors"])

        async def counted() -> Any:
            r = await portal.get("/v1/views/molit/recalls", headers=molit)
            if r.status_code != 200 or not r.json()["campaigns"]:
                return None
            v = r.json()["campaigns"][0]
            return v if v["removed"] == 1 else None

        v = await eventually(counted, timeout_s=30)
        assert (v["id"], v["affected"], v["removed"], v["remaining"]) == (CAMPAIGN["id"], 2, 1, 1)
        assert (await portal.get("/v1/views/molit/recalls", headers=s.as_role("ministry", "MOTIE"))).status_code == 403

        h = (await portal.get(f"/v1/batteries/{covered[0]}/history", headers=molit)).json()
        assert [(x["id"], x["removed"]) for x in h["recalls"]] == [(CAMPAIGN["id"], True)]
        h = (await portal.get(f"/v1/batteries/{covered[1]}/history", headers=s.as_role("oem"))).json()
        assert h["recalls"] is None  # authority level only
        p = (await portal.get(f"/v1/passports/{covered[1]}", headers=molit)).json()
        assert [x["id"] for x in p["extensions"]["kr.batterytrace.lifecycle"]["recalls"]] == [CAMPAIGN["id"]]


async def test_a_recall_removal_of_a_battery_the_campaign_does_not_cover_is_refused(make_settings, token) -> None:
    async with stack(make_settings, token, streams=True) as s:
        molit = s.as_role("ministry")
        campaign = CAMPAIGN | {"id": "MOLIT-2026-018", "serial_ranges": [{"first": "ZZ00000000", "last": "ZZ99999999"}]}
        assert (await s.registry.post("/v1/recalls", json=campaign, headers=molit)).status_code == 201
        b = await s.battery()
        await s.transfer_to(b, "oem")
        await s.ok(b, "INSTALLED", "oem", data={"vin": "KMHEM41AP6A100003"})
        before = await s.state(b)

        async def refused() -> Any:
            r = await s.post(b, "REMOVED", "dismantler", data={"reason": "recall", "recall_campaign": campaign["id"]})
            return r.json() if r.json().get("code") == "recall-not-covering" else None

        problem = await eventually(refused, timeout_s=30)
        assert problem["status"] == 422 and problem["errors"][0]["field"] == "data.recall_campaign"
        assert await s.state(b) == before


# ---- MOLIT's counts: the covering rule, counted in the database ----
async def test_molit_counts_are_the_covering_rule_over_every_battery(db_url) -> None:
    """Batteries of two makers and models, with and without serials in range and with VINs in and out of range
    (one erased), some removed under a campaign: each campaign's counts are what `covers` says battery by battery."""
    import uuid

    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from services.portal.ingest.projection import Message
    from services.portal.ingest.schemas import BatteryRegisteredIn, VinIn
    from services.portal.ingest.service import apply
    from services.portal.recalls.service import molit_view
    from shared.contract.lifecycle import LedgerRecord
    from shared.db import raw_connection
    from tests.portal_helpers import Lifecycle, at

    campaigns = [
        c(),
        c(id="MOLIT-2026-020", models=[], opened_on="2026-11-21"),
        c(id="MOLIT-2026-021", serial_ranges=[{"first": "SN00000010", "last": "SN00000019"}], opened_on="2026-11-22"),
        c(
            id="MOLIT-2026-022",
            models=[],
            serial_ranges=[{"first": "SN00000000", "last": "SN00000003"}],
            vin_ranges=[{"first": "KMHEM41AP6A100000", "last": "KMHEM41AP6A199999"}],
            opened_on="2026-11-22",
        ),
        c(id="MOLIT-2026-023", maker="SDI", opened_on="2026-11-19"),
    ]
    life = Lifecycle("unused", "unused")
    messages: list[Message] = [Message("registry", f"c-{x.id}", "recall", x) for x in campaigns]
    vins: list[Message] = []
    facts: dict[str, dict[str, Any]] = {}
    for i in range(24):
        bid, maker = f"RC{i:02d}", ("LGES", "LGES", "SDI")[i % 3]
        model = ("NCM-PACK-77", "LFP-PACK-60")[i % 2]
        serial = f"SN{(i * 7) % 23:08d}" if i % 5 else f"SN{i:07d}"  # some of another length
        reg = {"id": bid, "model_id": model, "kind": "pack", "chemistry": "NCM", "manufacturer": maker}
        reg |= {"serial_number": serial, "manufactured_at": "2026-01-01T00:00:00+09:00", "manufacturing_site": "S"}
        messages.append(Message("registry", f"r-{bid}", "registered", BatteryRegisteredIn.model_validate(reg)))
        events = [life.manufactured(bid, maker, at("2026-01-15"))]
        plain: list[str] = []
        if i % 4:
            pseudonym = uuid.uuid4().hex * 2
            vin = f"KMHEM41AP6A{(i * 37_000) % 300_000:06d}"
            erased = i % 8 == 3
            vins.append(Message("vins", f"0@{i}", "vin", VinIn(pseudonym=pseudonym, vin=None if erased else vin)))
            plain = [] if erased else [vin]
            events.append(life.event(bid, "INSTALLED", maker, "oem", at("2026-02-01"), {"vin": pseudonym}))
        if i % 3 == 1:
            named = campaigns[i % 4].id
            data = {"reason": "recall", "recall_campaign": named}
            events.append(life.event(bid, "REMOVED", "DISM-1", "dismantler", at("2026-03-01"), data))
        messages += [Message("lifecycle", e["id"], e["type"], LedgerRecord.model_validate(e["data"])) for e in events]
        removed_under = {e["data"]["data"].get("recall_campaign") for e in events}
        facts[bid] = {"manufacturer": maker, "model_id": model, "serial": serial, "vins": plain, "under": removed_under}

    engine = create_async_engine(db_url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            await apply(session, vins)
            await apply(session, messages)
            view = await molit_view(await raw_connection(session))
    finally:
        await engine.dispose()
    expected = []
    for x in sorted(campaigns, key=lambda x: x.id):
        covered = [
            f for f in facts.values() if covers(x, **{k: f[k] for k in ("manufacturer", "model_id", "serial", "vins")})
        ]
        removed = sum(1 for f in covered if x.id in f["under"])
        expected.append((x.id, len(covered), removed, len(covered) - removed))
    newest_first = sorted(campaigns, key=lambda x: (-x.opened_on.toordinal(), x.id))
    assert [v["id"] for v in view] == [x.id for x in newest_first]
    assert sorted((v["id"], v["affected"], v["removed"], v["remaining"]) for v in view) == expected
    assert all(n > 0 for _, n, _, _ in expected[:4]) and any(
        r > 0 for _, _, r, _ in expected
    )  # the world tests something
