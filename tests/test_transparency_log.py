"""The transparency log end to end: every ledger event becomes a leaf, checkpoints are signed, proofs verify with
the RFC 9162 algorithms, a witness (the real `batterytrace log witness` command, against the service over HTTP)
cosigns, `batterytrace verify` checks a bundle offline — and the tampering a database owner can do is detected:
a consistently rewritten history (the witness refuses the fork; the old bundle fails against the new checkpoint),
a deleted row, a truncated table, and a restored older backup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import uvicorn

from devtools.embedded import free_port
from services.events.app import create_app as create_events
from services.events.log.tree import storable
from services.events.settings import EventsSettings
from shared.contract import tlog
from shared.contract.lifecycle import event_hash
from shared.contract.proofs import verify_bundle
from shared.db import asyncpg_dsn
from shared.roles import OWNER, role_url, service_url
from tests.conftest import eventually, serve
from tests.events_helpers import Stack, stack

CLI = str(Path(sys.executable).parent / "batterytrace")
WITNESS = tlog.Signer.generate("molit.go.kr/witness")
FAST = {"log_checkpoint_interval_s": 0.2, "log_sequencer_interval_s": 0.02}


@contextlib.asynccontextmanager
async def http_server(app: Any) -> AsyncIterator[str]:
    """The app (its lifespan already running) on a real 127.0.0.1 port, for the command-line tools."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout_s=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def ledger_size(db_url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events.ledger"))
    finally:
        await conn.close()


async def checkpoint_at_least(events: httpx.AsyncClient, size: int) -> tlog.Checkpoint:
    key = tlog.Verifier.decode((await events.get("/v1/log/key")).text)

    async def check() -> tlog.Checkpoint | None:
        r = await events.get("/v1/log/checkpoint")
        if r.status_code != 200:
            return None
        cp, _, _ = tlog.open_checkpoint(r.text, key)
        return cp if cp.size >= size else None

    found: tlog.Checkpoint = await eventually(check, timeout_s=20)
    return found


async def incidents(s: Stack, battery_id: str, n: int) -> None:
    for _ in range(n):
        await s.ok(battery_id, "INCIDENT", "manufacturer", data={"kind": "swelling", "severity": "low"})


