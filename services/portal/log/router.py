"""The newest checkpoint of the transparency log as the portal has seen it on battery.log.checkpoints.v1,
with the ministries whose witnesses cosigned it (public)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.portal.log import service
from services.portal.log.schemas import LatestCheckpoint
from shared.db import SessionDep
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["log"], responses={404: PROBLEM_RESPONSES[404]})


@router.get(
    "/v1/log/checkpoints/latest",
    response_model=LatestCheckpoint,
    summary="The newest log checkpoint and which ministries cosigned it (public)",
)
async def get_latest_checkpoint(session: SessionDep) -> dict[str, Any]:
    """The largest checkpoint the events service published, its note (check it with `log_key`) and the
    witnesses that cosigned it so far. 404 `no-checkpoint` until the first one arrives."""
    return await service.latest(session)
