from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.auth import Ministry, Role
from shared.pagination import Page
from shared.participants import ParticipantStatus, normalise_business_number, valid_business_number
from shared.validation import documented


class ParticipantFilter(BaseModel):
    """A participant list's filters (None: any), read as its query parameters (`Annotated[..., Query()]`)."""

    model_config = ConfigDict(frozen=True)

    role: Role | None = None
    ministry: Ministry | None = None
    region: str | None = None


ParticipantId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", examples=["RECYCLER-SEOUL-01"])]


def _business_number(value: str) -> str:
    if not valid_business_number(value):
        raise ValueError("a business registration number is 10 digits whose last is the check digit of the others")
    return normalise_business_number(value)


BusinessNumber = Annotated[
    str,
    Field(
        min_length=10,
        max_length=12,
        examples=["1248100998"],
        description="사업자등록번호: 10 digits, check digit verified.",
    ),
    AfterValidator(_business_number),
]
#: A GS1 company prefix: 4 to 12 digits (GS1 General Specifications; Korea's start with 880).
CompanyPrefix = Annotated[str, Field(pattern=r"^[0-9]{4,12}$", examples=["8801234"])]


class ParticipantIn(BaseModel):
    model_config = documented(
        {
            "id": "KOREA-ZINC-REC",
            "name": "Korea Recycling Co.",
            "role": "recycler",
            "region": "KR-48",
        },
        {"id": "MCEE", "name": "기후에너지환경부", "role": "ministry", "ministry": "MCEE"},
        extra="forbid",
    )
    id: ParticipantId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role
    ministry: Ministry | None = None
    region: Annotated[str, Field(max_length=64)] | None = None
    business_number: BusinessNumber | None = None
    gs1_company_prefixes: Annotated[
        list[CompanyPrefix],
        Field(max_length=100, description="The GS1 company prefixes the participant owns (manufacturers only)."),
    ] = []

    @model_validator(mode="after")
    def _ministry_matches_role(self) -> ParticipantIn:
        if self.role is Role.ministry and self.ministry is None:
            raise ValueError("ministry is required when role is 'ministry'")
        if self.role is not Role.ministry and self.ministry is not None:
            raise ValueError("ministry is allowed only when role is 'ministry'")
        if self.gs1_company_prefixes and self.role is not Role.manufacturer:
            raise ValueError("gs1_company_prefixes are allowed only when role is 'manufacturer'")
        return self


class ParticipantOut(ParticipantIn):
    model_config = ConfigDict(extra="ignore")
    status: ParticipantStatus = ParticipantStatus.active
    created_at: datetime


class ParticipantPage(Page[ParticipantOut]):
    pass
