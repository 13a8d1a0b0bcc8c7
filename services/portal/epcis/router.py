"""EPCIS 2.0 query interface: GET /epcis/events (the standard query parameters) and GET /epcis/events/{eventID}.
Answers are EPCISQueryDocuments built from the portal's own read model of both streams."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.portal import access
from services.portal.epcis import repository as repo
from services.portal.epcis.repository import Filters
from services.portal.epcis.service import expand, present, query_document
from shared.auth import CurrentPrincipal
from shared.contract.epcis import BATTERY
from shared.db import SessionDep
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import PROBLEM_RESPONSES, NotFound, Unprocessable, field_error
from shared.validation import IsoDatetime

router = APIRouter(tags=["EPCIS"], responses=PROBLEM_RESPONSES)
EPCIS_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
EVENT_TYPES = {"ObjectEvent", "AggregationEvent", "TransformationEvent", "TransactionEvent", "AssociationEvent"}
MEDIA_TYPE = "application/ld+json"

Many = Annotated[list[str] | None, Query()]


def _values(values: list[str] | None) -> list[str]:
    """Repeated parameters and `|`-separated lists both work (`EQ_bizStep=shipping|receiving`)."""
    return [v for item in values or [] for v in item.split("|") if v]


@router.get(
    "/epcis/events",
    summary="EPCIS 2.0 event query (EPCISQueryDocument)",
    response_class=JSONResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "An EPCISQueryDocument"}},
)
async def events(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    eventType: Many = None,
    GE_eventTime: IsoDatetime | None = None,
    LT_eventTime: IsoDatetime | None = None,
    GE_recordTime: IsoDatetime | None = None,
    LT_recordTime: IsoDatetime | None = None,
    EQ_bizStep: Many = None,
    EQ_disposition: Many = None,
    MATCH_epc: Many = None,
    MATCH_anyEPC: Many = None,
    EQ_bizLocation: Many = None,
    EQ_readPoint: Many = None,
    perPage: Annotated[int, Query(ge=1, le=1000)] = 30,
    nextPageToken: str | None = None,
) -> JSONResponse:
    """Every event in the ledger (native or captured as EPCIS) and every plain EPCIS event captured, in
    record-time order. Parameters combine with AND; values within one parameter with OR. `MATCH_epc` looks in
    epcList, childEPCs, inputEPCList and outputEPCList, `MATCH_anyEPC` in parentID too (exact identifiers; a
    battery matches by its `https://batterytrace.kr/battery/{id}` URI or any of its EPC/Digital Link aliases).
    bizStep and disposition take bare CBV terms, CBV URIs or our extension URIs. The next page is in the
    `Link` header (`rel="next"`, with `nextPageToken`). Authorities and operators see every event; other
    participants the events they captured and those about batteries they made or handled."""
    types = _values(eventType)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise Unprocessable(f"eventType: unknown {unknown}", errors=[field_error("eventType", "enum", str(unknown))])
    after = decode_cursor(nextPageToken)
    f = Filters(
        event_types=types,
        ge_event_time=GE_eventTime,
        lt_event_time=LT_eventTime,
        ge_record_time=GE_recordTime,
        lt_record_time=LT_recordTime,
        biz_steps=[s for s in (expand(v) for v in _values(EQ_bizStep)) if s],
        dispositions=[s for s in (expand(v) for v in _values(EQ_disposition)) if s],
        epcs=await _with_batteries(session, _values(MATCH_epc)),
        any_epcs=await _with_batteries(session, _values(MATCH_anyEPC)),
        biz_locations=_values(EQ_bizLocation),
        read_points=_values(EQ_readPoint),
        handler_org=None if access.sees_all(principal) else principal.org,
        after=_after(after),
    )
    rows = await repo.search(session, f, perPage + 1)
    more = len(rows) > perPage
    rows = rows[:perPage]
    headers = dict(EPCIS_HEADERS)
    if more:
        token = encode_cursor([rows[-1]["record_time"].isoformat(), rows[-1]["event_id"]])
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "nextPageToken"]
        headers["Link"] = f'<{request.url.path}?{urlencode([*params, ("nextPageToken", token)])}>; rel="next"'
    return JSONResponse(await _document(session, rows), media_type=MEDIA_TYPE, headers=headers)


@router.get(
    "/epcis/events/{event_id:path}",
    summary="One EPCIS event by its eventID (EPCISQueryDocument)",
    response_class=JSONResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "An EPCISQueryDocument with that event"}},
)
async def event(event_id: str, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    """Ledger events are `urn:uuid:{event_id}`; captured EPCIS events keep the eventID they were sent with."""
    f = Filters(event_ids=[event_id], handler_org=None if access.sees_all(principal) else principal.org)
    rows = await repo.search(session, f, 1)
    if not rows:
        raise NotFound(f"No EPCIS event '{event_id}' is visible to you.", code="unknown-event")
    return JSONResponse(await _document(session, rows), media_type=MEDIA_TYPE, headers=EPCIS_HEADERS)


def _after(token: Any) -> Any:
    if token is None:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(token[0]), str(token[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise Unprocessable(
            "nextPageToken: not a token this API returned",
            errors=[field_error("nextPageToken", "cursor", "not a token this API returned")],
        ) from None


async def _with_batteries(session: Any, values: list[str]) -> list[str]:
    """Identifiers plus the battery URI each alias stands for."""
    if not values:
        return []
    found = await repo.battery_uris_of_aliases(session, values)
    return sorted(set(values) | {BATTERY + b for b in found.values()})


async def _document(session: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    ledger_ids = sorted({i for r in rows for i in r["ledger_event_ids"]})
    batteries = sorted({b for r in rows if r["source"] == "ledger" for b in r["battery_ids"]})
    declarations = await repo.declarations(session, ledger_ids)
    aliases = await repo.preferred_aliases(session, batteries)
    return query_document([present(r, aliases, declarations) for r in rows], (r["context"] for r in rows))
