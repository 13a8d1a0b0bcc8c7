"""EPCIS 2.0 capture interface: POST /epcis/capture, GET /epcis/capture/{captureID}, our JSON-LD context."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import JSONResponse

from services.events.epcis import service
from services.events.epcis.schemas import EXAMPLE_DOCUMENT, CaptureJob, job_out
from services.events.epcis.service import Behaviour
from shared.auth import CurrentPrincipal
from shared.db import SessionDep
from shared.limits import body_limit
from shared.participants import directory
from shared.problems import PROBLEM_RESPONSES, EpcisException, Problem, field_error

router = APIRouter(tags=["EPCIS"], responses=PROBLEM_RESPONSES)
EPCIS_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
MEDIA_TYPES = ("application/json", "application/ld+json")
#: The largest legal document: 5,000 events (the default `batch_max_items`) of about 3 KB each (an object or
#: aggregation event with its identifiers, read point, business location and our extension fields).
DOCUMENT_EVENT_BYTES = 3_000
DOCUMENT_MAX_EVENTS = 5_000

CAPTURE_DOC = """Send an EPCIS 2.0 `EPCISDocument` (JSON or JSON-LD). It is validated against the official EPCIS
JSON Schema first (422 `epcis-schema`, `errors[]` naming each failing `field` as a JSON pointer and the
schema `rule` path). Then each event is mapped onto the battery lifecycle (see the README's mapping table)
and applied with the same rules as `POST /v1/events`; events about identifiers that are not registered
batteries are stored as plain EPCIS events. The actor is the caller's organisation.

`GS1-Capture-Error-Behaviour`: `rollback` (default) stores nothing if any event fails; `proceed` stores the
valid events and lists the failures. The answer is 202 with `Location: /epcis/capture/{captureID}`; the job
is finished when the answer is sent (capture runs inside the request) and tells success or failure with
per-event errors."""


@router.post(
    "/epcis/capture",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CaptureJob,
    summary="Capture an EPCIS 2.0 document",
    description=CAPTURE_DOC,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "object"}, "example": EXAMPLE_DOCUMENT} for t in MEDIA_TYPES},
        },
        **body_limit(DOCUMENT_MAX_EVENTS * DOCUMENT_EVENT_BYTES),
    },
)
async def capture(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    behaviour_header: Annotated[str | None, Header(alias="GS1-Capture-Error-Behaviour")] = None,
) -> Response:
    try:
        behaviour = Behaviour(behaviour_header or Behaviour.rollback.value)
    except ValueError:
        raise EpcisException(
            "ValidationException",
            "GS1-Capture-Error-Behaviour: rollback or proceed.",
            errors=[field_error("GS1-Capture-Error-Behaviour", "enum", "rollback or proceed")],
        ) from None
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if ctype not in MEDIA_TYPES:
        raise Problem(
            f"Send EPCIS documents as {' or '.join(MEDIA_TYPES)}.",
            status=415,
            code="unsupported-media-type",
            title="Unsupported media type",
        )
    try:
        document = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise EpcisException(
            "ValidationException",
            f"The body is not JSON: {exc}.",
            code="epcis-schema",
            errors=[field_error("/", "json", str(exc))],
        ) from None
    service.check_document(document, request.app.state.settings.batch_max_items)
    job = await service.capture_document(
        session,
        document,
        principal,
        behaviour,
        request.app.state.epcis_resolver,
        request.app.state.registry,
        rules=request.app.state.capture_rules,
        receivers=directory(request),
    )
    body = CaptureJob.model_validate(job_out(job)).model_dump(mode="json")
    return JSONResponse(
        body, status_code=202, headers={"Location": f"/epcis/capture/{job['capture_id']}", **EPCIS_HEADERS}
    )


@router.get("/epcis/capture", response_model=list[CaptureJob], summary="The latest capture jobs visible to you")
async def capture_jobs(
    session: SessionDep, principal: CurrentPrincipal, response: Response, perPage: str = "30"
) -> Any:
    """Your own capture jobs, newest first (ministries, operators and admin: everyone's); `perPage` ≤ 1000."""
    if not (perPage.isascii() and perPage.isdigit()) or not 1 <= int(perPage) <= 1000:  # "²".isdigit(), int("²") fails
        raise EpcisException(
            "QueryParameterException",
            "perPage: a whole number from 1 to 1000.",
            errors=[field_error("perPage", "range", "a whole number from 1 to 1000")],
        )
    response.headers.update(EPCIS_HEADERS)
    return [job_out(j) for j in await service.capture_jobs(session, principal, int(perPage))]


@router.options("/epcis/capture", include_in_schema=False)
@router.options("/epcis/capture/{capture_id}", include_in_schema=False)
async def discover(request: Request) -> Response:
    """GS1's discovery: the methods and the EPCIS/CBV versions of the capture resources."""
    allow = "OPTIONS, GET" + (", POST" if request.url.path.rstrip("/").endswith("/capture") else "")
    limits = {"GS1-EPCIS-Capture-Limit": str(request.app.state.settings.batch_max_items)}
    return Response(status_code=204, headers={"Allow": allow, **EPCIS_HEADERS, **limits})


@router.get("/epcis/capture/{capture_id}", response_model=CaptureJob, summary="A capture job's outcome")
async def capture_job(capture_id: str, session: SessionDep, principal: CurrentPrincipal, response: Response) -> Any:
    """Visible to the organisation that posted it, and to ministries, operators and admin."""
    job = await service.capture_job(session, capture_id, principal)
    response.headers.update(EPCIS_HEADERS)
    return job_out(job)


@router.get(
    "/epcis/context/batterytrace.jsonld",
    summary="Our EPCIS extension vocabulary as a JSON-LD context (public)",
    response_class=JSONResponse,
    responses={200: {"description": "A JSON-LD context", "content": {"application/ld+json": {}}}},
)
async def context() -> Response:
    """Business steps CBV lacks (grading, repurposing, remanufacturing, recycling, safety inspecting, incident
    reporting), grade dispositions, SoH and cycle-count measurement types, and our event extension fields."""
    return JSONResponse(service.context_document(), media_type="application/ld+json")
