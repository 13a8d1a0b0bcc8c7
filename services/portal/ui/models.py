"""The UI's server-side sessions (schema `portal`): one row per signed-in browser, and one per sign-in at the
OIDC provider not yet come back. The cookie holds only a random key; the row holds its SHA-256, so a copy of
the table signs nobody in, and signing out deletes the row, so a copied cookie stops working."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from services.portal.models import SCHEMA
from shared.db import TZ, Base


class UISession(Base, table=True):
    __tablename__ = "ui_sessions"
    __table_args__ = (Index("ix_ui_sessions_expires_at", "expires_at"), {"schema": SCHEMA})

    key_hash: str = Field(primary_key=True, sa_type=Text)
    #: `session` (a signed-in browser) or `oidc` (a sign-in at the provider: state, nonce, PKCE verifier).
    kind: str = Field(sa_type=Text)
    data: dict[str, Any] = Field(sa_type=JSONB)
    expires_at: datetime = Field(sa_type=TZ)
