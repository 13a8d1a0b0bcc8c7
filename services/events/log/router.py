"""The transparency log over HTTP: checkpoints, the log's key, inclusion and consistency proofs (public), the
witnesses' cosignatures (authorities), and a battery's proof bundle (same access as its timeline)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from services.events.ledger import repository as ledger_repo
from services.events.ledger.service import check_may_read, visible_events
from services.events.lifecycle.service import current_state
from services.events.log import service
from services.events.log.tree import ReadTree
from shared.auth import CurrentPrincipal, Principal, Role, require_role
from shared.contract.lifecycle import LedgerEvent
from shared.db import ReaderDep, SessionDep, raw_connection
from shared.problems import PROBLEM_RESPONSES, NotFound
from shared.responses import DirectJSON
from shared.validation import BatteryId, documented

router = APIRouter(tags=["transparency log"], responses=PROBLEM_RESPONSES)

#: A battery's whole life fits (tens of events); the bound keeps one request's work bounded all the same.
BUNDLE_MAX_EVENTS = 10_000

Witness = Annotated[Principal, Depends(require_role(Role.ministry, Role.certifier))]

EXAMPLE_NOTE = (
    "batterytrace.kr/log\n1024\nH3Hn0yH8tF3pM0N9cK6bI2ZpD0y3m8wqvJbS4fC1p8s=\n\n"
    "\u2014 batterytrace.kr/log Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
TEXT = {"content": {"text/plain": {"example": EXAMPLE_NOTE}}}


def read_tree(request: Request) -> ReadTree:
    """The app's held top of the tree (`tree.HeldTree`), made on first use: one per app, so an app over another
    database (a restored copy, a test's) never shares one."""
    tree: ReadTree | None = getattr(request.app.state, "log_read_tree", None)
    if tree is None:
        tree = request.app.state.log_read_tree = ReadTree()
    return tree


class InclusionProof(BaseModel):
    leaf_index: int = Field(description="The event's position in the log (0-based, commit order).")
    tree_size: int
    audit_path: list[str] = Field(description="RFC 9162 §2.1.3 inclusion path, hex-encoded hashes.")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    proof: list[str] = Field(description="RFC 9162 §2.1.4 consistency path, hex-encoded hashes.")


class CosignatureIn(BaseModel):
    model_config = documented({"tree_size": 1024, "signature": "\u2014 motie.go.kr/witness AbCd...=\n"}, extra="forbid")
    tree_size: Annotated[int, Field(ge=1, description="The checkpoint the witness signed.")]
    signature: Annotated[
        str, Field(min_length=10, max_length=400, description="The witness's signed-note signature line.")
    ]


class CosignatureOut(BaseModel):
    tree_size: int
    witness: str
    stored: bool = Field(description="False when this witness had cosigned this checkpoint already.")
    cosigned_by: list[str]


@router.get(
    "/v1/log/checkpoint",
    response_class=PlainTextResponse,
    summary="The newest signed checkpoint (C2SP tlog-checkpoint in a signed note), with its cosignatures",
    responses={200: TEXT},
)
async def get_checkpoint(conn: ReaderDep, tree_size: Annotated[int | None, Query(ge=1)] = None) -> PlainTextResponse:
    return PlainTextResponse(await service.checkpoint_note(conn, tree_size))


@router.get(
    "/v1/log/key",
    response_class=PlainTextResponse,
    summary="The log's note verifier key: name+keyhash+base64(0x01 ‖ Ed25519 public key)",
)
async def get_key(request: Request, conn: ReaderDep) -> PlainTextResponse:
    return PlainTextResponse(await service.log_key(conn, getattr(request.app.state, "log_signer", None)) + "\n")


@router.get("/v1/log/proof/inclusion", response_model=InclusionProof, summary="Inclusion proof of one ledger event")
async def get_inclusion(
    request: Request,
    conn: ReaderDep,
    battery_id: BatteryId,
    sequence: Annotated[int, Query(ge=1, le=2**31 - 1)],
    tree_size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """The audit path from the event's leaf (SHA-256(0x00 ‖ its 32-byte ledger hash)) to the root of the tree of
    `tree_size` leaves (default: the newest checkpoint)."""
    return DirectJSON(await service.inclusion(conn, read_tree(request), battery_id, sequence, tree_size))


@router.get("/v1/log/proof/consistency", response_model=ConsistencyProof, summary="Consistency proof of two tree sizes")
async def get_consistency(
    request: Request,
    conn: ReaderDep,
    first: Annotated[int, Query(ge=1, le=2**62)],
    second: Annotated[int, Query(ge=1, le=2**62)],
) -> Response:
    """Proves that the tree of `second` leaves extends the tree of `first` leaves (nothing rewritten)."""
    return DirectJSON(await service.consistency(conn, read_tree(request), first, second))


@router.post(
    "/v1/log/cosignatures",
    response_model=CosignatureOut,
    summary="A witness's cosignature on a checkpoint (authorities; the key must be a configured witness key)",
)
async def post_cosignature(
    body: CosignatureIn, request: Request, session: SessionDep, principal: Witness
) -> dict[str, Any]:
    return await service.add_cosignature(
        session, body.tree_size, body.signature, request.app.state.log_config.witness_keys
    )


@router.get(
    "/v1/batteries/{battery_id}/proof-bundle",
    summary="A battery's events with inclusion proofs against one signed checkpoint: verifiable offline",
)
async def get_proof_bundle(
    battery_id: BatteryId, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Same access as the timeline. Check it with `batterytrace verify BUNDLE --log-key KEY` (no server needed):
    each event's hash from its content, the hash chain, each inclusion proof, the checkpoint's signatures."""
    rows = await ledger_repo.timeline(session, battery_id, 0, BUNDLE_MAX_EVENTS)
    if not rows:
        if await current_state(session, battery_id, request.app.state.registry) is None:
            raise NotFound(f"No battery '{battery_id}' has a ledger here.", code="unknown-battery")
        rows = await ledger_repo.timeline(session, battery_id, 0, BUNDLE_MAX_EVENTS)
    groups = await check_may_read(session, principal, battery_id)
    visible = visible_events(rows, groups)  # a certifier gets its certification events only
    events = [LedgerEvent.model_validate(r).model_dump(mode="json") for r in visible]
    bundle = await service.proof_bundle(
        await raw_connection(session), read_tree(request), battery_id, events, partial=len(visible) < len(rows)
    )
    return DirectJSON(bundle)
