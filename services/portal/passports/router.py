from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from services.portal.passports import service
from services.portal.passports.schemas import Passport
from services.portal.passports.signing import MEDIA_TYPE, PassportSigner
from shared.auth import OPTIONAL_BEARER, OptionalPrincipal
from shared.db import SessionDep
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["passports"], responses=PROBLEM_RESPONSES)


def _route(path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A passport route: public, a bearer token (optional) raises the access level."""
    return router.get(path, openapi_extra=OPTIONAL_BEARER, **options)


# The by-ID routes come first: `/v1/passports/{battery_id}/jws` would otherwise also match `by-id/<id>`.
@_route("/v1/passports/by-id/{passport_id}", response_model=Passport, summary="Any life's passport by its own ID")
async def get_passport_by_id(passport_id: str, session: SessionDep, principal: OptionalPrincipal) -> dict[str, Any]:
    """A passport by its ID, in its Battery Pass form (`urn:batterytrace:...`) or its Catena-X form
    (`urn:uuid:...`): an earlier life's (before a repurpose or remanufacture) as well as the current one.
    `predecessor` and `successor` link the lives both ways. The access levels are those of the battery."""
    return await service.passport_by_id(session, principal, passport_id)


@_route(
    "/v1/passports/by-id/{passport_id}/catenax", summary="Any life's Catena-X BatteryPass 6.1 aspect by its passport ID"
)
async def get_catenax_by_id(passport_id: str, session: SessionDep, principal: OptionalPrincipal) -> dict[str, Any]:
    return _catenax(await service.passport_by_id(session, principal, passport_id))


@_route("/v1/passports/{battery_id}", response_model=Passport, summary="Battery passport for your access level")
async def get_passport(battery_id: str, session: SessionDep, principal: OptionalPrincipal) -> dict[str, Any]:
    """Without a token: the public passport. With one, by EU access level: `legitimate_interest`
    (dismantler, collector, assessor, repurposer, remanufacturer or recycler that handled this battery) adds
    material masses and condition; `authority` (ministry, certifier, admin) adds the lifecycle record; the
    battery's own `manufacturer` sees everything, manufacturing details included."""
    return await service.passport(session, principal, battery_id)


@_route(
    "/v1/passports/{battery_id}/catenax",
    summary="The Catena-X BatteryPass 6.1 aspect (io.catenax.battery.battery_pass:6.1.0) for your access level",
)
async def get_catenax(battery_id: str, session: SessionDep, principal: OptionalPrincipal) -> dict[str, Any]:
    """The aspect's payload as Catena-X consumers read it; the full passport names what it leaves out."""
    return _catenax(await service.passport(session, principal, battery_id))


def _catenax(passport: dict[str, Any]) -> dict[str, Any]:
    """The Catena-X aspect a passport carries."""
    aspect: dict[str, Any] = passport["catenax"]
    return aspect


def signer(request: Request) -> PassportSigner:
    """The portal's passport key (BT_PORTAL_PASSPORT_SIGNING_KEY_FILE), loaded once per process."""
    state = request.app.state
    if getattr(state, "passport_signer", None) is None:
        state.passport_signer = PassportSigner.create(getattr(state.settings, "passport_signing_key_file", None))
    found: PassportSigner = state.passport_signer
    return found


@_route(
    "/v1/passports/{battery_id}/jws",
    summary="The same passport as a compact JWS (EdDSA), verifiable offline with /.well-known/jwks.json",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPE: {"example": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJ...fQ.c2ln"}}}},
)
async def get_signed_passport(
    battery_id: str, request: Request, session: SessionDep, principal: OptionalPrincipal
) -> Response:
    """The passport your access level sees, signed by the portal: header `kid` names the key in the JWKS."""
    passport = await service.passport(session, principal, battery_id)
    body = Passport.model_validate(passport).model_dump(mode="json")
    return Response(signer(request).sign(body), media_type=MEDIA_TYPE)


@router.get("/.well-known/jwks.json", summary="The portal's passport signing keys (JWKS)")
async def get_jwks(request: Request) -> dict[str, Any]:
    return signer(request).jwks()
