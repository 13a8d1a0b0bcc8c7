"""EPCIS 2.0 query interface: GET /epcis/events (the standard query parameters) and GET /epcis/events/{eventID}.
Answers are EPCISQueryDocuments built from the portal's own read model of both streams."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.portal.epcis import service
from shared.auth import CurrentPrincipal
from shared.db import SessionDep
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import PROBLEM_RESPONSES, Unprocessable, field_error
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
    document, last = await service.search(
        session,
        principal,
        event_types=types,
        ge_event_time=GE_eventTime,
        lt_event_time=LT_eventTime,
        ge_record_time=GE_recordTime,
        lt_record_time=LT_recordTime,
        biz_steps=_values(EQ_bizStep),
        dispositions=_values(EQ_disposition),
        epcs=_values(MATCH_epc),
        any_epcs=_values(MATCH_anyEPC),
        biz_locations=_values(EQ_bizLocation),
        read_points=_values(EQ_readPoint),
        after=_after(decode_cursor(nextPageToken)),
        per_page=perPage,
    )
    headers = dict(EPCIS_HEADERS)
    if last is not None:
        token = encode_cursor([last[0].isoformat(), last[1], last[2], last[3]])
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "nextPageToken"]
        headers["Link"] = f'<{request.url.path}?{urlencode([*params, ("nextPageToken", token)])}>; rel="next"'
    return JSONResponse(document, media_type=MEDIA_TYPE, headers=headers)


@router.get(
    "/epcis/events/{event_id:path}",
    summary="One EPCIS event by its eventID (EPCISQueryDocument)",
    response_class=JSONResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "An EPCISQueryDocument with that event"}},
)
async def event(event_id: str, session: SessionDep, principal: CurrentPrincipal) -> JSONResponse:
    """Ledger events are `urn:uuid:{event_id}`; captured EPCIS events keep the eventID they were sent with."""
    return JSONResponse(await service.event(session, principal, event_id), media_type=MEDIA_TYPE, headers=EPCIS_HEADERS)


def _after(token: Any) -> tuple[datetime, str, str, str] | None:
    """The (record time, event ID, actor, source) a `nextPageToken` this API returned names (a token from
    before actors were in it starts after every row of that event ID)."""
    if token is None:
        return None
    try:
        if len(token) == 2:
            return datetime.fromisoformat(token[0]), str(token[1]), "\U0010ffff", "\U0010ffff"
        return datetime.fromisoformat(token[0]), str(token[1]), str(token[2]), str(token[3])
    except (TypeError, ValueError, IndexError, KeyError):
        raise Unprocessable(
            "nextPageToken: not a token this API returned",
            errors=[field_error("nextPageToken", "cursor", "not a token this API returned")],
        ) from None