@pytest.fixture
def witness_env(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "witness.key"
    key.write_text(WITNESS.encode() + "\n")
    return {"key": key, "state": tmp_path / "witness-state"}


async def test_every_event_is_provably_in_the_signed_log(make_settings, token, db_url) -> None:
    async with stack(make_settings, token, **FAST) as s:
        batteries = [await s.battery() for _ in range(3)]
        for i, b in enumerate(batteries):
            await incidents(s, b, i + 2)
        total = await ledger_size(db_url)
        cp = await checkpoint_at_least(s.events, total)
        key_text = (await s.events.get("/v1/log/key")).text.strip()
        assert key_text.startswith("batterytrace.kr/log+")
        for b in batteries:
            timeline = (await s.events.get(f"/v1/batteries/{b}/events", headers=s.as_role("manufacturer"))).json()
            for e in timeline["items"]:
                r = await s.events.get(
                    "/v1/log/proof/inclusion",
                    params={"battery_id": b, "sequence": e["sequence"], "tree_size": cp.size},
                )
                assert r.status_code == 200, r.text
                proof = r.json()
                tlog.verify_inclusion(
                    tlog.leaf_hash(bytes.fromhex(e["hash"])),
                    proof["leaf_index"],
                    cp.size,
                    tlog.unhex(proof["audit_path"]),
                    cp.root_hash,
                )
        await incidents(s, batteries[0], 3)
        later = await checkpoint_at_least(s.events, total + 3)
        r = await s.events.get("/v1/log/proof/consistency", params={"first": cp.size, "second": later.size})
        tlog.verify_consistency(cp.size, later.size, tlog.unhex(r.json()["proof"]), cp.root_hash, later.root_hash)
        # Edge cases answer as problems, not 500s.
        bad = await s.events.get("/v1/log/proof/consistency", params={"first": later.size + 5, "second": later.size})
        assert bad.status_code == 422
        beyond = await s.events.get(
            "/v1/log/proof/inclusion", params={"battery_id": batteries[0], "sequence": 1, "tree_size": 10**9}
        )
        assert beyond.status_code == 422 and beyond.json()["errors"][0]["field"] == "tree_size"
        missing = await s.events.get("/v1/log/proof/inclusion", params={"battery_id": "NOPE", "sequence": 1})
        assert missing.status_code == 404 and missing.json()["code"] == "not-in-log"


async def test_witness_cosigns_and_a_bundle_verifies_offline(
    make_settings, token, db_url, witness_env, tmp_path
) -> None:
    overrides = FAST | {"log_witness_keys": [WITNESS.verifier().encode()]}
    async with stack(make_settings, token, **overrides) as s:
        b = await s.battery()
        await incidents(s, b, 4)
        await checkpoint_at_least(s.events, await ledger_size(db_url))
        async with http_server(s.events.app) as url:  # type: ignore[attr-defined]
            ministry = token("MOLIT", "ministry", ministry="MOLIT")["Authorization"].split()[1]
            args = [
                "log",
                "witness",
                "--url",
                url,
                "--key",
                str(witness_env["key"]),
                "--state",
                str(witness_env["state"]),
            ]
            code, out = await cli(*args, env={"BT_TOKEN": ministry})
            assert code == 0, out
            assert "accepted: first checkpoint held" in out and "cosigned checkpoint" in out
            note = (await s.events.get("/v1/log/checkpoint")).text
            log_key = tlog.Verifier.decode((await s.events.get("/v1/log/key")).text)
            _, _, cosigned = tlog.open_checkpoint(note, log_key, [WITNESS.verifier()])
            assert cosigned == [WITNESS.name]
            # A cosignature by a key the log does not know, and one by a non-authority, are refused.
            stranger = tlog.Signer.generate("stranger.example/witness")
            cp = tlog.Checkpoint.parse(tlog.Note.parse(note).text)
            r = await s.events.post(
                "/v1/log/cosignatures",
                json={"tree_size": cp.size, "signature": stranger.sign(tlog.Note.parse(note).text)},
                headers=s.as_role("ministry"),
            )
            assert r.status_code == 403 and r.json()["code"] == "unknown-witness"
            r = await s.events.post(
                "/v1/log/cosignatures",
                json={"tree_size": cp.size, "signature": WITNESS.sign(tlog.Note.parse(note).text)},
                headers=s.as_role("recycler"),
            )
            assert r.status_code == 403

            await incidents(s, b, 2)
            await checkpoint_at_least(s.events, await ledger_size(db_url))
            code, out = await cli(*args, env={"BT_TOKEN": ministry})
            assert code == 0 and "consistent:" in out, out

            bundle = (await s.events.get(f"/v1/batteries/{b}/proof-bundle", headers=s.as_role("manufacturer"))).json()
            assert verify_bundle(bundle, log_key, [WITNESS.verifier()]).valid
            path = tmp_path / "bundle.json"
            path.write_bytes(orjson.dumps(bundle))
            code, out = await cli("verify", str(path), "--log-key", log_key.encode(), "--lang", "en")
            assert code == 0 and "VERIFIED" in out, out
            code, out = await cli("verify", str(path), "--log-key", log_key.encode())
            assert code == 0 and "검증됨" in out, out
            assert (await s.events.get(f"/v1/batteries/{b}/proof-bundle")).status_code == 401
            assert (
                await s.events.get(f"/v1/batteries/{b}/proof-bundle", headers=s.as_role("recycler"))
            ).status_code == 403


async def _rewrite_history(db_url: str, battery_id: str, signer: tlog.Signer) -> None:
    """What a database owner holding the log key could do: change one battery's event, recompute its chain and
    state, rebuild the whole Merkle tree over the changed leaves and sign a new checkpoint of the same size."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("SET session_replication_role = replica")  # triggers off: the owner's privilege
        async with conn.transaction():
            rows = await conn.fetch("SELECT * FROM events.ledger WHERE battery_id = $1 ORDER BY sequence", battery_id)
            prev = rows[0]["hash"]
            for r in rows[1:]:
                e = dict(r)
                e["data"] = {"kind": "fire", "severity": "critical"} if r["sequence"] == 2 else orjson.loads(r["data"])
                e["location"] = orjson.loads(r["location"])
                e["prev_hash"] = prev
                e["hash"] = prev = event_hash(prev, e)
                await conn.execute(
                    "UPDATE events.ledger SET data = $1::jsonb, prev_hash = $2, hash = $3 "
                    "WHERE battery_id = $4 AND sequence = $5",
                    orjson.dumps(e["data"]).decode(),
                    e["prev_hash"],
                    e["hash"],
                    battery_id,
                    r["sequence"],
                )
                await conn.execute(
                    "UPDATE events.log_leaves SET leaf_hash = $1 WHERE battery_id = $2 AND sequence = $3",
                    tlog.leaf_hash(bytes.fromhex(e["hash"])),
                    battery_id,
                    r["sequence"],
                )
            await conn.execute("UPDATE events.battery_state SET last_hash = $1 WHERE battery_id = $2", prev, battery_id)
            leaves = [
                bytes(x["leaf_hash"])
                for x in await conn.fetch("SELECT leaf_hash FROM events.log_leaves ORDER BY leaf_index")
            ]
            nodes = storable(tlog.compact_nodes(0, leaves, tlog.getter({})))  # as the sequencer stores them
            await conn.execute("DELETE FROM events.log_nodes")
            await conn.executemany(
                "INSERT INTO events.log_nodes (level, idx, hash) VALUES ($1, $2, $3)",
                [(lv, i, h) for (lv, i), h in nodes.items()],
            )
            size = len(leaves)
            root = tlog.root_from_leaves(leaves)
            note = tlog.sign_note(tlog.Checkpoint(signer.name, size, root).body(), [signer]).encode()
            await conn.execute("DELETE FROM events.log_cosignatures")
            await conn.execute("DELETE FROM events.log_checkpoints")
            await conn.execute(
                "INSERT INTO events.log_checkpoints (tree_size, root_hash, note, log_key) VALUES ($1, $2, $3, $4)",
                size,
                root,
                note,
                signer.verifier().encode(),
            )
    finally:
        await conn.close()


async def test_a_consistently_rewritten_history_is_detected(make_settings, token, db_url, witness_env) -> None:
    overrides = FAST | {"log_witness_keys": [WITNESS.verifier().encode()]}
    async with stack(make_settings, token, **overrides) as s:
        b = await s.battery()
        other = await s.battery()
        await incidents(s, b, 3)
        await incidents(s, other, 2)
        await checkpoint_at_least(s.events, await ledger_size(db_url))
        log_key = tlog.Verifier.decode((await s.events.get("/v1/log/key")).text)
        old_bundle = (await s.events.get(f"/v1/batteries/{b}/proof-bundle", headers=s.as_role("manufacturer"))).json()
        assert verify_bundle(old_bundle, log_key).valid
        async with http_server(s.events.app) as url:  # type: ignore[attr-defined]
            args = [
                "log",
                "witness",
                "--url",
                url,
                "--key",
                str(witness_env["key"]),
                "--state",
                str(witness_env["state"]),
            ]
            code, out = await cli(*args)
            assert code == 0, out
            await s.events.app.state.log_worker.stop()  # type: ignore[attr-defined]  # the owner stops the service
            await _rewrite_history(db_url, b, s.events.app.state.log_signer)  # type: ignore[attr-defined]

            # The rewrite is internally consistent: the chain verifies, the server's new bundle verifies...
            assert (await s.events.get(f"/v1/batteries/{b}/verify")).json()["valid"]
            new_bundle = (
                await s.events.get(f"/v1/batteries/{b}/proof-bundle", headers=s.as_role("manufacturer"))
            ).json()
            assert verify_bundle(new_bundle, log_key).valid
            # ...but the witness holds the old checkpoint and refuses the fork, keeping both as evidence,
            code, out = await cli(*args)
            assert code == 2 and "REFUSED" in out and "rewritten" in out, out
            evidence = [p for p in witness_env["state"].iterdir() if p.name.startswith("evidence-")]
            assert len(evidence) == 1 and {f.name for f in evidence[0].iterdir()} == {
                "held-checkpoint",
                "offered-checkpoint",
            }
            # and the bundle a user kept from before no longer verifies against the new checkpoint.
            stale = old_bundle | {"checkpoint": new_bundle["checkpoint"]}
            verdict = verify_bundle(stale, log_key)
            assert not verdict.valid and any("not included" in p for p in verdict.problems)


async def test_a_deleted_row_and_a_truncated_ledger_are_detected(make_settings, token, db_url) -> None:
    async with stack(make_settings, token, **FAST) as s:
        b, c = await s.battery(), await s.battery()
        await incidents(s, b, 3)
        await incidents(s, c, 2)
        await checkpoint_at_least(s.events, await ledger_size(db_url))
        log_key = tlog.Verifier.decode((await s.events.get("/v1/log/key")).text)
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            # The triggers refuse it to anyone who has not switched them off...
            for sql in (
                "DELETE FROM events.ledger",
                "TRUNCATE events.ledger",
                "TRUNCATE events.log_leaves",
                "UPDATE events.log_leaves SET leaf_hash = leaf_hash",
                "TRUNCATE events.log_nodes",  # a log this small has no stored node (they start at level 4)
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(sql)
            # ...so the owner switches them off, deletes b's last event, then empties the ledger.
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("DELETE FROM events.ledger WHERE battery_id = $1 AND sequence = 4", b)
            audit = (await s.events.get(f"/v1/batteries/{b}/proof-bundle", headers=s.as_role("manufacturer"))).json()
            assert audit["log_audit"]["problems"] == ["the log holds event 4, which the ledger no longer has"]
            assert not verify_bundle(audit, log_key).valid
            await conn.execute("TRUNCATE events.ledger")
        finally:
            await conn.close()
        # With the ledger gone only an authority may still ask (the ledger proves no relation any more).
        bundle = (await s.events.get(f"/v1/batteries/{c}/proof-bundle", headers=s.as_role("ministry"))).json()
        assert bundle["events"] == [] and bundle["log_audit"]["leaves_in_log"] == 3
        assert len(bundle["log_audit"]["problems"]) == 3 and not verify_bundle(bundle, log_key).valid


async def test_an_event_the_log_holds_twice_is_reported(make_settings, token, db_url) -> None:
    """No index makes a leaf unique (a battery's leaves are found by a hash index): the sequencer appends each
    queued statement once, in one SQL statement with its take. A queue row made by hand (the owner's) that repeats
    an event appends it again; the battery's proof bundle then reports the event held twice and does not verify,
    while its events are still each proven."""
    async with stack(make_settings, token, **FAST) as s:
        b = await s.battery()
        await incidents(s, b, 2)
        await checkpoint_at_least(s.events, await ledger_size(db_url))
        log_key = tlog.Verifier.decode((await s.events.get("/v1/log/key")).text)
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            again = await conn.fetchval("SELECT hash FROM events.ledger WHERE battery_id = $1 AND sequence = 2", b)
            await conn.execute(
                "INSERT INTO events.log_pending (events, battery_ids, sequences, hashes) VALUES (1, $1, '{2}', $2)",
                [b],
                [again],
            )
            size = await conn.fetchval("SELECT count(*) FROM events.log_leaves") + 1  # with the repeat
        finally:
            await conn.close()
        await checkpoint_at_least(s.events, size)
        bundle = (await s.events.get(f"/v1/batteries/{b}/proof-bundle", headers=s.as_role("manufacturer"))).json()
        assert bundle["log_audit"]["problems"] == ["the log holds event 2 more than once"]
        assert all("inclusion" in e for e in bundle["events"])
        assert not verify_bundle(bundle, log_key).valid


async def test_backup_restores_every_chain_and_the_log_and_an_older_backup_is_detected(
    make_settings, token, db_url, infra, witness_env, tmp_path
) -> None:
    async with stack(make_settings, token, **FAST) as s:
        batteries = [await s.battery() for _ in range(2)]
        for b in batteries:
            await incidents(s, b, 2)
        cp = await checkpoint_at_least(s.events, await ledger_size(db_url))
        dump = tmp_path / "backup.dump"
        # As the owner role (backup and restore need no superuser), and the restored copy serves as bt_events.
        code, out = await cli("backup", str(dump), "--database-url", role_url(db_url, OWNER))
        assert code == 0 and "backed up" in out, out
        restored = f"r_{os.urandom(6).hex()}"
        await infra.pg.create_database(restored)
        restored_url = infra.pg.owner_url(restored)
        code, out = await cli("restore", str(dump), "--database-url", restored_url)
        assert code == 0, out
        code, out = await cli("restore", str(dump), "--database-url", restored_url)
        assert code != 0 and "fresh database" in out  # never merged into a database that has the schemas

        # The restored copy: every chain verifies, the log's root at the checkpoint is the same.
        settings = make_settings(
            EventsSettings,
            database_url=service_url(restored_url, "events"),
            relay_enabled=False,
            consumers_enabled=False,
            log_enabled=False,
        )
        async with serve(create_events(settings)) as copy:
            for b in batteries:
                assert (await copy.get(f"/v1/batteries/{b}/verify")).json()["valid"]
            note = (await copy.get("/v1/log/checkpoint")).text
            assert tlog.Checkpoint.parse(tlog.Note.parse(note).text) == cp
            r = await copy.get("/v1/log/proof/consistency", params={"first": cp.size, "second": cp.size})
            assert r.status_code == 200 and r.json()["proof"] == []

            # The live log grows; a witness follows it; then the old backup is put back in its place.
            await incidents(s, batteries[0], 3)
            await checkpoint_at_least(s.events, cp.size + 3)
            async with http_server(s.events.app) as live:  # type: ignore[attr-defined]
                args = ["--key", str(witness_env["key"]), "--state", str(witness_env["state"])]
                code, out = await cli("log", "witness", "--url", live, *args)
                assert code == 0, out
            async with http_server(copy.app) as old:  # type: ignore[attr-defined]
                code, out = await cli("log", "witness", "--url", old, *args)
                assert code == 2 and "shrank" in out, out
    await infra.pg.drop_database(restored)


def test_the_log_formats_are_the_contract() -> None:
    """Outside verifiers depend on these exact names (issue: verifiable history)."""
    with tempfile.TemporaryDirectory() as d:
        signer = tlog.Signer.generate("batterytrace.kr/log")
        (Path(d) / "k").write_text(signer.encode())
        assert tlog.Signer.decode((Path(d) / "k").read_text()).verifier() == signer.verifier()
    assert tlog.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
