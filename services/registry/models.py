"""The registry's tables that belong to no one domain (schema `registry`): the outbox and the audit log."""

from __future__ import annotations

from shared.audit import audit_log_model
from shared.outbox import outbox_model

SCHEMA = "registry"

Outbox = outbox_model(SCHEMA)
AuditLog = audit_log_model(SCHEMA)
