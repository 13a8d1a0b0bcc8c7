"""The web UI under /ui/: server-rendered pages for ministries, operators, participants and the public.

Sign-in (OpenID Connect with PKCE; the demo sign-in only under the dev command on loopback) makes a
server-side session whose random key goes in an HttpOnly, SameSite=Lax cookie (Secure unless dev); signing
out deletes it. Every page applies the same access rules as the API it stands for, and every page of
non-public data is recorded in the audit trail exactly like an API read (`require_signin` names the reader
to the AuditMiddleware). Every POST form carries a CSRF token. Errors are rendered as pages with a sentence
in the reader's language, never as stack traces."""

from __future__ import annotations

import hmac
import logging
import re
import time as clock
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import jinja2
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from services.portal.log import service as log_service
from services.portal.ui import i18n, oidc, sessions
from services.portal.ui import service as ui
from services.portal.ui.settings import UISettings
from shared import access
from shared.auth import Ministry, Principal, Role, mint_token
from shared.db import SessionDep
from shared.logs import request_id_var
from shared.participants import check_participant
from shared.problems import Forbidden, NotFound, Problem, Unauthorized

log = logging.getLogger("batterytrace.portal.ui")
HERE = Path(__file__).parent
STATIC = HERE / "static"
COOKIE, LANG_COOKIE, OIDC_COOKIE = sessions.SESSION_COOKIE, "bt_lang", "bt_oidc"
FORM_LIMIT = 16 * 1024
ORG = re.compile(r"^[A-Za-z0-9-]{1,32}$")
#: One-click demo participants (org, role, ministry) for the development sign-in.
DEMO_PARTICIPANTS: list[tuple[str, str, str | None]] = [
    *[(m.value, "ministry", m.value) for m in Ministry],
    ("ops", "operator", None),
    ("ops", "admin", None),
    ("LGES", "manufacturer", None),
    ("HMC", "oem", None),
    ("KTS", "inspector", None),
    ("DISM-1", "dismantler", None),
    ("COL-1", "collector", None),
    ("ASS-1", "assessor", None),
    ("REP-1", "repurposer", None),
    ("REM-1", "remanufacturer", None),
    ("KTL", "certifier", None),
    ("REC-1", "recycler", None),
]

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _kst(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(ui.KST).strftime(fmt)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{int(value):,}"
    return str(value)


templates.filters["kst"] = _kst
templates.filters["num"] = _num


# ---- settings, language, who is signed in ----


def ui_settings(request: Request) -> UISettings:
    state = request.app.state
    if getattr(state, "ui_settings", None) is None:
        state.ui_settings = UISettings()
    settings: UISettings = state.ui_settings
    return settings


def lang_of(request: Request) -> str:
    return i18n.normalise(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


async def signed_in(request: Request) -> Principal | None:
    """The principal of the session cookie; no session, an expired one or a forged cookie is signed out, and so
    is a participant that is not (or no longer) registered and active with that role (shared.participants: a
    suspension reaches open UI sessions within the directory's TTL, as it reaches tokens)."""
    principal = await sessions.session_principal(request)
    if principal is not None:
        try:
            ministry = principal.ministry.value if principal.ministry else None
            await check_participant(request, principal.org, principal.role.value, ministry)
        except Unauthorized:
            principal = None
    request.state.ui_principal = principal
    return principal


def _viewer(request: Request) -> Principal | None:
    return getattr(request.state, "ui_principal", None)


Viewer = Annotated[Principal | None, Depends(signed_in)]
Settings = Annotated[UISettings, Depends(ui_settings)]


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = lang_of(request)
    principal = context.pop("principal", None) or _viewer(request)
    html = templates.get_template(name).render(
        request=request,
        lang=lang,
        t=i18n.translator(lang),
        label=i18n.labeller(lang),
        column=lambda key: i18n.column(key, lang),
        principal=principal,
        ministries=list(Ministry),
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        csrf=sessions.csrf_token(request),
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    sessions.set_csrf_cookie(request, response, ui_settings(request).secure_cookies)
    return response


def error_page(request: Request, status: int, key: str, **values: Any) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message_key=key, values=values)


#: Problems of the UI itself and the sentence each is shown with.
UI_CODES = {
    "csrf": "error.csrf",
    "oidc-failed": "signin.oidc_failed",
    "oidc-unavailable": "signin.oidc_failed",
    "keys-unavailable": "signin.oidc_failed",  # the provider's keys are past their stale bound (shared.jwks)
    "oidc-claims": "signin.oidc_claims",
}


class UIRoute(APIRoute):
    """Renders what goes wrong as a page with a sentence, and reports the server time (Server-Timing)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            started = clock.perf_counter()
            try:
                response = await handler(request)
            except Problem as exc:
                key, values = ui.problem_message(exc)
                context = {"detail": exc.detail, **request.path_params, **values, **getattr(exc, "ui_values", {})}
                if exc.status == 401:
                    key = "error.session" if request.cookies.get(COOKIE) else "error.signin_needed"
                key = UI_CODES.get(exc.code, key)
                response = error_page(request, exc.status, key or "error.invalid_input", **context)
            except RequestValidationError as exc:
                detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
                response = error_page(request, 422, "error.invalid_input", detail=detail)
            except Exception:
                log.exception("UI page failed")
                response = error_page(request, 500, "error.internal", rid=request_id_var.get() or "-")
            elapsed = (clock.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
            response.headers.update(sessions.SECURITY_HEADERS)
            return response

        return wrapped


router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)


def _problem(exc: Problem, **values: Any) -> Problem:
    exc.ui_values = values  # type: ignore[attr-defined]
    return exc


def require_signin(request: Request) -> Principal:
    """The signed-in reader of a page of non-public data, named to the audit trail (as the API's
    `require_role` does): the AuditMiddleware records the read before the page leaves."""
    principal = _viewer(request)
    if principal is None:
        raise Unauthorized("Sign in to see this page.")
    request.state.principal = principal
    return principal


async def read_form(request: Request) -> dict[str, str]:
    """A POST form of at most FORM_LIMIT bytes, its CSRF token checked."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise Problem("The form is too large.", status=413, code="form-too-large")
    form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}
    sessions.check_csrf(request, form)
    return form


def safe_next(value: str | None) -> str:
    """Only paths inside the UI: no open redirect."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


# ---- static files, language ----


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = (STATIC / name).resolve()
    if path.parent != STATIC.resolve() or not path.is_file():
        raise NotFound("No such file.")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/lang/{code}")
async def switch_language(code: str, next: str | None = None) -> Response:
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, i18n.normalise(code), max_age=365 * 86400, samesite="lax", path="/ui")
    return response


# ---- home and look-up ----


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(request: Request, principal: Viewer) -> Response:
    return render(request, "home.html", principal=principal, q="", checkpoint=await newest_checkpoint(request))


async def newest_checkpoint(request: Request) -> dict[str, Any] | None:
    """The newest log checkpoint and its cosigners for the home page's line; none while the database is away
    (the page still answers)."""
    try:
        async with request.app.state.sessionmaker() as session:
            found = await log_service.latest_or_none(session)
    except Exception:
        log.warning("home: the newest checkpoint could not be read", exc_info=True)
        return None
    if found is not None:  # each cosigner by its ministry's name, else by its witness key name
        label = i18n.labeller(lang_of(request))
        found["names"] = [label(c["ministry"].value) if c["ministry"] else c["witness"] for c in found["cosigned_by"]]
    return found


@router.get("/lookup", response_class=HTMLResponse)
async def lookup(request: Request, session: SessionDep, principal: Viewer, q: str = "") -> Response:
    """Signed in: the battery's page. Not signed in: its public passport (VIN look-ups need sign-in)."""
    q = q.strip()
    if not q:
        return render(request, "home.html", status=422, principal=principal, q=q, message_key="lookup.empty")
    if ui.looks_like_vin(q) and not access.may_look_up_by_vin(principal):
        return render(request, "home.html", status=401, principal=None, q=q, message_key="lookup.vin_needs_signin")
    found = await ui.resolve(session, q, principal)
    if found is None:
        return render(request, "home.html", status=404, principal=principal, q=q, message_key="lookup.not_found")
    target = f"/ui/batteries/{found.battery_id}" if principal else f"/ui/passport/{found.battery_id}"
    return RedirectResponse(target, status_code=303)


@router.get("/dl/{path:path}")
async def digital_link(request: Request, session: SessionDep, path: str) -> Response:
    """What a battery's QR code opens: its public passport, found through the Digital Link alias."""
    found = await ui.resolve_digital_link(session, str(request.url), path)
    if found is None:
        return render(request, "home.html", status=404, q=path, message_key="lookup.not_found")
    return RedirectResponse(f"/ui/passport/{found}", status_code=303)


# ---- sign-in ----


def demo_signin_open(request: Request, settings: UISettings) -> bool:
    """The demo sign-in: only under the dev command's flag, with its key, and only from this machine."""
    client = request.client.host if request.client else None
    return settings.dev_signin and settings.dev_signing_key_file is not None and sessions.is_loopback(client)


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, settings: Settings, principal: Viewer, next: str | None = None) -> Response:
    expired = bool(request.cookies.get(COOKIE)) and principal is None
    return render(
        request,
        "signin.html",
        settings=settings,
        demo_open=demo_signin_open(request, settings),
        demo=DEMO_PARTICIPANTS,
        roles=[r.value for r in Role],
        next=safe_next(next),
        message_key="error.session" if expired else None,
    )


