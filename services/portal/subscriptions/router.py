"""Named queries and subscriptions of GS1's EPCIS 2.0 REST binding, under `/epcis`: `POST/GET /queries`,
`GET/DELETE /queries/{name}`, `GET /queries/{name}/events` (the query's results, paged as `/events`; upgraded to
a WebSocket with `stream=true` or schedule parameters, it is a subscription for as long as it is open), and the
webhook subscriptions `POST/GET /queries/{name}/subscriptions`, `GET/DELETE /queries/{name}/subscriptions/{id}`.
A named query is its maker's: every other participant gets 404 for it, as for a name that does not exist."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from services.portal.epcis import query
from services.portal.epcis.router import EPCIS_HEADERS, answer
from services.portal.subscriptions import repository as repo
from services.portal.subscriptions import rules, service
from services.portal.subscriptions.delivery import Dispatcher, check_public
from shared.auth import CurrentPrincipal, Principal, identify
from shared.db import SessionDep
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import PROBLEM_RESPONSES, Problem, Unauthorized, problem_response

router = APIRouter(tags=["EPCIS subscriptions"], responses=PROBLEM_RESPONSES)
BASE = "/epcis/queries"
SCHEDULE_PARAMS = tuple(rules.FIELDS)
WS_PARAMS = frozenset({"stream", "reportIfEmpty", "initialRecordTime", *SCHEDULE_PARAMS})


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise service.ValidationException("body", "is not JSON") from None


def _page(request: Request) -> tuple[int, str | None]:
    params = dict(request.query_params)
    unknown = sorted(set(params) - {"perPage", "nextPageToken"})
    if unknown:
        raise query.QueryParameterException(unknown[0], "is not a parameter of this resource")
    per_page = 30
    if "perPage" in params:
        if not params["perPage"].isdigit() or not 1 <= int(params["perPage"]) <= 1000:
            raise query.QueryParameterException("perPage", "must be a whole number from 1 to 1000")
        per_page = int(params["perPage"])
    after = None
    if "nextPageToken" in params:
        try:
            after = str(decode_cursor(params["nextPageToken"], list)[0])
        except (Problem, IndexError, TypeError):
            raise query.QueryParameterException("nextPageToken", "not a token this API returned") from None
    return per_page, after


def _listing(request: Request, items: list[dict[str, Any]], per_page: int, last: str | None) -> JSONResponse:
    headers = dict(EPCIS_HEADERS)
    if len(items) > per_page and last is not None:
        token = encode_cursor([last])
        headers["Link"] = f'<{request.url.path}?{urlencode({"perPage": per_page, "nextPageToken": token})}>; rel="next"'
    return JSONResponse(items[:per_page], headers=headers)


@router.post("/epcis/queries", status_code=201, summary="Create a named query (GS1 QueryDefinition)")
async def create_query(request: Request, session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Body `{"name": ..., "query": {SimpleEventQuery parameters}}`; the parameters are those `GET /events`
    takes and are validated now (400 `QueryParameterException`); a name you have already is 409."""
    name = await service.create_query(session, principal, await _body(request))
    await session.commit()
    headers = {**EPCIS_HEADERS, "Location": f"{BASE}/{quote(name)}"}
    return Response(status_code=201, headers=headers)


