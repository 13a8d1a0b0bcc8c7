"""Audit trail: reads by ministries and operators are recorded and queryable by administrators."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import asyncpg_dsn
from tests.factories import create_models, register


async def test_ministry_and_operator_reads_are_recorded(registry, token, db_url) -> None:
    maker = token("LGES", "manufacturer")
    await create_models(registry, maker, "NCM-PACK-77")
    await register(registry, maker, battery_id="KR-AUD-1")
    ministry = token("MOLIT", "ministry", ministry="MOLIT")
    r = await registry.get("/v1/batteries/KR-AUD-1", headers=ministry | {"X-Purpose": "recall investigation 2026-17"})
    assert r.status_code == 200
    await registry.get("/v1/participants", headers=token("ops", "operator"))
    await registry.get("/v1/batteries/KR-AUD-1", headers=maker)  # a manufacturer's own read: not audited
    await registry.get("/v1/batteries/KR-NOPE", headers=ministry)  # a 404 reveals nothing: not audited
    admin = token("root", "admin")
    log = (await registry.get("/v1/audit", headers=admin)).json()["items"]
    assert [(e["actor"], e["role"], e["path"]) for e in log] == [
        ("ops", "operator", "/v1/participants"),
        ("MOLIT", "ministry", "/v1/batteries/KR-AUD-1"),
    ]
    assert log[1]["purpose"] == "recall investigation 2026-17" and log[1]["ministry"] == "MOLIT"
    assert log[1]["request_id"]
    only = (await registry.get("/v1/audit", params={"actor": "MOLIT"}, headers=admin)).json()["items"]
    assert len(only) == 1


async def test_audit_is_admin_only_and_append_only(registry, token, db_url) -> None:
    assert (await registry.get("/v1/audit", headers=token("MOLIT", "ministry", ministry="MOLIT"))).status_code == 403
    await registry.get("/v1/participants", headers=token("ops", "operator"))
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM registry.audit_log")
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await conn.execute("UPDATE registry.audit_log SET actor = 'nobody'")
    finally:
        await conn.close()