@router.post("/signin")
async def signin(request: Request, settings: Settings) -> Response:
    """The development sign-in: checks the local key against the API's, then opens a session."""
    if not demo_signin_open(request, settings) or settings.dev_signing_key_file is None:
        raise NotFound("The demo sign-in is not enabled on this portal.")
    form = await read_form(request)
    if form.get("preset"):
        org, role, ministry = [*form["preset"].split("|"), "", ""][:3]
    else:
        org, role, ministry = form.get("org", ""), form.get("role", ""), form.get("ministry", "")
    org, ministry_code = org.strip(), ministry or None
    valid_role = role in {r.value for r in Role}
    if (
        not valid_role
        or (role == "ministry") != bool(ministry_code)
        or (ministry_code and ministry_code not in {m.value for m in Ministry})
    ):
        return _signin_again(request, settings, form, "signin.bad_choice")
    if role == "ministry" and not org:
        org = ministry_code or ""
    if not ORG.match(org):
        return _signin_again(request, settings, form, "signin.bad_org")
    token = mint_token(
        settings.dev_signing_key_file.read_bytes(),
        org=org,
        role=role,
        ministry=ministry_code,
        ttl_s=settings.session_ttl_s,
        audience=request.app.state.settings.jwt_audience,
        issuer=request.app.state.settings.jwt_issuer,
    )
    principal = await request.app.state.verifier.verify(token)  # the signing key must match the API's key
    return await _open_session(request, settings, principal, safe_next(form.get("next")))


