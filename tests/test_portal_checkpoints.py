"""The portal shows which ministries cosigned the newest checkpoint (issue 14): the events service publishes
each checkpoint on battery.log.checkpoints.v1 when it signs it and again with every cosignature it accepts;
the portal's consumer keeps a read model of checkpoints and cosigners, answers `GET /v1/log/checkpoints/latest`
(public) and shows a line on the home page. End to end through the real relay, broker and consumer.

What a writer to the topic who wants around it can do, and what the portal does: a note that does not
verify, a checkpoint under another log key, a second root for a tree size (a fork), a cosigner the note
carries no signature of, bytes that are no CloudEvent: each is dead-lettered and the read model is unchanged;
an older message delivered again neither removes a cosigner nor hides the newest checkpoint."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from services.events.log.repository import StoredCheckpoint
from services.events.log.service import checkpoint_message
from services.portal.rebuild import rebuild
from services.portal.settings import PortalSettings
from shared.contract import tlog
from shared.contract.streams import TOPIC_LOG_CHECKPOINTS
from shared.db import asyncpg_dsn
from tests.conftest import eventually, read_topic
from tests.events_helpers import stack
from tests.portal_helpers import portal_app, portal_settings, publish_raw

WITNESS = tlog.Signer.generate("molit.go.kr/witness")
KATS_WITNESS = tlog.Signer.generate("kats.go.kr/witness")
FAST = {"log_checkpoint_interval_s": 0.2, "log_sequencer_interval_s": 0.02}


async def ledger_size(db_url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events.ledger"))
    finally:
        await conn.close()


async def latest(portal: httpx.AsyncClient) -> dict[str, Any] | None:
    r = await portal.get("/v1/log/checkpoints/latest")
    if r.status_code == 404:
        assert r.json()["code"] == "no-checkpoint"
        return None
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def home_line(portal: httpx.AsyncClient) -> str:
    r = await portal.get("/ui/", params={"lang": "en"})
    assert r.status_code == 200
    marker = 'data-testid="log-cosigners">'
    return r.text.split(marker, 1)[1].split("</p>", 1)[0].strip() if marker in r.text else ""


async def cosign(events: httpx.AsyncClient, signer: tlog.Signer, headers: dict[str, str]) -> dict[str, Any]:
    """What `batterytrace log witness` posts: the witness's signature line over the newest checkpoint."""
    note = tlog.Note.parse((await events.get("/v1/log/checkpoint")).text)
    size = tlog.Checkpoint.parse(note.text).size
    r = await events.post(
        "/v1/log/cosignatures", json={"tree_size": size, "signature": signer.sign(note.text)}, headers=headers
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_the_portal_shows_which_ministries_cosigned_the_newest_checkpoint(
    make_settings: Callable[..., Any], token: Any, db_url: str, topic_prefix: str, infra: Any
) -> None:
    witnesses = [WITNESS.verifier().encode(), KATS_WITNESS.verifier().encode()]
    async with stack(make_settings, token, relay_enabled=True, log_witness_keys=witnesses, **FAST) as s:
        settings = portal_settings(make_settings)
        async with portal_app(settings) as portal:
            assert await latest(portal) is None and await home_line(portal) == ""
            battery = await s.battery()
            await s.ok(battery, "INCIDENT", "manufacturer", data={"kind": "swelling", "severity": "low"})
            size = await ledger_size(db_url)
            log_key = tlog.Verifier.decode((await s.events.get("/v1/log/key")).text)

            async def reached(n: int, cosigners: int = 0) -> dict[str, Any] | None:
                cp = await latest(portal)
                return cp if cp and cp["tree_size"] >= n and len(cp["cosigned_by"]) >= cosigners else None

            cp = await eventually(lambda: reached(size), timeout_s=30)
            assert cp["cosigned_by"] == [] and cp["ministries"] == []
            assert cp["log_key"] == log_key.encode() and cp["origin"] == log_key.name
            checkpoint, _, _ = tlog.open_checkpoint(cp["note"], log_key)
            assert (checkpoint.size, checkpoint.root_hash.hex()) == (cp["tree_size"], cp["root_hash"])
            assert f"tree size {cp['tree_size']}" in await home_line(portal)
            assert "no ministry" in await home_line(portal)

            molit = token("MOLIT", "ministry", "MOLIT")
            assert (await cosign(s.events, WITNESS, molit))["cosigned_by"] == ["molit.go.kr/witness"]
            cp = await eventually(lambda: reached(size, 1), timeout_s=30)
            assert cp["cosigned_by"] == [{"witness": "molit.go.kr/witness", "ministry": "MOLIT"}]
            assert cp["ministries"] == ["MOLIT"]
            # The note the portal holds carries the witness's signature: anyone can check it.
            _, _, cosigned = tlog.open_checkpoint(cp["note"], log_key, [WITNESS.verifier()])
            assert cosigned == ["molit.go.kr/witness"]
            assert "MOLIT (transport)" in await home_line(portal)
            await cosign(s.events, KATS_WITNESS, token("KATS", "ministry", "KATS"))
            cp = await eventually(lambda: reached(size, 2), timeout_s=30)
            assert cp["ministries"] == ["KATS", "MOLIT"]
            assert "KATS" in await home_line(portal) and "MOLIT" in await home_line(portal)
            # The topic carries the checkpoint and each cosignature update, in order, as the contract says.
            topic = topic_prefix + TOPIC_LOG_CHECKPOINTS
            messages = await read_topic(infra.kafka.bootstrap, topic, at_least=3)
            ours = [m["value"] for m in messages if m["value"]["data"]["tree_size"] == cp["tree_size"]]
            assert [m["id"] for m in ours] == [f"{cp['tree_size']}:{n}" for n in range(3)]
            assert [m["data"]["cosigned_by"] for m in ours] == [
                [],
                ["molit.go.kr/witness"],
                ["kats.go.kr/witness", "molit.go.kr/witness"],
            ]
            # A read model like the others: `portal rebuild` projects it again from the topic.
            await rebuild(settings)
            again = await latest(portal)
            assert again is not None
            assert {k: v for k, v in again.items() if k != "received_at"} == {
                k: v for k, v in cp.items() if k != "received_at"
            }


def published(signer: tlog.Signer, size: int, root: bytes, cosigners: list[tlog.Signer] = ()) -> bytes:  # type: ignore[assignment]
    """A checkpoint message as the events service writes it, signed by `signer`, cosigned by `cosigners`."""
    note = tlog.sign_note(tlog.Checkpoint(signer.name, size, root).body(), [signer])
    cp = StoredCheckpoint(size, root, note.encode(), signer.verifier().encode())
    lines = [(w.name, w.sign(note.text)) for w in cosigners]
    return orjson.dumps(checkpoint_message(cp, lines).payload)


def tampered(raw: bytes, **data: Any) -> bytes:
    message = orjson.loads(raw)
    message["data"] |= data
    message["id"] += "-tampered"
    return orjson.dumps(message)


async def test_what_a_writer_to_the_topic_sends_around_the_rules_is_dead_lettered(
    make_settings: Callable[..., Any], topic_prefix: str, infra: Any
) -> None:
    log = tlog.Signer.generate("batterytrace.kr/log")
    impostor = tlog.Signer.generate("batterytrace.kr/log")  # the same name, another key
    topic = topic_prefix + TOPIC_LOG_CHECKPOINTS
    root, other_root = os.urandom(32), os.urandom(32)
    async with portal_app(portal_settings(make_settings)) as portal:  # no log key configured: the first one is kept

        async def send(*values: bytes) -> None:
            await publish_raw(infra.kafka.bootstrap, topic, [("batterytrace.kr/log", v) for v in values])

        await send(published(log, 5, root))
        await eventually(lambda: latest(portal), timeout_s=30)
        genuine = await latest(portal)
        assert genuine is not None and genuine["tree_size"] == 5
        await send(
            published(log, 5, other_root),  # a fork: another root for tree size 5, signed by the log key
            published(impostor, 99, os.urandom(32)),  # a bigger tree under another key
            tampered(published(log, 6, root), root_hash=other_root.hex()),  # the note says another root
            tampered(published(log, 7, root), cosigned_by=["mcee.go.kr/witness"]),  # a cosigner that never signed
            b"not a cloud event",
        )
        await eventually(lambda: _dead_letters(portal, 5), timeout_s=30)
        assert await latest(portal) == genuine  # none of them changed anything
        # A cosignature update, then the first message again (a redelivery) and an older checkpoint.
        await send(published(log, 5, root, [WITNESS]), published(log, 5, root), published(log, 3, os.urandom(32)))

        async def cosigned() -> dict[str, Any] | None:
            cp = await latest(portal)
            return cp if cp and cp["cosigned_by"] else None

        await eventually(cosigned, timeout_s=30)
        await eventually(lambda: _applied(portal, 4), timeout_s=30)  # the first, and the three after
        cp = await latest(portal)
        assert cp is not None
        assert (cp["tree_size"], cp["root_hash"], cp["log_key"]) == (5, root.hex(), log.verifier().encode())
        assert cp["ministries"] == ["MOLIT"]
        assert len(tlog.Note.parse(cp["note"]).signatures) == 2  # the note with the witness's signature kept


def _status(portal: httpx.AsyncClient) -> dict[str, Any]:
    status: dict[str, Any] = portal.app.state.consumers["portal.log"].status()  # type: ignore[attr-defined]
    return status


async def _dead_letters(portal: httpx.AsyncClient, n: int) -> bool:
    return bool(_status(portal)["dead_lettered"] == n)


async def _applied(portal: httpx.AsyncClient, n: int) -> bool:
    return bool(_status(portal)["applied"] >= n)


@pytest.mark.parametrize("configured", [True, False])
async def test_a_configured_log_key_refuses_even_the_first_checkpoint_of_another_key(
    make_settings: Callable[..., Any], topic_prefix: str, infra: Any, configured: bool
) -> None:
    log, impostor = tlog.Signer.generate("batterytrace.kr/log"), tlog.Signer.generate("batterytrace.kr/log")
    settings: PortalSettings = portal_settings(make_settings, log_key=log.verifier().encode() if configured else None)
    topic = topic_prefix + TOPIC_LOG_CHECKPOINTS
    async with portal_app(settings) as portal:
        await publish_raw(
            infra.kafka.bootstrap,
            topic,
            [("k", published(impostor, 9, os.urandom(32))), ("k", published(log, 4, os.urandom(32)))],
        )
        if configured:  # the impostor is refused, the log's own checkpoint shown
            cp = await eventually(lambda: latest(portal), timeout_s=30)
            assert cp["tree_size"] == 4
            await eventually(lambda: _dead_letters(portal, 1), timeout_s=30)
        else:  # trust on first use: the first key received is kept (deploy sets the key)
            cp = await eventually(lambda: latest(portal), timeout_s=30)
            await eventually(lambda: _dead_letters(portal, 1), timeout_s=30)
            assert (await latest(portal))["tree_size"] == 9  # type: ignore[index]


@pytest.mark.parametrize(
    ("witness", "ministry"),
    [
        ("molit.go.kr/witness", "MOLIT"),
        ("MOTIE.go.kr/witness-2", "MOTIE"),
        ("kats.go.kr", "KATS"),
        ("mcee.go.kr/w", "MCEE"),
        ("molit.attacker.example/witness", None),  # not the ministry's domain
        ("molit.go.kr.attacker.example/witness", None),
        ("university.ac.kr/witness", None),
        ("go.kr/witness", None),
    ],
)
def test_a_witness_stands_for_the_ministry_its_go_kr_name_says(witness: str, ministry: str | None) -> None:
    from services.portal.log.projection import ministry_of

    found = ministry_of(witness)
    assert (found.value if found else None) == ministry
