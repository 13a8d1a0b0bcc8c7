"""The UI's server-side sessions, its CSRF tokens and its response headers.

- A session cookie holds a random key (256 bits); the `ui_sessions` row holds its SHA-256 and the principal.
  Signing out deletes the row: a copied cookie then reads as signed out. Expired rows read as signed out too.
- CSRF: double-submit. Every page sets a random `bt_csrf` cookie (SameSite=Strict) when there is none and
  puts the same value in a hidden field of each POST form; a POST whose field does not equal the cookie is
  403 `csrf`. Signing in sets a fresh one.
- Headers on every UI answer: a CSP that allows only this origin (no inline script or style, no framing),
  `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy: same-origin`."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from fastapi import Request, Response
from sqlalchemy import ColumnElement, and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.portal.ui.models import UISession
from shared.auth import Ministry, Principal, Role
from shared.problems import Forbidden

SESSION_COOKIE, CSRF_COOKIE, CSRF_FIELD = "bt_session", "bt_csrf", "csrf"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
_table = UISession.__table__


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def put(request: Request, kind: str, data: dict[str, Any], ttl_s: int) -> str:
    """A new record; returns the key for the cookie (the table holds only its hash)."""
    return await put_record(_engine(request), kind, data, ttl_s)


async def put_record(engine: AsyncEngine, kind: str, data: dict[str, Any], ttl_s: int) -> str:
    key = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(delete(_table).where(_table.c.expires_at < now))  # expired ones go as new ones come
        await conn.execute(
            insert(_table).values(key_hash=_hash(key), kind=kind, data=data, expires_at=now + timedelta(seconds=ttl_s))
        )
    return key


async def open_session(engine: AsyncEngine, principal: Principal, ttl_s: int) -> str:
    """A signed-in session for `principal`; the key is the session cookie's value."""
    return await put_record(engine, "session", principal_data(principal), ttl_s)


def _usable(key: str | None) -> TypeGuard[str]:
    """A key that may name a record (a longer one is never one we made: not even looked up)."""
    return key is not None and 0 < len(key) <= 128


def _named(key: str, kind: str) -> ColumnElement[bool]:
    return and_(_table.c.key_hash == _hash(key), _table.c.kind == kind)


async def get(request: Request, kind: str, key: str | None) -> dict[str, Any] | None:
    if not _usable(key):
        return None
    async with _engine(request).connect() as conn:
        query = select(_table.c.data).where(_named(key, kind), _table.c.expires_at > datetime.now(UTC))
        row = (await conn.execute(query)).first()
    return dict(row[0]) if row else None


async def take(request: Request, kind: str, key: str | None) -> dict[str, Any] | None:
    """Read and delete in one statement: a single-use record (an OIDC sign-in in flight)."""
    if not _usable(key):
        return None
    async with _engine(request).begin() as conn:
        query = delete(_table).where(_named(key, kind)).returning(_table.c.data, _table.c.expires_at)
        row = (await conn.execute(query)).first()
    if row is None or row[1] <= datetime.now(UTC):
        return None
    return dict(row[0])


async def drop(request: Request, key: str | None) -> None:
    if _usable(key):
        async with _engine(request).begin() as conn:
            await conn.execute(delete(_table).where(_table.c.key_hash == _hash(key)))


def principal_data(p: Principal) -> dict[str, Any]:
    return {"org": p.org, "role": p.role.value, "ministry": p.ministry.value if p.ministry else None, "sub": p.subject}


def principal_of(data: dict[str, Any]) -> Principal | None:
    try:
        ministry = Ministry(data["ministry"]) if data.get("ministry") else None
        return Principal(org=str(data["org"]), role=Role(data["role"]), ministry=ministry, subject=str(data["sub"]))
    except (KeyError, ValueError):
        return None


async def session_principal(request: Request) -> Principal | None:
    """The principal of the session cookie; no row, an expired one or a forged key count as signed out."""
    data = await get(request, "session", request.cookies.get(SESSION_COOKIE))
    return principal_of(data) if data else None


# ---- CSRF ----


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: the cookie's, or a new one that `set_csrf_cookie` will set."""
    existing = getattr(request.state, "csrf_new", None) or request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 128:
        return str(existing)
    request.state.csrf_new = secrets.token_urlsafe(32)
    return str(request.state.csrf_new)


def set_csrf_cookie(request: Request, response: Response, secure: bool, fresh: bool = False) -> None:
    token = secrets.token_urlsafe(32) if fresh else getattr(request.state, "csrf_new", None)
    if token:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/ui")


def check_csrf(request: Request, form: dict[str, str]) -> None:
    cookie, field = request.cookies.get(CSRF_COOKIE, ""), form.get(CSRF_FIELD, "")
    if not cookie or not field or not hmac.compare_digest(cookie.encode(), field.encode()):
        raise Forbidden("This form is out of date or was not sent from this portal; reload and retry.", code="csrf")


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
