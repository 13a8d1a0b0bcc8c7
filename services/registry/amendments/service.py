"""Amending registry facts: who may, which facts, and the record each change leaves (DOMAIN.md, Corrections).

Nothing is edited in place. A battery's row stays as registered; each amendment is a numbered record of who, when,
why, and each fact's value before and after; a fact's current value is its latest amendment over the registered
one (`current`). Each amendment goes out on `battery.registry.v1` through the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.amendments import repository as repo
from services.registry.amendments.schemas import AmendmentIn
from services.registry.batteries.schemas import BatteryIn
from services.registry.events import registry_message
from services.registry.models import SCHEMA
from shared import access
from shared.auth import Principal, Role
from shared.db import raw_connection
from shared.outbox import enqueue
from shared.problems import Forbidden, NotFound, Unprocessable, field_error, validation_errors

#: The registry facts an amendment may change, typed as at registration. The battery's identity (its ID, model,
#: kind, chemistry, manufacturer) and its serial number (what its GS1 aliases are built from) are not facts to
#: amend: a battery registered under the wrong identity is a different battery.
AMENDABLE = (
    "manufactured_at",
    "manufacturing_site",
    "materials_kg",
    "recycled_content_pct",
    "carbon_footprint_kg_co2e_per_kwh",
)


def _adapter(name: str) -> TypeAdapter[Any]:
    """The fact's type with its constraints, as BatteryIn declares it."""
    info = BatteryIn.model_fields[name]
    typed: Any = Annotated[info.annotation, info]  # Any: built at runtime from the model's field
    return TypeAdapter(typed)


_ADAPTERS = {name: _adapter(name) for name in AMENDABLE}
#: Who amends any battery's facts: the authorities over registry facts (ministries) and admins. A certifier is an
#: authority only for what it certifies, never for registry facts.
AMENDS_ANY = frozenset({Role.ministry, Role.admin})
#: Who may amend at all: those, and manufacturers (their own batteries).
AMENDERS = (Role.manufacturer, *sorted(AMENDS_ANY))


def _json(name: str, value: Any) -> Any:
    """The fact's value validated and in JSON form (how records and messages carry it)."""
    adapter = _ADAPTERS[name]
    return adapter.dump_python(adapter.validate_python(value), mode="json")


def _python(name: str, value: Any) -> Any:
    v = _ADAPTERS[name].validate_python(value)
    return v.model_dump() if isinstance(v, BaseModel) else v


def current(row: Mapping[str, Any], amendments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The battery's record with each amended fact at its latest amendment (amendments in number order)."""
    out = dict(row)
    for a in amendments:
        for name, change in a["changes"].items():
            out[name] = _python(name, change["after"])
    return out


def parse_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Each change validated as its fact is at registration (JSON form); 422 naming every field that is not
    amendable or not valid."""
    errors: list[dict[str, Any]] = []
    parsed: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in _ADAPTERS:
            errors.append(
                field_error(
                    f"changes.{name}", "amendable", f"not an amendable fact (amendable: {', '.join(AMENDABLE)})"
                )
            )
            continue
        try:
            parsed[name] = _json(name, value)
        except ValidationError as exc:
            errors += validation_errors(exc.errors(), prefix=("changes", name))
    if errors:
        raise Unprocessable(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
    return parsed


def may_amend(principal: Principal, manufacturer: str) -> bool:
    """The battery's manufacturer, a ministry, or an admin."""
    own = principal.role is Role.manufacturer and principal.org == manufacturer
    return own or principal.role in AMENDS_ANY


async def amend(session: AsyncSession, battery_id: str, body: AmendmentIn, principal: Principal) -> dict[str, Any]:
    """Record one amendment of a battery's facts and publish it. Concurrent amendments of one battery apply one
    after the other (the battery's row is locked): each one's `before` is the value the previous one left."""
    battery = await repo.lock_battery(session, battery_id)
    if battery is None:
        raise NotFound(f"No battery '{battery_id}'.", code="unknown-battery")
    if not may_amend(principal, battery["manufacturer"]):
        raise Forbidden(
            f"Only the battery's manufacturer ({battery['manufacturer']}) or an authority may amend its facts.",
            code="not-the-manufacturer",
        )
    after = parse_changes(body.changes)
    existing = (await repo.of(await raw_connection(session), [battery_id]))[battery_id]
    now = current(battery, existing)
    changes = {name: {"before": _json(name, now[name]), "after": value} for name, value in after.items()}
    unchanged = [name for name, c in changes.items() if c["before"] == c["after"]]
    if unchanged:
        raise Unprocessable(
            f"changes.{unchanged[0]}: the fact has this value already; an amendment changes something.",
            errors=[field_error(f"changes.{n}", "changes-something", "already this value") for n in unchanged],
        )
    record = await repo.insert(
        session,
        {
            "id": str(uuid.uuid4()),
            "battery_id": battery_id,
            "number": len(existing) + 1,
            "changes": changes,
            "reason": body.reason,
            "actor": principal.org,
            "actor_role": principal.role.value,
        },
    )
    data = {**record, "amended_at": record["amended_at"].isoformat(), "manufacturer": battery["manufacturer"]}
    await enqueue(session, SCHEMA, [registry_message("battery.amended", battery_id, data, event_id=record["id"])])
    return record


def visible(amendment: Mapping[str, Any], full: bool) -> dict[str, Any]:
    """An amendment as a reader may see it: without the commercial facts' values unless it sees the full record."""
    out = dict(amendment)
    if not full:
        out["changes"] = {k: v for k, v in amendment["changes"].items() if k not in access.COMMERCIAL_FACTS}
    return out


async def amendments_of(session: AsyncSession, principal: Principal | None, battery_id: str) -> list[dict[str, Any]]:
    conn = await raw_connection(session)
    battery = await repo.lock_battery(session, battery_id, lock=False)
    if battery is None:
        raise NotFound(f"No battery '{battery_id}'.", code="unknown-battery")
    relation = access.Relation(is_manufacturer=principal is not None and principal.org == battery["manufacturer"])
    full = access.sees_full_record(principal, relation)
    return [visible(a, full) for a in (await repo.of(conn, [battery_id]))[battery_id]]
