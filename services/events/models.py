"""The events service's tables that belong to no one domain (schema `events`): the outbox, the stream
positions its consumers applied, the audit log."""

from __future__ import annotations

from shared.audit import audit_log_model
from shared.outbox import outbox_model, stream_positions_model

SCHEMA = "events"

Outbox = outbox_model(SCHEMA)
StreamPosition = stream_positions_model(SCHEMA)
AuditLog = audit_log_model(SCHEMA)
