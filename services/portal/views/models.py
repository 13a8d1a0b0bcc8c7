"""The pre-aggregated figures behind the ministry views (schema `portal`), kept by the consumer in its
transaction so the views read a few hundred rows whatever the number of events."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, PrimaryKeyConstraint, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import Base


class FlowStat(Base, table=True):
    """Flows: how many events of a kind happened per month and region, by up to three keys, with summed
    amounts (kWh, kg, SoH...). '' stands for "not applicable" in keys and region."""

    __tablename__ = "flow_stats"
    __table_args__ = (
        PrimaryKeyConstraint("metric", "month", "region", "k1", "k2", "k3", name="pk_flow_stats"),
        {"schema": SCHEMA},
    )

    metric: str = Field(sa_type=Text)
    month: date
    region: str = Field(sa_type=Text)
    k1: str = Field(sa_type=Text)
    k2: str = Field(sa_type=Text)
    k3: str = Field(sa_type=Text)
    n: int = Field(sa_type=BigInteger)
    amounts: dict[str, float] = Field(sa_type=JSONB)


class CurrentCount(Base, table=True):
    """Stocks: how many batteries are in each combination of current facts now."""

    __tablename__ = "current_counts"
    __table_args__ = (
        PrimaryKeyConstraint(
            "state",
            "region",
            "manufacturer",
            "chemistry",
            "kind",
            "status",
            "safety",
            "grade",
            name="pk_current_counts",
        ),
        {"schema": SCHEMA},
    )

    state: str = Field(sa_type=Text)
    region: str = Field(sa_type=Text)
    manufacturer: str = Field(sa_type=Text)
    chemistry: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    status: str = Field(sa_type=Text)
    safety: str = Field(sa_type=Text)
    grade: str = Field(sa_type=Text)
    n: int = Field(sa_type=BigInteger)
