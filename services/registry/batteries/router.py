from __future__ import annotations

import email.message
import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.registry.batteries import service
from services.registry.batteries.schemas import (
    BATTERY_SHAPES,
    PLAIN_BATTERY,
    PLAIN_BULK,
    AliasIn,
    AliasOut,
    BatteryFilter,
    BatteryIn,
    BatteryOut,
    BatteryPage,
    BatteryPublic,
    BulkIn,
    BulkOut,
    Resolved,
)
from shared.auth import OPTIONAL_BEARER, CurrentPrincipal, Principal, Role, principal_of, require_role
from shared.db import SessionDep, pooled
from shared.limits import body_limit, create_route
from shared.pagination import Paging, page
from shared.problems import PROBLEM_RESPONSES
from shared.responses import DirectJSON

router = APIRouter(tags=["batteries"], responses=PROBLEM_RESPONSES)
Manufacturer = Annotated[Principal, Depends(require_role(Role.manufacturer))]
AliasWriter = Annotated[Principal, Depends(require_role(Role.manufacturer, Role.oem))]
#: Largest legal bodies (strings at their maximum lengths, numbers at full precision): one battery about 1.5 KB
#: in compact JSON, 4 KiB with every character written as a `\\u` escape; in a bulk registration of 10,000
#: each counts 1.5 KB (a Korean site name included), about 15 MB; an alias 512 characters.
BATTERY_BYTES = 4_096
BULK_BATTERY_BYTES = 1_500
BULK_MAX_BATTERIES = 10_000
ALIAS_BYTES = 2_048


@create_route(router, "/v1/batteries", BatteryOut, "Register a battery", limit=BATTERY_BYTES)
async def register_battery(body: BatteryIn, session: SessionDep, principal: Manufacturer) -> dict[str, Any]:
    """A manufacturer registers one cell, module or pack. The manufacturer is the caller's organisation
    (never the body). Its lifecycle ledger starts with MANUFACTURED at the events service."""
    return await service.register_one(session, body, principal)


#: The bodies routes here validate themselves, for the OpenAPI document's components (services/registry/app.py).
RAW_BODIES = (BulkIn,)


@dataclass(frozen=True, slots=True)
class BulkBody:
    """A bulk body validated from its raw bytes (`bulk_body`): its batteries, or the errors FastAPI would have
    raised for it, raised by the route once its other dependencies are solved, where FastAPI raises them."""

    batteries: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def checked(self) -> list[dict[str, Any]]:
        if self.errors:
            raise RequestValidationError(self.errors)
        return self.batteries


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test for a JSON body (`application/json` or `application/*+json`)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def bulk_body(request: Request) -> BulkBody:
    """`BulkIn` from the body's bytes: validated by pydantic-core straight from JSON into plain dicts (`PLAIN_BULK`),
    not parsed by `json` into dicts, validated into models and dumped into dicts again. A body refused so is
    validated again the way FastAPI validates a `BulkIn` body, for the same answer: JSON that does not parse is
    422 at once (before the caller's role is checked), anything else that fails `BulkIn` after the dependencies."""
    raw = await request.body()
    json_body = _is_json(request.headers.get("content-type"))
    if raw and json_body:
        try:
            return BulkBody([PLAIN_BATTERY.fill(b) for b in PLAIN_BULK.validate_json(raw)["batteries"]])
        except ValidationError:
            pass
    if not raw:
        return BulkBody(errors=[{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    body: Any = raw
    if json_body:
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as e:
            error = {"type": "json_invalid", "loc": ("body", e.pos), "msg": "JSON decode error", "input": {}}
            raise RequestValidationError([error | {"ctx": {"error": e.msg}}], body=e.doc) from None
        except ValueError as e:  # bytes that are no text in any encoding JSON may have: FastAPI's answer to them
            raise HTTPException(status_code=400, detail="There was an error parsing the body") from e
    try:
        return BulkBody([b.model_dump() for b in BulkIn.model_validate(body, from_attributes=True).batteries])
    except ValidationError as exc:
        return BulkBody(errors=[{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])


@router.post(
    "/v1/batteries/bulk",
    status_code=201,
    response_model=BulkOut,
    summary="Register up to 10,000 batteries, all or nothing",
    openapi_extra=body_limit(BULK_MAX_BATTERIES * BULK_BATTERY_BYTES)
    | {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BulkIn"}}},
        }
    },
)
async def register_bulk(
    body: Annotated[BulkBody, Depends(bulk_body)], session: SessionDep, principal: Manufacturer
) -> dict[str, Any]:
    """All items are registered or none is; every failing item is listed with its `index`."""
    ids = await service.register(session, body.checked(), principal, bulk=True)
    return {"created": len(ids), "ids": ids}


@router.get(
    "/v1/batteries/{battery_id}",
    response_model=BatteryOut | BatteryPublic,
    summary="One battery (public fields without a token)",
    openapi_extra=OPTIONAL_BEARER,
)
async def get_battery(battery_id: str, request: Request) -> Response:
    """Without a token, or for a participant other than the battery's manufacturer, only the public fields;
    the manufacturer, authorities and operators get the full record (serial number, material content)."""
    # The hottest read, without FastAPI's dependency machinery (a cancel scope and a checkpoint for a yield
    # dependency, a cache key per dependency): the principal as `OptionalPrincipal` finds it, a pooled connection
    # held around the query only, and the record as the response model would write it (tests/test_registry.py).
    principal = await principal_of(request)
    async with pooled(request.app.state.statement_pool) as reader:
        battery = await service.read_battery(reader, principal, battery_id)
    return DirectJSON(BATTERY_SHAPES[battery["access_level"]](battery))


@router.get("/v1/batteries", response_model=BatteryPage, summary="List batteries (cursor pagination)")
async def list_batteries(
    session: SessionDep, principal: CurrentPrincipal, paging: Paging, f: Annotated[BatteryFilter, Query()]
) -> dict[str, Any]:
    """Authorities and operators list every battery; a manufacturer lists its own (the full records)."""
    rows, more = await service.list_batteries(session, principal, f, paging.after(str), paging.limit)
    return page(rows, more, "id")


@create_route(
    router,
    "/v1/batteries/{battery_id}/aliases",
    AliasOut,
    "Add an alias (GS1 Digital Link or SGTIN EPC URN)",
    limit=ALIAS_BYTES,
)
async def add_alias(battery_id: str, body: AliasIn, session: SessionDep, principal: AliasWriter) -> dict[str, Any]:
    """The battery's manufacturer adds a GS1 Digital Link or SGTIN EPC URN under one of its GS1 company prefixes
    (check digits verified). A VIN is refused here (422 `vin-by-installed`): INSTALLED attaches it."""
    return await service.add_alias(session, battery_id, body, principal)


@router.get(
    "/v1/resolve", response_model=Resolved, summary="Resolve an alias (or a battery's own ID) to a battery ID (public)"
)
async def resolve(session: SessionDep, alias: Annotated[str, Query(min_length=1, max_length=512)]) -> dict[str, Any]:
    return await service.resolve(session, alias)
