"""Field types shared by the services' schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

BATTERY_ID_PATTERN = r"^[A-Z0-9-]{1,24}$"

BatteryId = Annotated[
    str,
    Field(
        pattern=BATTERY_ID_PATTERN,
        min_length=1,
        max_length=24,
        description="Korean battery identification number: 1-24 of A-Z, 0-9 and '-'.",
        examples=["KR-LGES-P000001"],
    ),
]

#: Clock skew tolerated before a timestamp counts as "in the future".
CLOCK_SKEW = timedelta(minutes=2)


def _not_future(value: datetime) -> datetime:
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("must not be in the future")
    return value


PastAwareDatetime = Annotated[AwareDatetime, AfterValidator(_not_future)]
NonNegative = Annotated[float, Field(ge=0)]
Percent = Annotated[float, Field(ge=0, le=100)]
