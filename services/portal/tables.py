"""The portal's read models (schema `portal`), built only from the Kafka streams.

Everything here can be rebuilt by replaying `battery.registry.v1` and `battery.lifecycle.v1` from the
start into an empty schema. Alembic creates the tables; nothing else does.

- `applied_events` dedupes deliveries (at-least-once in, exactly-once in effect).
- `participants`, `battery_models`, `batteries`, `aliases` mirror the registry's facts; `batteries` also
  holds the lifecycle head (state, custodian, grade, ...) folded from `events` in sequence order.
- `events` is the timeline; `handlers` says who made or handled which battery (access checks).
- `flow_stats` (event counts and sums by month, region and up to three keys) and `current_counts` (how
  many batteries are in each state now) are pre-aggregated in the consumer's transaction, so the
  ministry views read a few hundred rows whatever the number of events.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import metadata as make_metadata
from shared.outbox import stream_positions_table

SCHEMA = "portal"
metadata = make_metadata(SCHEMA)

#: One row per message applied: (stream, event ID). The registry reuses a battery's MANUFACTURED event
#: ID for its registration message, so the stream is part of the key.
applied_events = Table(
    "applied_events",
    metadata,
    Column("stream", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("stream", "event_id", name="pk_applied_events"),
)

participants = Table(
    "participants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("ministry", Text),
    Column("region", Text),
    Column("created_at", DateTime(timezone=True)),
)

battery_models = Table(
    "battery_models",
    metadata,
    Column("id", Text, primary_key=True),
    Column("manufacturer", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("chemistry", Text, nullable=False),
    Column("rated_capacity_ah", Float, nullable=False),
    Column("nominal_voltage_v", Float, nullable=False),
    Column("rated_energy_kwh", Float, nullable=False),
    Column("mass_kg", Float, nullable=False),
    Column("created_at", DateTime(timezone=True)),
)

#: A battery: registry facts (null until its registration arrives) and the lifecycle head (null until
#: its first lifecycle event arrives). The two streams are independent, so either may come first.
batteries = Table(
    "batteries",
    metadata,
    Column("id", Text, primary_key=True),
    # registry facts
    Column("registered", Boolean, nullable=False, server_default=text("false")),
    Column("model_id", Text),
    Column("kind", Text),
    Column("chemistry", Text),
    Column("manufacturer", Text),
    Column("serial_number", Text),
    Column("manufactured_at", DateTime(timezone=True)),
    Column("manufacturing_site", Text),
    Column("materials_kg", JSONB),
    Column("recycled_content_pct", JSONB),
    Column("carbon_footprint_kg_co2e_per_kwh", Float),
    Column("model", JSONB),
    # lifecycle head, folded from `events` in sequence order
    Column("sequence", Integer, nullable=False, server_default=text("0")),
    Column("state", Text),
    Column("state_since", DateTime(timezone=True)),
    Column("custodian", Text),
    Column("region", Text),
    Column("grade", Text),
    Column("soh_pct", Float),
    Column("cycle_count", Integer),
    Column("parent_id", Text),
    Column("vin", Text),
    Column("life", Integer, nullable=False, server_default=text("0")),
    Column("status", Text, nullable=False, server_default=text("'original'")),
    Column("safety", Text),
    Column("installed_at", DateTime(timezone=True)),
    Column("recycled_month", Date),
    Column("recycled_region", Text),
    Column("contained_counted", Boolean, nullable=False, server_default=text("false")),
    Column("last_event_id", Text),
    Column("last_recorded_at", DateTime(timezone=True)),
    Column("last_applied_at", DateTime(timezone=True)),
    Index("ix_batteries_state", "state", "id"),
    Index("ix_batteries_manufacturer", "manufacturer", "id"),
    Index("ix_batteries_chemistry", "chemistry", "id"),
    Index("ix_batteries_region", "region", "id"),
    Index("ix_batteries_vin", "vin"),
    Index(
        "ix_batteries_backlog",
        "state",
        "state_since",
        postgresql_where=text("state IN ('removed', 'collected')"),
    ),
)

aliases = Table(
    "aliases",
    metadata,
    Column("value", Text, primary_key=True),
    Column("scheme", Text, nullable=False),
    Column("battery_id", Text, nullable=False),
    Index("ix_aliases_battery", "battery_id"),
)

#: The lifecycle timeline, as published. `parent_id` is lifted out of ASSEMBLED/DISASSEMBLED data so the
#: composition at any time is an indexed lookup.
events = Table(
    "events",
    metadata,
    Column("battery_id", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("actor_role", Text, nullable=False),
    Column("location", JSONB, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("state_after", Text, nullable=False),
    Column("custodian_after", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("parent_id", Text),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("battery_id", "sequence", name="pk_events"),
    UniqueConstraint("event_id", name="uq_events_event_id"),
    Index("ix_events_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL")),
)

#: Who made or handled each battery (manufacturer, every actor, every custodian).
handlers = Table(
    "handlers",
    metadata,
    Column("org", Text, nullable=False),
    Column("battery_id", Text, nullable=False),
    PrimaryKeyConstraint("org", "battery_id", name="pk_handlers"),
    Index("ix_handlers_battery", "battery_id"),
)

#: Flows: how many events of a kind happened per month and region, by up to three keys, with summed
#: amounts (kWh, kg, SoH...). '' stands for "not applicable" in keys and region.
flow_stats = Table(
    "flow_stats",
    metadata,
    Column("metric", Text, nullable=False),
    Column("month", Date, nullable=False),
    Column("region", Text, nullable=False),
    Column("k1", Text, nullable=False),
    Column("k2", Text, nullable=False),
    Column("k3", Text, nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("amounts", JSONB, nullable=False),
    PrimaryKeyConstraint("metric", "month", "region", "k1", "k2", "k3", name="pk_flow_stats"),
)

#: Stocks: how many batteries are in each combination of current facts now.
current_counts = Table(
    "current_counts",
    metadata,
    Column("state", Text, nullable=False),
    Column("region", Text, nullable=False),
    Column("manufacturer", Text, nullable=False),
    Column("chemistry", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("safety", Text, nullable=False),
    Column("grade", Text, nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "state", "region", "manufacturer", "chemistry", "kind", "status", "safety", "grade", name="pk_current_counts"
    ),
)

stream_positions = stream_positions_table(metadata)
