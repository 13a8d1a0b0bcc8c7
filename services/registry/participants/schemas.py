from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.auth import Ministry, Role
from shared.pagination import Page

ParticipantId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["RECYCLER-SEOUL-01"])]


class ParticipantIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "KOREA-ZINC-REC",
                    "name": "Korea Recycling Co.",
                    "role": "recycler",
                    "region": "KR-48",
                },
                {"id": "MCEE", "name": "기후에너지환경부", "role": "ministry", "ministry": "MCEE"},
            ]
        },
    )
    id: ParticipantId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role
    ministry: Ministry | None = None
    region: Annotated[str, Field(max_length=64)] | None = None

    @model_validator(mode="after")
    def _ministry_matches_role(self) -> ParticipantIn:
        if self.role is Role.ministry and self.ministry is None:
            raise ValueError("ministry is required when role is 'ministry'")
        if self.role is not Role.ministry and self.ministry is not None:
            raise ValueError("ministry is allowed only when role is 'ministry'")
        return self


class ParticipantOut(ParticipantIn):
    model_config = ConfigDict(extra="ignore")
    created_at: datetime


class ParticipantPage(Page[ParticipantOut]):
    pass
