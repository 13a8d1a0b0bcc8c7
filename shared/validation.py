"""Field types shared by the services' schemas."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, ConfigDict, Field
from pydantic.config import ExtraValues


class RuleError(ValueError):
    """A value failing a named rule, raised by pure checks: `rule` is the `rule` of the field error it is
    rendered as, the message its `message`."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def documented(*examples: Any, extra: ExtraValues | None = None) -> ConfigDict:
    """A model's config with the examples its OpenAPI schema shows; `extra="forbid"` for a request body."""
    config = ConfigDict(json_schema_extra={"examples": list(examples)})
    if extra is not None:
        config["extra"] = extra
    return config


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
#: No battery this system tracks was made or handled before this; older times are typing errors (and years
#: before 1000 broke the ledger's timestamp format downstream).
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


_SKEW_S = CLOCK_SKEW.total_seconds()
_EARLIEST_S = EARLIEST.timestamp()


def _plausible(value: datetime) -> datetime:
    # Compared as POSIX seconds: the same instants, but one utcoffset() call instead of four (pydantic's TzInfo
    # answers each in about 0.3 us, and every battery registered and every event posted passes here).
    at = value.timestamp()
    if at > time.time() + _SKEW_S:
        raise ValueError("must not be in the future")
    if at < _EARLIEST_S:
        raise ValueError("must not be before 1990-01-01")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_text(value: Any) -> Any:
    """Dates and times as ISO 8601 text, as the documents' `format` says. Pydantic alone also takes a number
    (or numeric text, as every query parameter is) for a Unix timestamp: `?at=0` meant 1970-01-01."""
    if isinstance(value, int | float) or (isinstance(value, str) and not _ISO_DATE.match(value)):
        raise ValueError("must be ISO 8601 text, e.g. 2026-03-02 or 2026-03-02T09:00:00+09:00")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
IsoDate = Annotated[date, BeforeValidator(_iso_text)]
PastAwareDatetime = Annotated[IsoDatetime, AfterValidator(_plausible)]
# ---- numbers the ledger hashes ----
# An event's hash covers the canonical JSON of its data, and `/verify` recomputes it from what PostgreSQL's JSONB
# gives back, so every number a schema accepts must come back exactly: finite (JSON has no Infinity or NaN),
# floats below 1e16 in magnitude (from there on the canonical form writes an exponent, JSONB prints every digit,
# and the digits read back as an integer), no negative zero (JSONB has none), integers within 53 bits (exact as
# a JSON number everywhere; the canonical form cannot write integers beyond 64 bits at all).

#: The largest magnitude of a float field.
FLOAT_MAX = 1e15
#: The largest integer field value.
INT_MAX = 2**53


def _no_negative_zero(value: float) -> float:
    return value + 0.0  # -0.0 + 0.0 is 0.0


_exact = AfterValidator(_no_negative_zero)
NonNegative = Annotated[float, Field(ge=0, le=FLOAT_MAX, allow_inf_nan=False), _exact]
Positive = Annotated[float, Field(gt=0, le=FLOAT_MAX, allow_inf_nan=False), _exact]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False), _exact]
Count = Annotated[int, Field(ge=0, le=INT_MAX)]


def canonical_uuid(value: str, name: str) -> str:
    """`value`, a UUID, in its canonical text form; a ValueError naming the field `name` otherwise."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{name} must be a UUID") from None
