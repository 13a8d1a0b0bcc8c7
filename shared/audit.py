"""Audit trail: every successful read by a ministry or operator is recorded before the answer leaves
(who, what, when, and the legitimate purpose if the caller gave one in `X-Purpose`). If the record
cannot be written the read fails (503): no unrecorded access. Append-only (a database trigger)."""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import BigInteger, Index, Table, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal, Role, require_role
from shared.db import TZ, Base, names, pooled, qualified, shared_model, shared_table
from shared.logs import request_id_var
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import PROBLEM_RESPONSES, Unavailable, send_problem
from shared.validation import IsoDatetime

log = logging.getLogger("batterytrace.audit")
AUDITED_ROLES = {Role.ministry, Role.operator}
SKIP_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc")
PURPOSE_HEADERS = (b"x-purpose", b"legitimate-purpose")


class AuditLogFields(SQLModel):
    """Columns of a service's `audit_log` table; each service declares its own table from these, with
    `audit_log_model(schema)`. Append-only: a trigger in the migration refuses UPDATE and DELETE."""

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True})
    at: datetime = Field(sa_type=TZ, sa_column_kwargs={"server_default": func.now()})
    actor: str = Field(sa_type=Text)
    role: str = Field(sa_type=Text)
    ministry: str | None = Field(default=None, sa_type=Text)
    method: str = Field(sa_type=Text)
    path: str = Field(sa_type=Text)
    query: str = Field(sa_type=Text)
    status: int
    purpose: str | None = Field(default=None, sa_type=Text)
    request_id: str | None = Field(default=None, sa_type=Text)
    details: dict[str, Any] | None = Field(default=None, sa_type=JSONB)


def audit_log_model(schema: str) -> type[Base]:
    """A service's `audit_log` table, in its schema."""
    indexes = (Index("ix_audit_log_actor", "actor", "at"), Index("ix_audit_log_at", "at"))
    return shared_model(AuditLogFields, "audit_log", schema, *indexes)


def _audit_log(schema: str) -> Table:
    return shared_table(AuditLogFields, "audit_log", schema)


#: What the middleware writes for one read (the rest are server defaults or unused).
_RECORDED = ("actor", "role", "ministry", "method", "path", "query", "status", "purpose", "request_id")


@functools.cache
def _record_sql(schema: str) -> str:
    """The INSERT of one record, for the statement pool (asyncpg), built once per schema."""
    table = _audit_log(schema)
    columns = [table.c[n] for n in _RECORDED]
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {qualified(table)} ({names(columns)}) VALUES ({values})"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, schema: str) -> None:
        self.app = app
        self.schema = schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("GET", "HEAD")
            or scope["path"].startswith(SKIP_PATHS)
        ):
            await self.app(scope, receive, send)
            return

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                principal = scope.get("state", {}).get("principal")
                if isinstance(principal, Principal) and principal.role in AUDITED_ROLES:
                    try:
                        await self._record(scope, principal, int(message["status"]))
                    except Exception:
                        log.exception("audit record could not be written; refusing the read")
                        await send_problem(
                            send,
                            Unavailable("The access could not be recorded; retry shortly.", code="audit-unavailable"),
                            scope,
                        )
                        raise _Refused from None
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except _Refused:
            return

    async def _record(self, scope: Scope, principal: Principal, status: int) -> None:
        app = scope["app"]
        purpose = None
        for k, v in scope.get("headers", ()):
            if k in PURPOSE_HEADERS:
                purpose = v.decode("utf-8", errors="replace")[:500]
        # One autocommit statement on the statement pool: durable when it returns, before the answer leaves.
        async with pooled(app.state.statement_pool) as conn:
            await conn.execute(
                _record_sql(self.schema),
                principal.org,
                principal.role.value,
                principal.ministry.value if principal.ministry else None,
                scope["method"],
                scope["path"],
                scope.get("query_string", b"").decode("latin-1"),
                status,
                purpose,
                request_id_var.get(),
            )


class _Refused(Exception):
    pass


Admin = Annotated[Principal, Depends(require_role(Role.admin))]


def audit_router() -> APIRouter:
    router = APIRouter(tags=["audit"], responses=PROBLEM_RESPONSES)

    @router.get("/v1/audit", summary="Audit trail of reads by ministries and operators (administrators)")
    async def list_audit(
        request: Request,
        _: Admin,
        actor: str | None = None,
        since: IsoDatetime | None = Query(None, description="ISO time with offset; records at or after it."),
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        t = _audit_log(request.app.state.schema)
        listed = [c for c in t.c if c.name != "details"]
        q = select(*listed).order_by(t.c.id.desc()).limit(limit + 1)
        if actor:
            q = q.where(t.c.actor == actor)
        if since:
            q = q.where(t.c.at >= since)
        after = decode_cursor(cursor, int)
        if after:
            q = q.where(t.c.id < after)
        async with request.app.state.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        items = [{str(k): v for k, v in r.items()} for r in rows[:limit]]
        return {"items": items, "next_cursor": encode_cursor(items[-1]["id"]) if len(rows) > limit else None}

    return router
