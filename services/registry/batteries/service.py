"""Battery registration rules: identity, model, kind, duplicates; every change goes out via the outbox."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.amendments import repository as amendments_repo
from services.registry.amendments.service import current
from services.registry.batteries import gs1
from services.registry.batteries import repository as repo
from services.registry.batteries.schemas import AliasIn, AliasScheme, BatteryFilter, BatteryIn, BatteryPublic
from services.registry.catalog import repository as catalog_repo
from services.registry.events import MODEL_FACTS, registry_message
from services.registry.models import SCHEMA
from services.registry.participants import repository as participants_repo
from shared import access
from shared.auth import Principal, Role
from shared.contract.streams import manufactured_event_id
from shared.db import raw_connection
from shared.outbox import enqueue
from shared.pagination import split_page
from shared.problems import Conflict, Forbidden, NotFound, Unprocessable, field_error

PUBLIC_FIELDS = set(BatteryPublic.model_fields)


def _item_error(index: int | None, field: str, rule: str, message: str) -> dict[str, Any]:
    err = field_error(field if index is None else f"batteries.{index}.{field}", rule, message)
    if index is not None:
        err["index"] = index
    return err


async def register(
    session: AsyncSession, items: Sequence[dict[str, Any]], principal: Principal, *, bulk: bool
) -> list[str]:
    """Register all items (as BatteryIn dumps them) or none; returns their IDs. `bulk` only changes how errors
    name their items."""

    def idx(i: int) -> int | None:
        return i if bulk else None

    ids = [b["id"] for b in items]
    counts = Counter(ids)
    dup_in_request = [
        _item_error(idx(i), "id", "unique-in-request", f"battery ID '{b}' appears more than once in the request")
        for i, b in enumerate(ids)
        if counts[b] > 1
    ]
    if dup_in_request:
        raise Conflict(
            f"{len(dup_in_request)} items repeat a battery ID within the request.",
            code="duplicate-battery",
            errors=dup_in_request,
        )

    models = await catalog_repo.get_models(session, {b["model_id"] for b in items})
    errors: list[dict[str, Any]] = []
    for i, b in enumerate(items):
        model = models.get(b["model_id"])
        if model is None:
            errors.append(_item_error(idx(i), "model_id", "known-model", f"no battery model '{b['model_id']}'"))
        elif b["kind"] is not None and b["kind"] != model["kind"]:
            errors.append(
                _item_error(
                    idx(i),
                    "kind",
                    "matches-model",
                    f"kind '{b['kind'].value}' differs from the model's '{model['kind']}'",
                )
            )
    if errors:
        raise Unprocessable(f"{len(errors)} items are invalid; first: {errors[0]['message']}.", errors=errors)

    # What a registration message carries of its model: the same for each of its batteries.
    facts = {m["id"]: {k: m[k] for k in (*MODEL_FACTS, "passport")} for m in models.values()}
    registered_at = datetime.now(UTC).isoformat()  # one occurrence: every message's CloudEvent time
    rows, messages = [], []
    for b in items:
        model = models[b["model_id"]]
        row = dict(b)
        del row["kind"]
        row["kind"], row["chemistry"], row["manufacturer"] = model["kind"], model["chemistry"], principal.org
        rows.append(row)
        data = {**row, "manufactured_at": row["manufactured_at"].isoformat(), "model": facts[b["model_id"]]}
        messages.append(
            registry_message(
                "battery.registered", row["id"], data, event_id=manufactured_event_id(row["id"]), time=registered_at
            )
        )
    taken = await repo.insert_batteries(session, rows)
    if taken is not None:
        if not taken:
            raise Conflict("A battery ID was registered concurrently; retry.", code="duplicate-battery")
        raise Conflict(
            f"{len(taken)} battery IDs are registered already.",
            code="duplicate-battery",
            errors=[
                _item_error(idx(i), "id", "unique", f"battery '{b}' is registered already")
                for i, b in enumerate(ids)
                if b in taken
            ],
        )
    await enqueue(session, SCHEMA, messages)
    return ids


async def get_battery(conn: asyncpg.Connection, battery_id: str) -> dict[str, Any]:
    """The full record with aliases: on a reader (committed data), or on the unit of work's own connection
    (`raw_connection`), which also sees what the request wrote before its commit."""
    found = await repo.read_battery(conn, battery_id)
    if found is None:
        raise NotFound(f"No battery '{battery_id}'.", code="unknown-battery")
    return current(*found)  # facts as last amended


async def register_one(session: AsyncSession, item: BatteryIn, principal: Principal) -> dict[str, Any]:
    """Register one battery and answer its full record as this unit of work sees it."""
    await register(session, [item.model_dump()], principal, bulk=False)
    return await get_battery(await raw_connection(session), item.id)


async def read_battery(conn: asyncpg.Connection, principal: Principal | None, battery_id: str) -> dict[str, Any]:
    """The full record for those who see it (shared.access.sees_full_record), else the public fields."""
    row = await get_battery(conn, battery_id)
    relation = access.Relation(is_manufacturer=principal is not None and principal.org == row["manufacturer"])
    if not access.sees_full_record(principal, relation):
        return {k: v for k, v in row.items() if k in PUBLIC_FIELDS} | {"access_level": "public"}
    return row | {"access_level": "full"}


async def list_batteries(
    session: AsyncSession, principal: Principal, f: BatteryFilter, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """A page of full records with their aliases, and whether more follow. Those who see every battery list
    any manufacturer's; anyone else only its own organisation's."""
    if not access.sees_every_battery(principal):
        if f.manufacturer not in (None, principal.org):
            raise Forbidden("A participant may list only the batteries it manufactured.")
        f = f.model_copy(update={"manufacturer": principal.org})
    rows = await repo.list_batteries(session, f, after, limit + 1)
    rows, more = split_page(rows, limit)
    if rows:
        ids = [r["id"] for r in rows]
        by_id = await repo.aliases_of(session, ids)
        amended = await amendments_repo.of(await raw_connection(session), ids)
        rows = [current(r, amended[r["id"]]) | {"aliases": by_id[r["id"]]} for r in rows]
    return rows, more


async def add_alias(session: AsyncSession, battery_id: str, body: AliasIn, principal: Principal) -> dict[str, Any]:
    """The battery's manufacturer (or an admin) names it by a GS1 key under one of the manufacturer's GS1
    company prefixes. VINs are not aliases one may add: INSTALLED attaches a VIN and REMOVED detaches it."""
    if body.scheme is AliasScheme.vin:
        raise Unprocessable(
            "A VIN is attached by the installing OEM's INSTALLED event and detached by REMOVED, not by an alias.",
            code="vin-by-installed",
            errors=[field_error("scheme", "vin-by-installed", "post INSTALLED with data.vin instead")],
        )
    battery = await get_battery(await raw_connection(session), battery_id)
    if principal.role is not Role.admin and principal.org != battery["manufacturer"]:
        raise Forbidden("Only the battery's manufacturer may add aliases.")
    try:
        key = gs1.parse_sgtin(body.value) if body.scheme is AliasScheme.epc else gs1.parse_digital_link(body.value)
    except gs1.Gs1Error as exc:
        raise Unprocessable(f"{exc}.", errors=[field_error("value", exc.rule, str(exc))]) from None
    prefixes = await participants_repo.prefixes_of(session, battery["manufacturer"])
    if not key.lies_under_any(prefixes):
        raise Forbidden(
            f"GTIN {key.gtin} is not under any GS1 company prefix of '{battery['manufacturer']}'.",
            code="foreign-gs1-prefix",
            errors=[field_error("value", "own-gs1-prefix", "must lie under one of the manufacturer's prefixes")],
        )
    alias = {"scheme": body.scheme.value, "value": body.value, "battery_id": battery_id}
    if not await repo.insert_alias(session, body.scheme.value, body.value, battery_id):
        current = await repo.get_alias(session, body.value)
        if current and current["battery_id"] == battery_id:
            return alias  # the same alias again: harmless
        raise Conflict(
            f"Alias '{body.value}' already names another battery.",
            code="alias-taken",
            errors=[field_error("value", "unique", "already names another battery")],
        )
    await enqueue(session, SCHEMA, [registry_message("battery.alias_added", battery_id, alias)])
    return alias


async def resolve(session: AsyncSession, value: str) -> dict[str, Any]:
    alias = await repo.get_alias(session, value)
    if alias is not None:
        return {"battery_id": alias["battery_id"], "scheme": alias["scheme"], "value": value}
    if await repo.existing_ids(session, [value]):
        return {"battery_id": value, "scheme": "battery_id", "value": value}
    raise NotFound(f"Nothing is registered under '{value}'.", code="unknown-alias")
