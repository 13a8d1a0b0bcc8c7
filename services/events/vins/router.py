"""VINs over HTTP: the plain VIN behind a pseudonym (ministries, admin), and its erasure (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from services.events.vins import service
from shared.auth import Principal, Role, require_role
from shared.db import SessionDep
from shared.problems import PROBLEM_RESPONSES
from shared.validation import documented
from shared.vin import PSEUDONYM_PATTERN

router = APIRouter(tags=["vins (personal data)"], responses=PROBLEM_RESPONSES)

Admin = Annotated[Principal, Depends(require_role(Role.admin))]
Reader = Annotated[Principal, Depends(require_role(Role.ministry, Role.admin))]
Pseudonym = Annotated[
    str, Path(pattern=PSEUDONYM_PATTERN, description="The VIN's keyed pseudonym, as the ledger holds it.")
]


class ErasureIn(BaseModel):
    model_config = documented({"reason": "PIPA art. 36 request"}, extra="forbid")
    reason: Annotated[str, Field(min_length=3, max_length=500, description="Why the VIN is erased (recorded).")]


class VinOut(BaseModel):
    pseudonym: str
    vin: str | None = Field(description="The plain VIN; null once erased.")
    erased: bool
    recorded_at: datetime
    erased_at: datetime | None = None
    erased_by: str | None = None
    erasure_reason: str | None = None


@router.get("/v1/vins/{pseudonym}", response_model=VinOut, summary="The plain VIN behind a pseudonym")
async def get_vin(pseudonym: Pseudonym, session: SessionDep, _: Reader) -> Any:
    """Ministries and admin (the read is audited). Participants read the VINs of their own vehicles'
    batteries on the portal."""
    return await service.read(session, pseudonym)


@router.post(
    "/v1/vins/{pseudonym}/erasure",
    response_model=VinOut,
    summary="Erase a VIN (PIPA)",
    description="Drops the plain VIN behind the pseudonym here and on the portal (a tombstone on "
    "`battery.vins.v1`), recording who erased it, when and why in the audit log. The ledger keeps the "
    "pseudonym: every chain, proof, bundle and checkpoint still verifies; histories show the VIN as erased.",
)
async def erase_vin(pseudonym: Pseudonym, body: ErasureIn, session: SessionDep, principal: Admin) -> Any:
    return await service.erase(session, pseudonym, body.reason, principal)
