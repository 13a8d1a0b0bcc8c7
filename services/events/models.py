"""The events service's tables that belong to no one domain (schema `events`): the outbox, the stream
positions its consumers applied, the audit log."""

from __future__ import annotations

from shared.audit import AuditLogFields, audit_log_table_args
from shared.db import Base
from shared.outbox import OutboxFields, StreamPositionFields, outbox_table_args

SCHEMA = "events"


class Outbox(OutboxFields, Base, table=True):
    __tablename__ = "outbox"
    __table_args__ = outbox_table_args(SCHEMA)


class StreamPosition(StreamPositionFields, Base, table=True):
    __tablename__ = "stream_positions"
    __table_args__ = {"schema": SCHEMA}


class AuditLog(AuditLogFields, Base, table=True):
    __tablename__ = "audit_log"
    __table_args__ = audit_log_table_args(SCHEMA)
