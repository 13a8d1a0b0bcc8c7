from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from services.registry.catalog import service
from services.registry.catalog.passport import PassportDeclaration
from services.registry.catalog.schemas import BatteryModelIn, BatteryModelOut
from shared.auth import Principal, Role, require_role
from shared.db import SessionDep
from shared.limits import body_limit, create_route
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1/models", tags=["battery models"], responses=PROBLEM_RESPONSES)
Manufacturer = Annotated[Principal, Depends(require_role(Role.manufacturer))]


# The limit: an ID, a kind, a chemistry, four ratings and a passport declaration.
@create_route(router, "", BatteryModelOut, "Register a model", limit=262_144)
async def create_model(body: BatteryModelIn, session: SessionDep, principal: Manufacturer) -> dict[str, object]:
    """A manufacturer registers a battery model (cell, module or pack) with its chemistry and ratings.
    The manufacturer is the caller's organisation."""
    return await service.create_model(session, body, principal)


@router.get("/{model_id}", response_model=BatteryModelOut, summary="One model (public)")
async def get_model(model_id: str, session: SessionDep) -> dict[str, object]:
    return await service.get_model(session, model_id)


@router.put(
    "/{model_id}/passport",
    response_model=BatteryModelOut,
    summary="Declare the model's passport data",
    openapi_extra=body_limit(262_144),
)
async def declare_passport(
    model_id: str, body: PassportDeclaration, session: SessionDep, principal: Manufacturer
) -> dict[str, object]:
    """The model's manufacturer states what the passports of its batteries need from it (documents, labels,
    technical properties, hazardous substances, due diligence, Catena-X identifiers), replacing what it stated
    before. Checked against the standards' schemas; what the network derives is refused."""
    return await service.declare_passport(session, model_id, body, principal)
