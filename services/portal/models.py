"""The portal's read models of record (schema `portal`), built only from the Kafka streams, and its
operational tables (outbox, stream positions, audit log).

Everything but the operational tables can be rebuilt by replaying `battery.registry.v1` and
`battery.lifecycle.v1` from the start into an empty schema. Alembic creates the tables; nothing else does.

- `participants`, `battery_models`, `batteries`, `aliases` mirror the registry's facts; `batteries` also
  holds the lifecycle head (state, custodian, grade, ...) folded from `events` in sequence order.
- `events` is the timeline; `handlers` says who made or handled which battery (access checks).
- The ingest domain's `applied_events` dedupes registry deliveries (`events`' key dedupes lifecycle ones); the views domain's `flow_stats` and
  `current_counts` are pre-aggregated; the EPCIS domain has its own query model.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Index, PrimaryKeyConstraint, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from shared.audit import audit_log_model
from shared.db import TZ, Base
from shared.outbox import stream_positions_model
from shared.records import BatteryModelFields, LedgerRecordFields, ParticipantFields

SCHEMA = "portal"


class Participant(ParticipantFields, Base, table=True):
    __tablename__ = "participants"
    __table_args__ = {"schema": SCHEMA}

    created_at: datetime | None = Field(default=None, sa_type=TZ)
    #: active | suspended, as the registry last published it (the portal's participant directory reads it).
    status: str = Field(default="active", sa_type=Text, sa_column_kwargs={"server_default": "active"})


class BatteryModel(BatteryModelFields, Base, table=True):
    __tablename__ = "battery_models"
    __table_args__ = {"schema": SCHEMA}

    created_at: datetime | None = Field(default=None, sa_type=TZ)
    #: The manufacturer's passport declaration as last published (the passports read it from here).
    passport: dict[str, Any] | None = Field(default=None, sa_type=JSONB)


class Battery(Base, table=True):
    """A battery: registry facts (null until its registration arrives) and the lifecycle head (null until
    its first lifecycle event arrives). The two streams are independent, so either may come first."""

    __tablename__ = "batteries"
    __table_args__ = (
        Index("ix_batteries_state", "state", "id"),
        Index("ix_batteries_manufacturer", "manufacturer", "id"),
        Index("ix_batteries_chemistry", "chemistry", "id"),
        Index("ix_batteries_region", "region", "id"),
        Index("ix_batteries_vin", "vin"),
        Index(
            "ix_batteries_backlog", "state", "state_since", postgresql_where=text("state IN ('removed', 'collected')")
        ),
        Index(
            "ix_batteries_certificate",
            "certificate_valid_until",
            postgresql_where=text("certificate_valid_until IS NOT NULL"),
        ),
        # Room on each page for the row's next version: an event's update that moves no indexed column stays
        # on the page and adds no index entry (migration 2026_12_06_portal_batteries_fillfactor, with figures).
        {"schema": SCHEMA, "postgresql_with": {"fillfactor": 85}},
    )

    id: str = Field(primary_key=True, sa_type=Text)
    # registry facts
    registered: bool = Field(sa_column_kwargs={"server_default": text("false")})
    model_id: str | None = Field(default=None, sa_type=Text)
    kind: str | None = Field(default=None, sa_type=Text)
    chemistry: str | None = Field(default=None, sa_type=Text)
    manufacturer: str | None = Field(default=None, sa_type=Text)
    serial_number: str | None = Field(default=None, sa_type=Text)
    manufactured_at: datetime | None = Field(default=None, sa_type=TZ)
    manufacturing_site: str | None = Field(default=None, sa_type=Text)
    materials_kg: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    recycled_content_pct: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    carbon_footprint_kg_co2e_per_kwh: float | None = None
    model: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    # lifecycle head, folded from `events` in sequence order
    sequence: int = Field(sa_column_kwargs={"server_default": text("0")})
    state: str | None = Field(default=None, sa_type=Text)
    state_since: datetime | None = Field(default=None, sa_type=TZ)
    custodian: str | None = Field(default=None, sa_type=Text)
    region: str | None = Field(default=None, sa_type=Text)
    grade: str | None = Field(default=None, sa_type=Text)
    soh_pct: float | None = None
    cycle_count: int | None = None
    parent_id: str | None = Field(default=None, sa_type=Text)
    vin: str | None = Field(default=None, sa_type=Text)
    life: int = Field(sa_column_kwargs={"server_default": text("0")})
    status: str = Field(sa_type=Text, sa_column_kwargs={"server_default": text("'original'")})
    safety: str | None = Field(default=None, sa_type=Text)
    #: The latest passing KC 10031 certificate of this life (KATS: expiring, and in service on an expired one).
    certificate_number: str | None = Field(default=None, sa_type=Text)
    certificate_body: str | None = Field(default=None, sa_type=Text)
    certificate_valid_until: date | None = None
    installed_at: datetime | None = Field(default=None, sa_type=TZ)
    recycled_month: date | None = None
    recycled_region: str | None = Field(default=None, sa_type=Text)
    contained_counted: bool = Field(sa_column_kwargs={"server_default": text("false")})
    last_event_id: str | None = Field(default=None, sa_type=Text)
    last_recorded_at: datetime | None = Field(default=None, sa_type=TZ)
    last_applied_at: datetime | None = Field(default=None, sa_type=TZ)


#: A GS1 Digital Link alias's canonical key, `<GTIN-14>/<serial>` (from its `/01/<GTIN>/21/<serial>` path,
#: whatever the domain), as an indexed expression: the resolver finds a scanned link by this exact key.
DIGITAL_LINK_KEY = (  # as PostgreSQL writes it back (the models-match-migrations check compares the text)
    """((lpad("substring"(value, '/01/([0-9]{8,14})/21/'::text), 14, '0'::text) || '/'::text) """
    """|| "substring"(value, '/01/[0-9]{8,14}/21/([^/?#]+)'::text))"""
)

#: The GTIN-14 of a GS1 Digital Link alias: the resolver's product-level (`/01/<GTIN>`) look-up by exact key.
DIGITAL_LINK_GTIN = """lpad("substring"(value, '/01/([0-9]{8,14})/21/'::text), 14, '0'::text)"""


class Alias(Base, table=True):
    __tablename__ = "aliases"
    __table_args__ = (
        Index("ix_aliases_battery", "battery_id"),
        Index(
            "ix_aliases_digital_link_key",
            text(DIGITAL_LINK_KEY),
            postgresql_where=text("scheme = 'gs1_digital_link'"),
        ),
        Index(
            "ix_aliases_digital_link_gtin",
            text(DIGITAL_LINK_GTIN),
            postgresql_where=text("scheme = 'gs1_digital_link'"),
        ),
        {"schema": SCHEMA},
    )

    value: str = Field(primary_key=True, sa_type=Text)
    scheme: str = Field(sa_type=Text)
    battery_id: str = Field(sa_type=Text)


class Event(LedgerRecordFields, Base, table=True):
    """The lifecycle timeline, as published. `parent_id` is lifted out of ASSEMBLED/DISASSEMBLED data so
    the composition at any time is an indexed lookup."""

    __tablename__ = "events"
    __table_args__ = (
        PrimaryKeyConstraint("battery_id", "sequence", name="pk_events"),
        # Event IDs are unique per poster only (and a poster's MANUFACTURED ID is the server's): the key is the
        # ledger place, (battery_id, sequence).
        Index("ix_events_event_id", "event_id"),
        Index("ix_events_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL")),
        # A vehicle's batteries: INSTALLED events by the VIN's pseudonym (services/portal/vehicles).
        Index(
            "ix_events_installed_vin", text("(data ->> 'vin'::text)"), postgresql_where=text("type = 'INSTALLED'::text")
        ),
        {"schema": SCHEMA},
    )

    parent_id: str | None = Field(default=None, sa_type=Text)
    #: The sequence of the ERROR_DECLARED that declared this event in error (null: in effect). Set by the ingest
    #: from the timeline (shared.contract.corrections); every read of composition, state and relations skips it.
    declared_by: int | None = Field(default=None)
    applied_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})


class Amendment(Base, table=True):
    """Amendments of a battery's registry facts, as the registry published them (the history and passport show
    them; `batteries` holds the facts as last amended)."""

    __tablename__ = "amendments"
    __table_args__ = (Index("ix_amendments_battery", "battery_id", "number"), {"schema": SCHEMA})

    id: str = Field(primary_key=True, sa_type=Text)
    battery_id: str = Field(sa_type=Text)
    number: int
    changes: dict[str, Any] = Field(sa_type=JSONB)
    reason: str = Field(sa_type=Text)
    actor: str = Field(sa_type=Text)
    actor_role: str = Field(sa_type=Text)
    amended_at: datetime = Field(sa_type=TZ)


class Handler(Base, table=True):
    """Who has a relation to each battery that lets it read it (shared.access): its manufacturer, every
    custodian, every consignee. Posters are not handlers (ingest.service.handlers_of)."""

    __tablename__ = "handlers"
    __table_args__ = (
        PrimaryKeyConstraint("org", "battery_id", name="pk_handlers"),
        Index("ix_handlers_battery", "battery_id"),
        {"schema": SCHEMA},
    )

    org: str = Field(sa_type=Text)
    battery_id: str = Field(sa_type=Text)


StreamPosition = stream_positions_model(SCHEMA)
AuditLog = audit_log_model(SCHEMA)