async def _open_session(request: Request, settings: UISettings, principal: Principal, target: str) -> Response:
    """A new server-side session (the old one, if any, ends), its cookie, and a fresh CSRF token."""
    await sessions.drop(request, request.cookies.get(COOKIE))
    key = await sessions.open_session(request.app.state.engine, principal, settings.session_ttl_s)
    if target == "/ui/":
        if principal.role is Role.ministry and principal.ministry:
            target = f"/ui/ministry/{principal.ministry.value}"
        elif principal.role is Role.operator:
            target = "/ui/ops"
    response = RedirectResponse(target, status_code=303)
    secure = settings.secure_cookies
    response.set_cookie(
        COOKIE, key, max_age=settings.session_ttl_s, httponly=True, samesite="lax", secure=secure, path="/ui"
    )
    sessions.set_csrf_cookie(request, response, secure, fresh=True)
    return response


def _signin_again(request: Request, settings: UISettings, form: dict[str, str], key: str) -> HTMLResponse:
    return render(
        request,
        "signin.html",
        status=422,
        settings=settings,
        demo_open=demo_signin_open(request, settings),
        demo=DEMO_PARTICIPANTS,
        roles=[r.value for r in Role],
        next=safe_next(form.get("next")),
        message_key=key,
        principal=None,
    )


