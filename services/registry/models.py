"""The registry's tables that belong to no one domain (schema `registry`): the outbox and the audit log."""

from __future__ import annotations

from shared.audit import AuditLogFields, audit_log_table_args
from shared.db import Base
from shared.outbox import OutboxFields, outbox_table_args

SCHEMA = "registry"


class Outbox(OutboxFields, Base, table=True):
    __tablename__ = "outbox"
    __table_args__ = outbox_table_args(SCHEMA)


class AuditLog(AuditLogFields, Base, table=True):
    __tablename__ = "audit_log"
    __table_args__ = audit_log_table_args(SCHEMA)
