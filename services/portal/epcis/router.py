"""EPCIS 2.0 query interface (GS1's REST binding, under `/epcis`): `GET /events` with every SimpleEventQuery
parameter, `GET /events/{eventID}`, and the resource views `/eventTypes/{t}/events`, `/epcs/{epc}/events`,
`/bizSteps/{s}/events`, `/bizLocations/{l}/events`, `/readPoints/{r}/events`, `/dispositions/{d}/events`.
Answers are EPCISQueryDocuments built from the portal's own read model of both streams; errors are the
standard's exceptions (`epcisException:QueryParameterException`, ...) as problem+json."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.portal.epcis import query, service
from shared.auth import CurrentPrincipal
from shared.contract.epcis import GS1_CONTEXT
from shared.db import SessionDep
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import PROBLEM_RESPONSES, EpcisException, Problem

router = APIRouter(tags=["EPCIS"], responses=PROBLEM_RESPONSES)
EPCIS_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
MEDIA_TYPE = "application/ld+json"
EVENT_TYPES = set(query.EVENT_TYPES)
QUERY_DOC = """Every SimpleEventQuery parameter of EPCIS 2.0 (the parameter table in the README): `eventType`,
`GE_/LT_eventTime`, `GE_/LT_recordTime`, `EQ_action`, `EQ_bizStep`, `EQ_disposition`,
`EQ_persistentDisposition_set/unset`, `EQ_/WD_readPoint`, `EQ_/WD_bizLocation`, `EQ_transformationID`,
`MATCH_epc`, `MATCH_parentID`, `MATCH_inputEPC`, `MATCH_outputEPC`, `MATCH_anyEPC`, `MATCH_(input|output|any)EPCClass`
(with `urn:epc:idpat:` wildcards), `EQ_/GT_/GE_/LT_/LE_quantity`, `EQ_eventID`, `EXISTS_errorDeclaration`,
`GE_/LT_errorDeclarationTime`, `EQ_errorReason`, `EQ_correctiveEventID`, `EQ_/GT_/GE_/LT_/LE_/EXISTS_` on
extension and ILMD fields (`EQ_ILMD_ex:lot`, `INNER_`, `SENSORELEMENT_`, ...), the sensor parameters
(`EQ_type`, `GE_value`, `GE_value_CEL`, `GE_time`, ...), `orderBy`, `orderDirection`, `eventCountLimit`,
`maxEventCount`, `perPage`, `nextPageToken`. Values of one parameter combine with OR (repeated or
`|`-separated), parameters with AND. An unknown parameter or a malformed value is 400
`QueryParameterException`; more than `maxEventCount` matches is 413 `QueryTooLargeException`.
A battery matches `MATCH_epc`/`MATCH_anyEPC` by its `https://batterytrace.kr/battery/{id}` URI or any of its
EPC/Digital Link aliases (in epcList, childEPCs, inputEPCList and outputEPCList; `MATCH_anyEPC` parentID too).
The next page is in the `Link` header (`rel="next"`, with `nextPageToken`). Authorities and operators see every
event; other participants the events they captured and those about batteries they made or handled."""
#: `GET /{resource}/{value}/events` → the query parameter the path value stands for.
RESOURCES = {
    "eventTypes": "eventType",
    "epcs": "MATCH_anyEPC",
    "bizSteps": "EQ_bizStep",
    "bizLocations": "EQ_bizLocation",
    "readPoints": "EQ_readPoint",
    "dispositions": "EQ_disposition",
}


def media_type(request: Request) -> str:
    """JSON-LD when the client asks for it, else JSON (GS1's binding documents `application/json`)."""
    return MEDIA_TYPE if "application/ld+json" in request.headers.get("accept", "") else "application/json"


def extensions(request: Request) -> dict[str, str]:
    """`GS1-Extensions: ex=https://ns.example.com/epcis/, ...`: the prefixes extension parameters use."""
    out: dict[str, str] = {}
    for item in request.headers.get("GS1-Extensions", "").split(","):
        prefix, sep, iri = item.strip().partition("=")
        if sep and prefix and iri:
            out[prefix.strip()] = iri.strip()
    return out


async def answer(
    request: Request,
    session: Any,
    principal: Any,
    params: list[tuple[str, str]],
    fixed: dict[str, str] | None = None,
    stored: list[tuple[str, str]] | None = None,
) -> JSONResponse:
    """`fixed`: parameters the path stands for; `stored`: a named query's (neither is repeated in `Link`)."""
    q = query.parse([*(stored or []), *params, *(fixed or {}).items()], extensions(request))
    after, remaining = _after(q)
    page = await service.search(session, principal, q, after=after, remaining=remaining)
    headers = dict(EPCIS_HEADERS)
    if page.next_after is not None:
        t, i, a, src = page.next_after
        token = encode_cursor([t.isoformat(), i, a, src, q.order_by, q.descending, page.remaining])
        kept = [(k, v) for k, v in params if k != "nextPageToken"]
        headers["Link"] = f'<{request.url.path}?{urlencode([*kept, ("nextPageToken", token)])}>; rel="next"'
    return JSONResponse(page.document, media_type=media_type(request), headers=headers)


def _after(q: query.EventQuery) -> tuple[tuple[datetime, str, str, str] | None, int | None]:
    """Where the page a `nextPageToken` this API returned starts (a token from before actors were in it
    starts after every row of that event ID), and how many events the query may still return."""
    if q.next_page_token is None:
        return None, None
    bad = query.QueryParameterException("nextPageToken", "not a token this API returned")
    try:
        token = decode_cursor(q.next_page_token, list)
    except Problem:
        raise bad from None
    try:
        if len(token) == 2:
            return (datetime.fromisoformat(token[0]), str(token[1]), "\U0010ffff", "\U0010ffff"), None
        if len(token) == 4:
            return (datetime.fromisoformat(token[0]), str(token[1]), str(token[2]), str(token[3])), None
        when, eid, actor, source, order, descending, remaining = token
        if order != q.order_by or descending != q.descending:
            raise query.QueryParameterException("nextPageToken", "belongs to a query with another order")
        left = None if remaining is None else int(remaining)
        return (datetime.fromisoformat(when), str(eid), str(actor), str(source)), left
    except (TypeError, ValueError, IndexError, KeyError):
        raise bad from None


@router.get(
    "/epcis/events",
    summary="EPCIS 2.0 event query (EPCISQueryDocument)",
    description=QUERY_DOC,
    response_class=JSONResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "An EPCISQueryDocument"}},
)
async def events(request: Request, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    return await answer(request, session, principal, request.query_params.multi_items())


@router.get(
    "/epcis/events/{event_id:path}",
    summary="One EPCIS event by its eventID (EPCISQueryDocument)",
    response_class=JSONResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "An EPCISQueryDocument with that event"}},
)
async def event(event_id: str, request: Request, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    """Ledger events are `urn:uuid:{event_id}`; captured EPCIS events keep the eventID they were sent with."""
    document = await service.event(session, principal, event_id)
    return JSONResponse(document, media_type=media_type(request), headers=EPCIS_HEADERS)


@router.get(
    "/epcis/{resource}/{value:path}/events",
    summary="The events of one event type, EPC, bizStep, bizLocation, readPoint or disposition",
    description="As `GET /epcis/events` with the path's value as `eventType`, `MATCH_anyEPC`, `EQ_bizStep`, "
    "`EQ_bizLocation`, `EQ_readPoint` or `EQ_disposition` (and the same further parameters).",
    response_class=JSONResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "An EPCISQueryDocument"}},
)
async def resource_events(
    resource: str, value: str, request: Request, session: SessionDep, principal: CurrentPrincipal
) -> JSONResponse:
    name = RESOURCES.get(resource)
    if name is None:
        raise EpcisException("NoSuchNameException", f"No EPCIS resource '{resource[:60]}'.", status=404)
    if resource == "eventTypes" and value not in EVENT_TYPES:
        raise EpcisException("NoSuchNameException", f"No event type '{value[:60]}'.", status=404)
    params = request.query_params.multi_items()
    if any(k == name for k, _ in params):
        raise query.QueryParameterException(name, f"given by the path (/{resource}/{{value}}/events)")
    return await answer(request, session, principal, params, {name: value.replace("|", "%7C")})


