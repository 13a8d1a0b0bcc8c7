"""The transparency log's tables (schema `events`): every ledger event is a leaf of one RFC 9162 Merkle tree.
Leaves, nodes and checkpoints are append-only (triggers in the migration refuse UPDATE, DELETE, TRUNCATE)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import BYTEA
from sqlmodel import Field

from services.events.models import SCHEMA
from shared.db import TZ, Base


class LogPending(Base, table=True):
    """Ledger events not yet in the tree: one row per ledger INSERT statement (a statement-level trigger on the
    ledger writes it in the capture's own transaction), its events in (battery_id, sequence) order; the
    sequencer takes rows in ID order and deletes them. A 1,000-event batch is one row here, not 1,000: the
    queue's write, delete and vacuum cost per event fell with it (it was the log's costliest statement)."""

    __tablename__ = "log_pending"
    __table_args__ = {"schema": SCHEMA}

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=False), primary_key=True))
    events: int = Field(sa_type=Integer)
    battery_ids: list[str] = Field(sa_type=ARRAY(Text))
    sequences: list[int] = Field(sa_type=ARRAY(Integer))
    hashes: list[str] = Field(sa_type=ARRAY(Text))


class LogLeaf(Base, table=True):
    """A leaf: the ledger event (battery_id, sequence) as the tree holds it. A battery's leaves are found by a hash
    index on its ID (leaves arrive with their batteries at random: a btree cost a random page per leaf); the
    sequencer appends each queued event once (services/events/log/repository.py TAKE_AND_APPEND)."""

    __tablename__ = "log_leaves"
    __table_args__ = (
        Index("ix_log_leaves_battery", "battery_id", postgresql_using="hash"),
        {"schema": SCHEMA},
    )

    leaf_index: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    battery_id: str = Field(sa_type=Text)
    sequence: int = Field(sa_type=Integer)
    leaf_hash: bytes = Field(sa_type=BYTEA)


class LogNode(Base, table=True):
    """A complete subtree's hash: leaves [idx·2^level, (idx+1)·2^level), level ≥ 1."""

    __tablename__ = "log_nodes"
    __table_args__ = {"schema": SCHEMA}

    level: int = Field(primary_key=True, sa_type=SmallInteger, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    hash: bytes = Field(sa_type=BYTEA)


class LogCheckpoint(Base, table=True):
    __tablename__ = "log_checkpoints"
    __table_args__ = {"schema": SCHEMA}

    tree_size: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    root_hash: bytes = Field(sa_type=BYTEA)
    note: str = Field(sa_type=Text)
    log_key: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})


class LogCosignature(Base, table=True):
    __tablename__ = "log_cosignatures"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tree_size"], [f"{SCHEMA}.log_checkpoints.tree_size"], name="fk_log_cosignatures_tree_size"
        ),
        {"schema": SCHEMA},
    )

    tree_size: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    witness: str = Field(primary_key=True, sa_type=Text)
    signature: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
