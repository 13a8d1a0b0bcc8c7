"""The registry's tables (schema `registry`). Alembic creates them; nothing else does."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import metadata as make_metadata
from shared.outbox import outbox_table

SCHEMA = "registry"
metadata = make_metadata(SCHEMA)

participants = Table(
    "participants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("ministry", Text),
    Column("region", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_participants_role", "role", "id"),
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
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('cell','module','pack')", name="kind"),
)

batteries = Table(
    "batteries",
    metadata,
    Column("id", Text, primary_key=True),
    Column("model_id", Text, ForeignKey("battery_models.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("chemistry", Text, nullable=False),
    Column("manufacturer", Text, nullable=False),
    Column("serial_number", Text, nullable=False),
    Column("manufactured_at", DateTime(timezone=True), nullable=False),
    Column("manufacturing_site", Text, nullable=False),
    Column("materials_kg", JSONB, nullable=False),
    Column("recycled_content_pct", JSONB, nullable=False),
    Column("carbon_footprint_kg_co2e_per_kwh", Float),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_batteries_manufacturer", "manufacturer", "id"),
    Index("ix_batteries_kind", "kind", "id"),
    Index("ix_batteries_chemistry", "chemistry", "id"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("value", Text, primary_key=True),
    Column("scheme", Text, nullable=False),
    Column("battery_id", Text, ForeignKey("batteries.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_aliases_battery", "battery_id"),
)

outbox = outbox_table(metadata)