def collection(members: list[str]) -> JSONResponse:
    return JSONResponse({"@context": GS1_CONTEXT, "type": "Collection", "member": members}, headers=EPCIS_HEADERS)


TOP_LEVEL = [
    "events",
    "eventTypes",
    "epcs",
    "bizSteps",
    "bizLocations",
    "readPoints",
    "dispositions",
    "capture",
    "queries",
]
#: Collection path → the column of the portal's EPCIS table whose values it lists.
COLLECTIONS = {
    "epcs": "epcs",
    "bizSteps": "biz_step",
    "bizLocations": "biz_location",
    "readPoints": "read_point",
    "dispositions": "disposition",
}


@router.get("/epcis", summary="The EPCIS top-level resources (GS1 REST binding)")
@router.get("/epcis/", include_in_schema=False)
async def top_level(principal: CurrentPrincipal) -> JSONResponse:
    return collection(TOP_LEVEL)


@router.get("/epcis/eventTypes", summary="The EPCIS event types")
async def event_types(principal: CurrentPrincipal) -> JSONResponse:
    return collection(list(query.EVENT_TYPES))


@router.get(
    "/epcis/{name}",
    summary="The EPCs, bizSteps, bizLocations, readPoints or dispositions of the events visible to the caller",
)
async def values(name: str, request: Request, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    column = COLLECTIONS.get(name)
    if column is None:
        raise EpcisException("NoSuchNameException", f"No EPCIS resource '{name[:60]}'.", status=404)
    per_page = query.parse([(k, v) for k, v in request.query_params.multi_items() if k == "perPage"]).per_page
    return collection(await service.distinct(session, principal, column, per_page))


@router.get("/epcis/{resource}/{value:path}", summary="What a resource (eventType, EPC, bizStep, ...) holds")
async def resource(resource: str, value: str, principal: CurrentPrincipal) -> JSONResponse:
    if resource not in RESOURCES or (resource == "eventTypes" and value not in EVENT_TYPES):
        raise EpcisException("NoSuchNameException", f"No EPCIS resource '{resource}/{value[:60]}'.", status=404)
    return collection(["events"])


@router.options("/epcis", include_in_schema=False)
@router.options("/epcis/{rest:path}", include_in_schema=False)
async def discover(request: Request) -> Response:
    """GS1's discovery: the methods and the EPCIS/CBV versions of a resource."""
    allow = "OPTIONS, GET" + (", POST" if request.url.path.rstrip("/").endswith("/queries") else "")
    headers = {
        "Allow": allow,
        **EPCIS_HEADERS,
        "GS1-EPCIS-Min": "2.0.0",
        "GS1-EPCIS-Max": "2.0.0",
        "GS1-CBV-Min": "2.0.0",
        "GS1-CBV-Max": "2.0.0",
    }
    return Response(status_code=204, headers=headers)
