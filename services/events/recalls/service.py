"""Checking recall removals against the known campaigns: fetch the campaigns and the batteries' facts, call
the pure rules (`rules`). No SQL here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.events.lifecycle.machine import Event, Refusal
from services.events.recalls import repository as repo
from services.events.recalls import rules
from shared.contract.lifecycle import EventType, RemovalReason


def is_recall_removal(ev: Event) -> bool:
    return ev.type is EventType.REMOVED and ev.data.get("reason") == RemovalReason.recall.value


def batch_vins(
    batch: Sequence[Event], removals: Sequence[tuple[int, Event]], plain_vins: Mapping[str, str]
) -> dict[int, list[str]]:
    """Per recall removal (index in `batch`): the plain VINs its batch installed the battery into before it, which
    are not stored yet (`plain_vins`: pseudonym → VIN, as the batch's INSTALLED events carry pseudonyms)."""
    installs: dict[str, list[tuple[int, str]]] = {}
    for j, e in enumerate(batch if removals else ()):
        if e.type is EventType.INSTALLED and e.data.get("vin") in plain_vins:
            installs.setdefault(e.battery_id, []).append((j, plain_vins[e.data["vin"]]))
    return {i: [vin for j, vin in installs.get(ev.battery_id, ()) if j < i] for i, ev in removals}


async def refusals(
    session: AsyncSession,
    removals: Sequence[tuple[int, Event]],
    states: Mapping[str, Mapping[str, Any]],
    batch_vins: Mapping[int, Sequence[str]] | None = None,
) -> dict[int, Refusal]:
    """For each (index, recall removal): why it is refused, if it is. A named campaign must be known and cover
    the battery; where known campaigns cover it, one must be named. `batch_vins`: per removal, the plain VINs
    its batch installed the battery into before it (not stored yet), besides the stored ones."""
    if not removals:
        return {}
    named = sorted({ev.data["recall_campaign"] for _, ev in removals if ev.data.get("recall_campaign")})
    known = await repo.campaigns(session, named) if named else {}
    # A maker's every campaign is needed only for the removals that name none.
    makers = sorted(
        {
            str((states.get(ev.battery_id) or {}).get("manufacturer"))
            for _, ev in removals
            if not ev.data.get("recall_campaign")
        }
    )
    by_maker = await repo.campaigns_of_makers(session, makers) if makers else {}
    battery_facts = await repo.facts(session, sorted({ev.battery_id for _, ev in removals}))
    out: dict[int, Refusal] = {}
    for i, ev in removals:
        state = states.get(ev.battery_id) or {}
        serial, stored_vins = battery_facts[ev.battery_id]
        vins = [*stored_vins, *(batch_vins or {}).get(i, ())]
        facts: dict[str, Any] = {
            "manufacturer": state.get("manufacturer"),
            "model_id": state.get("model_id"),
            "serial": serial,
            "vins": vins,
        }
        campaign_id = ev.data.get("recall_campaign")
        refusal = (
            rules.recall_refusal(campaign_id, known.get(campaign_id), **facts)
            if campaign_id
            else rules.unnamed_recall_refusal(by_maker.get(str(state.get("manufacturer")), []), **facts)
        )
        if refusal is not None:
            out[i] = refusal
    return out
