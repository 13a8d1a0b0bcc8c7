"""The GS1 Digital Link resolver (GS1-Conformant resolver standard 1.1) and each battery's QR code.

`/01/{gtin}` and `/01/{gtin}/21/{serial}`: a 307 redirect to the requested `linkType` (or the default link),
the whole linkset (`application/linkset+json`, RFC 9264) for `linkType=all`/`linkset` or when asked for by
`Accept`; 400 for a path that is no valid Digital Link (a wrong GTIN check digit included), 404 for one the
portal does not know. Every look-up is an exact key on an index, never a pattern."""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from services.portal.history import repository as history_repo
from services.portal.resolver import gs1, service
from services.portal.resolver import repository as repo
from shared.db import SessionDep, raw_connection
from shared.problems import PROBLEM_RESPONSES, NotFound, Problem, field_error


class InvalidDigitalLink(Problem):
    status, code, title = 400, "invalid-digital-link", "Not a valid GS1 Digital Link"


router = APIRouter(tags=["GS1 Digital Link resolver"], responses=PROBLEM_RESPONSES)
LinkType = Annotated[str | None, Query(alias="linkType", max_length=200, description="e.g. gs1:pip, all")]


def _parse(request: Request) -> gs1.Request:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    try:
        return gs1.parse(raw.decode("latin-1"))
    except gs1.DigitalLinkError as e:
        raise InvalidDigitalLink(str(e), errors=[field_error("path", e.rule, str(e))]) from None


def _wants_linkset(request: Request, link_type: str | None) -> bool:
    if link_type in ("all", "linkset"):
        return True
    return link_type is None and service.LINKSET in request.headers.get("accept", "")


async def _answer(request: Request, session: SessionDep, link_type: str | None) -> Response:
    parsed = _parse(request)
    base = str(request.base_url)
    anchor, links = await service.resolve(await raw_connection(session), parsed, base)
    linkset_url = f"{anchor}?linkType=linkset"
    header = {"Link": f'<{linkset_url}>; rel="linkset"; type="{service.LINKSET}"', "Vary": "Accept"}
    if _wants_linkset(request, link_type):
        return JSONResponse(service.linkset(anchor, links), media_type=service.LINKSET, headers=header)
    return RedirectResponse(service.choose(links, link_type).href, status_code=307, headers=header)


@router.head("/01/{gtin}", include_in_schema=False)
@router.get("/01/{gtin}", summary="Product level (GTIN)")
async def resolve_product(gtin: str, request: Request, session: SessionDep, link_type: LinkType = None) -> Response:
    """The model's declared links (manufacturer, declaration of conformity, due diligence, ...)."""
    return await _answer(request, session, link_type)


@router.head("/01/{gtin}/21/{serial:path}", include_in_schema=False)
@router.get(
    "/01/{gtin}/21/{serial:path}",
    summary="Serial level (one battery)",
    responses={307: {"description": "To the requested or default link"}, 200: {"content": {service.LINKSET: {}}}},
)
async def resolve_battery(
    gtin: str, serial: str, request: Request, session: SessionDep, link_type: LinkType = None
) -> Response:
    """A battery's links: its public passport (`gs1:pip`, the default), the signed passport and the passport
    (`gs1:certificationInfo`), the Catena-X aspect (`gs1:sustainabilityInfo`), its EPCIS events (`gs1:epcis`),
    and the documents its manufacturer declared."""
    return await _answer(request, session, link_type)


@router.head("/01/{gtin}/{rest:path}", include_in_schema=False)
@router.get("/01/{gtin}/{rest:path}", include_in_schema=False)
async def resolve_other(gtin: str, rest: str, request: Request, session: SessionDep) -> Response:
    """Any other path under a GTIN (a lot, a qualifier this resolver does not serve): 400 naming why."""
    return await _answer(request, session, None)


@router.get("/.well-known/gs1resolver", summary="The resolver description file")
async def resolver_description(request: Request) -> dict[str, object]:
    return service.description(str(request.base_url))


async def _link_of(session: SessionDep, request: Request, battery_id: str) -> str:
    conn = await raw_connection(session)
    battery = await history_repo.get_battery(conn, battery_id)
    alias = await repo.link_of(conn, battery_id) if battery is not None and battery["registered"] else None
    parsed = None
    if alias is not None and (at := alias.find("/01/")) >= 0:
        try:
            parsed = gs1.parse(alias[at:].split("?", 1)[0].split("#", 1)[0])
        except gs1.DigitalLinkError:
            parsed = None
    if parsed is None:
        raise NotFound(f"Battery '{battery_id}' has no GS1 Digital Link.", code="no-digital-link")
    return parsed.uri(str(request.base_url))


@router.get("/v1/batteries/{battery_id}/digital-link/qr.svg", summary="The battery's Digital Link QR code (SVG)")
async def qr_svg(battery_id: str, request: Request, session: SessionDep) -> Response:
    qr = segno.make_qr(await _link_of(session, request, battery_id), error="m")
    return Response(qr.svg_inline(scale=4, border=4), media_type="image/svg+xml")


@router.get("/v1/batteries/{battery_id}/digital-link/qr.png", summary="The battery's Digital Link QR code (PNG)")
async def qr_png(battery_id: str, request: Request, session: SessionDep) -> Response:
    import io

    qr = segno.make_qr(await _link_of(session, request, battery_id), error="m")
    out = io.BytesIO()
    qr.save(out, kind="png", scale=8, border=4)
    return Response(out.getvalue(), media_type="image/png")
