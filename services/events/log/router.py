"""The transparency log over HTTP: checkpoints, the log's key, inclusion and consistency proofs (public), the
witnesses' cosignatures (authorities), and a battery's proof bundle (same access as its timeline)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from services.events.ledger import repository as ledger_repo
from services.events.ledger.service import check_may_read, visible_events
from services.events.lifecycle.service import current_state
from services.events.log import service
from services.events.log.tree import ReadTree
from shared.auth import CurrentPrincipal, Principal, Role, require_role
from shared.contract.lifecycle import LedgerEvent
from shared.db import ReaderDep, SessionDep, pooled, raw_connection
from shared.problems import PROBLEM_RESPONSES, NotFound
from shared.responses import DirectJSON
from shared.validation import BATTERY_ID_PATTERN, BatteryId, documented

router = APIRouter(tags=["transparency log"], responses=PROBLEM_RESPONSES)

#: A battery's whole life fits (tens of events); the bound keeps one request's work bounded all the same.
BUNDLE_MAX_EVENTS = 10_000

Witness = Annotated[Principal, Depends(require_role(Role.ministry, Role.certifier))]

EXAMPLE_NOTE = (
    "batterytrace.kr/log\n1024\nH3Hn0yH8tF3pM0N9cK6bI2ZpD0y3m8wqvJbS4fC1p8s=\n\n"
    "\u2014 batterytrace.kr/log Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
TEXT = {"content": {"text/plain": {"example": EXAMPLE_NOTE}}}


#: The largest event sequence and tree size a proof is asked for (the query parameters' bounds).
MAX_SEQUENCE, MAX_TREE_SIZE = 2**31 - 1, 2**62


def read_tree(app: FastAPI) -> ReadTree:
    """The app's held top of the tree (`tree.HeldTree`), made on first use: one per app, so an app over another
    database (a restored copy, a test's) never shares one."""
    tree: ReadTree | None = getattr(app.state, "log_read_tree", None)
    if tree is None:
        tree = app.state.log_read_tree = ReadTree()
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


# ---- the public proofs without FastAPI's per-request machinery ----
#: Query values in the form the declared types take as they are: a battery ID as its pattern says, a number as
#: plain digits without a leading zero (no sign, space, underscore or escape).
_BATTERY_ID = re.compile(BATTERY_ID_PATTERN.removeprefix("^").removesuffix("$").encode())
_NUMBER = re.compile(rb"[1-9][0-9]{0,18}")


def _plain_query(query: bytes, names: dict[bytes, re.Pattern[bytes]]) -> dict[bytes, bytes] | None:
    """The query's parameters when every one is a known name, given once, as `name=value` with a value its
    pattern takes whole (so nothing in it needs unescaping); else None."""
    values: dict[bytes, bytes] = {}
    for part in query.split(b"&"):
        name, eq, value = part.partition(b"=")
        pattern = names.get(name)
        if pattern is None or not eq or name in values or pattern.fullmatch(value) is None:
            return None
        values[name] = value
    return values


class PlainQueryRoute(APIRoute):
    """A public GET whose endpoint reads query parameters only, answered without FastAPI's per-request machinery
    when its query is plain (`plain`): the dependencies solved, each parameter validated by pydantic, two exit
    stacks — about 0.2 ms a request, more than a proof's own work. A query that is not plain (a parameter
    unknown, repeated, escaped, signed, out of range or missing) goes the declared way, so every refusal is
    FastAPI's own RFC 9457 problem, and a plain query's values are those the declared types take from it
    (tests/test_log_plain_query.py sends the same queries both ways). Both ways call the same `answer`; a problem
    it raises is rendered by the app's handlers, as any route's is."""

    names: ClassVar[dict[bytes, re.Pattern[bytes]]]

    def plain(self, query: bytes) -> dict[str, Any] | None:
        raise NotImplementedError

    @staticmethod
    async def answer(app: FastAPI, conn: asyncpg.Connection, params: dict[str, Any]) -> Response:
        raise NotImplementedError

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = self.plain(scope["query_string"]) if scope["method"] == "GET" else None
        if params is None:
            await super().handle(scope, receive, send)
            return
        app = scope["app"]
        async with pooled(app.state.statement_pool) as conn:
            response = await self.answer(app, conn, params)
        await response(scope, receive, send)


class InclusionRoute(PlainQueryRoute):
    names = {b"battery_id": _BATTERY_ID, b"sequence": _NUMBER, b"tree_size": _NUMBER}

    def plain(self, query: bytes) -> dict[str, Any] | None:
        values = _plain_query(query, self.names)
        if values is None or b"battery_id" not in values or b"sequence" not in values:
            return None
        sequence = int(values[b"sequence"])
        tree_size = int(values[b"tree_size"]) if b"tree_size" in values else None
        if sequence > MAX_SEQUENCE or (tree_size or 0) > MAX_TREE_SIZE:
            return None
        return {"battery_id": values[b"battery_id"].decode(), "sequence": sequence, "tree_size": tree_size}

    @staticmethod
    async def answer(app: FastAPI, conn: asyncpg.Connection, params: dict[str, Any]) -> Response:
        return DirectJSON(await service.inclusion(conn, read_tree(app), **params))


class ConsistencyRoute(PlainQueryRoute):
    names = {b"first": _NUMBER, b"second": _NUMBER}

    def plain(self, query: bytes) -> dict[str, Any] | None:
        values = _plain_query(query, self.names)
        if values is None or len(values) != 2:
            return None
        first, second = int(values[b"first"]), int(values[b"second"])
        return {"first": first, "second": second} if max(first, second) <= MAX_TREE_SIZE else None

    @staticmethod
    async def answer(app: FastAPI, conn: asyncpg.Connection, params: dict[str, Any]) -> Response:
        return DirectJSON(await service.consistency(conn, read_tree(app), **params))


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


async def get_inclusion(
    request: Request,
    conn: ReaderDep,
    battery_id: BatteryId,
    sequence: Annotated[int, Query(ge=1, le=MAX_SEQUENCE)],
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_TREE_SIZE)] = None,
) -> Response:
    """The audit path from the event's leaf (SHA-256(0x00 ‖ its 32-byte ledger hash)) to the root of the tree of
    `tree_size` leaves (default: the newest checkpoint)."""
    params = {"battery_id": battery_id, "sequence": sequence, "tree_size": tree_size}
    return await InclusionRoute.answer(request.app, conn, params)


router.add_api_route(
    "/v1/log/proof/inclusion",
    get_inclusion,
    methods=["GET"],
    response_model=InclusionProof,
    summary="Inclusion proof of one ledger event",
    route_class_override=InclusionRoute,
)


async def get_consistency(
    request: Request,
    conn: ReaderDep,
    first: Annotated[int, Query(ge=1, le=MAX_TREE_SIZE)],
    second: Annotated[int, Query(ge=1, le=MAX_TREE_SIZE)],
) -> Response:
    """Proves that the tree of `second` leaves extends the tree of `first` leaves (nothing rewritten)."""
    return await ConsistencyRoute.answer(request.app, conn, {"first": first, "second": second})


router.add_api_route(
    "/v1/log/proof/consistency",
    get_consistency,
    methods=["GET"],
    response_model=ConsistencyProof,
    summary="Consistency proof of two tree sizes",
    route_class_override=ConsistencyRoute,
)


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
        await raw_connection(session), read_tree(request.app), battery_id, events, partial=len(visible) < len(rows)
    )
    return DirectJSON(bundle)
