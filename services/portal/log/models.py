"""The portal's read model of the transparency log (schema `portal`), from `battery.log.checkpoints.v1`: the
checkpoints the events service signed and published, and the witnesses that cosigned each one. Rebuilt by
replaying the topic (every message carries its whole checkpoint note)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, Text, func
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import TZ, Base


class SeenCheckpoint(Base, table=True):
    """A checkpoint as published; `note` is the one with the most signatures seen so far."""

    __tablename__ = "log_checkpoints"
    __table_args__ = {"schema": SCHEMA}

    tree_size: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    root_hash: str = Field(sa_type=Text)  # 64 hex characters
    origin: str = Field(sa_type=Text)
    log_key: str = Field(sa_type=Text)
    note: str = Field(sa_type=Text)
    signatures: int = Field(sa_type=Integer)
    published_at: datetime | None = Field(default=None, sa_type=TZ)
    received_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})


class CheckpointCosigner(Base, table=True):
    """A witness that cosigned a checkpoint, with its signature line as the note carried it."""

    __tablename__ = "log_cosigners"
    __table_args__ = (Index("ix_log_cosigners_witness", "witness"), {"schema": SCHEMA})

    tree_size: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    witness: str = Field(primary_key=True, sa_type=Text)
    signature: str = Field(sa_type=Text)
    received_at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