@router.post("/signout")
async def signout(request: Request, settings: Settings) -> Response:
    """Ends the session on the server: the row goes, so a copy of the cookie signs nobody in."""
    await read_form(request)
    await sessions.drop(request, request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/?signed_out=1", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", secure=settings.secure_cookies, httponly=True, samesite="lax")
    return response


@router.get("/signin/oidc")
async def oidc_start(request: Request, settings: Settings, next: str | None = None) -> Response:
    """Production sign-in: send the user to the OIDC provider (authorization code with PKCE S256)."""
    if not settings.oidc_configured:
        return error_page(request, 503, "signin.not_configured")
    url, pending = await oidc.start(settings)
    key = await sessions.put(request, "oidc", {**pending, "next": safe_next(next)}, 600)
    response = RedirectResponse(url, status_code=303)
    # Lax: the provider's redirect back is a top-level GET from another site, which Lax lets through.
    response.set_cookie(
        OIDC_COOKIE, key, max_age=600, httponly=True, samesite="lax", secure=settings.secure_cookies, path="/ui"
    )
    return response


@router.get("/oidc/callback")
async def oidc_callback(
    request: Request, settings: Settings, code: str = "", state: str = "", error: str = ""
) -> Response:
    """The provider's answer: the sign-in in flight (single use) must be this browser's and its state must
    match; the code is exchanged with the PKCE verifier and the ID token verified (JWKS, nonce)."""
    if not settings.oidc_configured:
        return error_page(request, 503, "signin.not_configured")
    pending = await sessions.take(request, "oidc", request.cookies.get(OIDC_COOKIE))
    if pending is None or not state or not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
        raise oidc.SignInFailed("This sign-in is not the one this browser started (state), or it expired.")
    if error or not code:
        raise oidc.SignInFailed(f"The provider did not sign you in: {error[:200] or 'no code'}.")
    claims = await oidc.finish(settings, pending, code)
    principal = oidc.principal_from(settings, claims, ORG)
    response = await _open_session(request, settings, principal, safe_next(pending.get("next")))
    response.delete_cookie(OIDC_COOKIE, path="/ui", secure=settings.secure_cookies, httponly=True, samesite="lax")
    return response


# ---- a battery ----


@router.get("/batteries/{battery_id}", response_class=HTMLResponse)
async def battery(
    request: Request,
    session: SessionDep,
    principal: Viewer,
    battery_id: str,
    at: Annotated[date | None, Query(description="Composition as built at the end of this day (KST).")] = None,
) -> Response:
    viewer = require_signin(request)
    try:
        page = await ui.battery_page(session, viewer, battery_id, at)
    except Forbidden as exc:
        raise _problem(exc, org=viewer.org, id=battery_id) from None
    except NotFound as exc:
        raise _problem(exc, id=battery_id) from None
    return render(request, "battery.html", principal=viewer, at=at, **page)


@router.get("/vehicles/{vin}", response_class=HTMLResponse)
async def vehicle(
    request: Request,
    session: SessionDep,
    principal: Viewer,
    vin: str,
    at: Annotated[date | None, Query(description="The batteries in it at the end of this day (KST).")] = None,
) -> Response:
    """A vehicle's batteries and their installation history (MOLIT, authorities, its OEM and custodians)."""
    viewer = require_signin(request)
    try:
        page = await ui.vehicle_page(session, viewer, vin, at)
    except NotFound as exc:
        raise _problem(exc, vin=vin) from None
    return render(request, "vehicle.html", principal=viewer, at=at, **page)