@router.get("/epcis/queries", summary="Your named queries")
async def list_queries(request: Request, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    per_page, after = _page(request)
    rows = await repo.queries(session, principal.org, after, per_page + 1)
    items = [{"name": r["name"], "query": r["query"]} for r in rows]
    return _listing(request, items, per_page, rows[per_page - 1]["name"] if len(rows) > per_page else None)


@router.get("/epcis/queries/{name}", summary="One of your named queries")
async def get_query(name: str, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    found = await service.named_query(session, principal, name)
    return JSONResponse({"name": found["name"], "query": found["query"]}, headers=EPCIS_HEADERS)


@router.delete("/epcis/queries/{name}", status_code=204, summary="Delete a named query and its subscriptions")
async def delete_query(name: str, session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Its webhook subscriptions go with it; its WebSocket subscriptions are closed."""
    if not await repo.delete_query(session, principal.org, name):
        raise service.not_found(f"query named '{name[:128]}'")
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/epcis/queries/{name}/events",
    summary="The named query's events (EPCISQueryDocument; a WebSocket subscription when upgraded)",
    response_class=JSONResponse,
)
async def query_events(name: str, request: Request, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    """As `GET /events` with the stored parameters, under the same access rules; `perPage` and
    `nextPageToken` page it (any other parameter is 400: the query is the stored one)."""
    found = await service.named_query(session, principal, name)
    extra = [(k, v) for k, v in request.query_params.multi_items() if k not in ("perPage", "nextPageToken")]
    if extra:
        raise query.QueryParameterException(extra[0][0], "is not a parameter of a named query's events")
    own = [(k, v) for k, v in service.parameters(found["query"])]
    if "perPage" in request.query_params:
        own = [(k, v) for k, v in own if k != "perPage"]
    return await answer(request, session, principal, request.query_params.multi_items(), stored=own)


@router.post("/epcis/queries/{name}/subscriptions", status_code=201, summary="Subscribe a webhook to a named query")
async def subscribe(name: str, request: Request, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    """Body: `dest` (http(s) URL), `signatureToken` (then every POST carries `GS1-Signature: sha256=<hex
    HMAC-SHA256 of the body>`), `stream: true` or a `schedule`, `reportIfEmpty`, `initialRecordTime`. Each
    delivery is an EPCISQueryDocument (`queryResults.subscriptionID`), at least once: retried with backoff until
    the subscriber answers 2xx; dedupe by eventID. Only events you may read when it is delivered are sent."""
    await service.named_query(session, principal, name)  # 404 before anything about the body
    body = await _body(request)
    settings: Any = request.app.state.settings
    if isinstance(body, dict) and not settings.subscription_allow_private_dest:
        await check_public(rules.check_dest_form(body.get("dest")))
    row = await service.create_subscription(session, principal, name, body)
    await session.commit()
    dispatcher: Dispatcher | None = getattr(request.app.state, "subscriptions", None)
    if dispatcher is not None:
        dispatcher.wake.set()
    location = f"{BASE}/{quote(name)}/subscriptions/{row['id']}"
    return JSONResponse(service.described(row), status_code=201, headers={**EPCIS_HEADERS, "Location": location})


@router.get("/epcis/queries/{name}/subscriptions", summary="The named query's webhook subscriptions")
async def list_subscriptions(
    name: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> JSONResponse:
    await service.named_query(session, principal, name)
    per_page, after = _page(request)
    rows = await repo.subscriptions(session, principal.org, name, after, per_page + 1)
    items = [service.described(r) for r in rows]
    return _listing(request, items, per_page, rows[per_page - 1]["id"] if len(rows) > per_page else None)


@router.get("/epcis/queries/{name}/subscriptions/{sid}", summary="One webhook subscription")
async def get_subscription(name: str, sid: str, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    row = await repo.subscription(session, principal.org, name, sid)
    if row is None:
        raise service.not_found(f"subscription '{sid[:64]}' of a query named '{name[:128]}'")
    return JSONResponse(service.described(row), headers=EPCIS_HEADERS)


@router.delete("/epcis/queries/{name}/subscriptions/{sid}", status_code=204, summary="Unsubscribe")
async def unsubscribe(name: str, sid: str, session: SessionDep, principal: CurrentPrincipal) -> Response:
    if not await repo.delete_subscription(session, principal.org, name, sid):
        raise service.not_found(f"subscription '{sid[:64]}' of a query named '{name[:128]}'")
    await session.commit()
    return Response(status_code=204)


# ---- WebSocket subscriptions ----


async def _ws_principal(ws: WebSocket) -> Principal:
    scheme, _, credentials = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise Unauthorized("A WebSocket subscription needs 'Authorization: Bearer <token>'.", code="invalid-token")
    return await identify(ws, credentials)


def _ws_controls(ws: WebSocket) -> service.Controls:
    params = dict(ws.query_params)
    unknown = sorted(set(params) - WS_PARAMS)
    if unknown:
        raise rules.SubscriptionControlsException(unknown[0], "is not a subscription parameter")
    raw: dict[str, Any] = {k: params[k] for k in SCHEDULE_PARAMS if k in params}
    body: dict[str, Any] = {"schedule": raw} if raw else {}
    for flag in ("stream", "reportIfEmpty"):
        if flag in params:
            if params[flag].lower() not in ("true", "false"):
                raise rules.SubscriptionControlsException(flag, "must be true or false")
            body[flag] = params[flag].lower() == "true"
    if body.get("stream") is False:
        del body["stream"]
    if "initialRecordTime" in params:
        body["initialRecordTime"] = params["initialRecordTime"]
    return service.controls(body)


@router.websocket("/epcis/queries/{name}/events")
@router.websocket("/epcis/queries/{name}/subscriptions")
async def websocket_subscription(ws: WebSocket, name: str) -> None:
    """`stream=true` (each new matching event, as it arrives) or schedule parameters (`second`, `minute`, ...):
    EPCISQueryDocuments as text frames, the owner's read rights applied to each. Refused (closed with 1008
    and the problem as its reason where the server cannot answer the handshake with the problem itself) without
    a valid token, for a query not yours, or with bad controls."""
    sessionmaker = ws.app.state.sessionmaker
    settings: Any = ws.app.state.settings
    try:
        principal = await _ws_principal(ws)
        c = _ws_controls(ws)
        async with sessionmaker() as session:
            stored = await service.named_query(session, principal, name)
            after = 0 if c.initial_record_time is not None else await repo.last_seq(session)
    except Problem as exc:
        await _deny(ws, exc)
        return
    await ws.accept()
    dispatcher: Dispatcher | None = getattr(ws.app.state, "subscriptions", None)
    next_run = rules.next_run(c.schedule, datetime.now(UTC)) if c.schedule else None
    closed = asyncio.create_task(_until_closed(ws))
    try:
        while not closed.done():
            changed = dispatcher.changed if dispatcher is not None else asyncio.Event()
            if next_run is None or datetime.now(UTC) >= next_run:
                async with sessionmaker() as session:
                    if await repo.query(session, principal.org, name) is None:
                        await ws.close(code=1000, reason="the named query was deleted")
                        return
                    seen = await repo.last_seq(session)
                    page = await service.next_page(
                        session,
                        principal,
                        stored,
                        after_seq=after,
                        initial_record_time=c.initial_record_time,
                        batch=settings.subscription_batch,
                    )
                if page.rows or (c.schedule and c.report_if_empty):
                    await ws.send_text(orjson.dumps(page.document).decode())
                after = int(page.last_seq or 0) if page.more else max(int(page.last_seq or 0), seen)
                if page.more:
                    continue
                if c.schedule:
                    next_run = rules.next_run(c.schedule, datetime.now(UTC))
            wait = settings.subscription_poll_s
            if next_run is not None:
                wait = max(0.05, min(wait, (next_run - datetime.now(UTC)).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(changed.wait()), wait)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.cancel()


async def _deny(ws: WebSocket, problem: Problem) -> None:
    """Refused before the handshake completes: answered over HTTP with the problem (its status, problem+json)
    where the server offers the ASGI WebSocket denial-response extension (uvicorn does), else closed with 1008
    and the problem as its reason (the server then answers 403)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(problem_response(problem, ws))
    else:
        await ws.close(code=1008, reason=f"{problem.status} {problem.detail}"[:120])


async def _until_closed(ws: WebSocket) -> None:
    """Reads (and ignores) what the client sends, until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()