@router.get("/passport/{battery_id}", response_class=HTMLResponse)
async def public_passport(request: Request, session: SessionDep, principal: Viewer, battery_id: str) -> Response:
    try:
        passport = await ui.public_passport(session, battery_id)
    except NotFound as exc:
        raise _problem(exc, id=battery_id) from None
    return render(request, "passport.html", passport=passport)


# ---- ministry dashboards ----


def _ministry(request: Request, code: str) -> tuple[Ministry, Principal]:
    try:
        ministry = Ministry(code.upper())
    except ValueError:
        raise _problem(NotFound(f"No ministry '{code}'.", code="unknown-ministry"), code=code) from None
    viewer = require_signin(request)
    if access.may_see_ministry_view(viewer, ministry):
        return ministry, viewer
    raise _problem(
        Forbidden(f"This view is for {ministry.value} only.", code="wrong-ministry"), ministry=ministry.value
    )


@router.get("/ministry", response_class=HTMLResponse)
async def my_dashboard(request: Request, principal: Viewer) -> Response:
    viewer = require_signin(request)
    if viewer.role is Role.ministry and viewer.ministry:
        return RedirectResponse(f"/ui/ministry/{viewer.ministry.value}", status_code=303)
    if viewer.role is Role.admin:
        return render(request, "home.html", principal=viewer, q="", message_key="dash.choose")
    raise _problem(Forbidden("Ministries only.", code="wrong-ministry"), ministry="/".join(m.value for m in Ministry))


@dataclass(frozen=True, slots=True)
class DashboardFilters:
    """A dashboard's query: the period (`from`, `to`: YYYY-MM) and region, as given (parsed once the viewer
    may see the ministry's view)."""

    start: str | None
    end: str | None
    region: str | None

    def form(self) -> dict[str, str]:
        return {"from": self.start or "", "to": self.end or "", "region": self.region or ""}


def dashboard_filters(
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    region: str | None = None,
) -> DashboardFilters:
    return DashboardFilters(start, end, region)


Filters = Annotated[DashboardFilters, Depends(dashboard_filters)]


async def _dashboard(
    request: Request, session: AsyncSession, code: str, f: DashboardFilters
) -> tuple[Ministry, Principal, ui.Dashboard]:
    """The ministry's dashboard for the period, once the viewer may see it."""
    ministry, viewer = _ministry(request, code)
    return ministry, viewer, await ui.dashboard(session, ministry, ui.make_period(f.start, f.end, f.region))


@router.get("/ministry/{code}", response_class=HTMLResponse)
async def dashboard(request: Request, session: SessionDep, principal: Viewer, code: str, f: Filters) -> Response:
    _, viewer, d = await _dashboard(request, session, code, f)
    filters = f.form()
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "dashboard.html",
        principal=viewer,
        d=d,
        filters=filters,
        query=query,
        regions=[k for k in i18n.LABELS if k.startswith("KR-")],
    )


@router.get("/ministry/{code}/csv/{table}")
async def dashboard_csv(
    request: Request, session: SessionDep, principal: Viewer, code: str, table: str, f: Filters
) -> Response:
    ministry, _, d = await _dashboard(request, session, code, f)
    body = ui.to_csv(d.table(table))
    name = f"{ministry.value.lower()}-{table}.csv"
    return Response(
        body.encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


# ---- operations ----


def _operator(request: Request) -> Principal:
    viewer = require_signin(request)
    if not access.may_see_operations(viewer):
        raise Forbidden("Operators only.", code="operators-only")
    return viewer


@router.get("/ops", response_class=HTMLResponse)
async def operations(request: Request, principal: Viewer, settings: Settings) -> Response:
    viewer = _operator(request)
    report = await ui.operations(request.app.state)
    return render(request, "ops.html", principal=viewer, ops=report, refresh_s=settings.ops_refresh_s)


@router.get("/ops/live", response_class=HTMLResponse)
async def operations_live(request: Request, principal: Viewer) -> Response:
    """The live part of the operations page, fetched again every few seconds."""
    viewer = _operator(request)
    report = await ui.operations(request.app.state)
    return render(request, "ops_live.html", principal=viewer, ops=report)
