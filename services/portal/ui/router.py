"""The web UI under /ui/: server-rendered pages for ministries, operators, participants and the public.

Sign-in puts a token in an HttpOnly, SameSite=Lax cookie; the UI verifies it with the same TokenVerifier
as the API, and every page applies the same access rules as the API it stands for. Errors are rendered as
pages with a sentence in the reader's language, never as stack traces."""

from __future__ import annotations

import logging
import re
import secrets
import time as clock
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import jinja2
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from services.portal.ui import i18n
from services.portal.ui import service as ui
from services.portal.ui.settings import UISettings
from shared import access
from shared.auth import Ministry, Principal, Role, TokenVerifier, mint_token
from shared.db import SessionDep
from shared.logs import request_id_var
from shared.problems import Forbidden, NotFound, Problem, Unauthorized

log = logging.getLogger("batterytrace.portal.ui")
HERE = Path(__file__).parent
STATIC = HERE / "static"
COOKIE, LANG_COOKIE = "bt_session", "bt_lang"
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


def signed_in(request: Request) -> Principal | None:
    """The principal of the session cookie; an expired or foreign token counts as signed out."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    verifier: TokenVerifier | None = getattr(request.app.state, "verifier", None)
    if verifier is None:
        return None
    try:
        return verifier.verify(token)
    except Problem:
        return None


Viewer = Annotated[Principal | None, Depends(signed_in)]
Settings = Annotated[UISettings, Depends(ui_settings)]


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = lang_of(request)
    principal = context.pop("principal", None) or signed_in(request)
    html = templates.get_template(name).render(
        request=request,
        lang=lang,
        t=i18n.translator(lang),
        label=i18n.labeller(lang),
        column=lambda key: i18n.column(key, lang),
        principal=principal,
        ministries=list(Ministry),
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def error_page(request: Request, status: int, key: str, **values: Any) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message_key=key, values=values)


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
                response = error_page(request, exc.status, key or "error.invalid_input", **context)
            except RequestValidationError as exc:
                detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
                response = error_page(request, 422, "error.invalid_input", detail=detail)
            except Exception:
                log.exception("UI page failed")
                response = error_page(request, 500, "error.internal", rid=request_id_var.get() or "-")
            elapsed = (clock.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
            return response

        return wrapped


router = APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)


def _problem(exc: Problem, **values: Any) -> Problem:
    exc.ui_values = values  # type: ignore[attr-defined]
    return exc


def require_signin(principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthorized("Sign in to see this page.")
    return principal


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
    return render(request, "home.html", principal=principal, q="")


@router.get("/lookup", response_class=HTMLResponse)
async def lookup(request: Request, session: SessionDep, principal: Viewer, q: str = "") -> Response:
    """Signed in: the battery's page. Not signed in: its public passport (VIN look-ups need sign-in)."""
    q = q.strip()
    if not q:
        return render(request, "home.html", status=422, principal=principal, q=q, message_key="lookup.empty")
    if ui.looks_like_vin(q) and not access.may_look_up_by_vin(principal):
        return render(request, "home.html", status=401, principal=None, q=q, message_key="lookup.vin_needs_signin")
    found = await ui.resolve(session, q)
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


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, settings: Settings, next: str | None = None) -> Response:
    expired = bool(request.cookies.get(COOKIE)) and signed_in(request) is None
    return render(
        request,
        "signin.html",
        settings=settings,
        demo=DEMO_PARTICIPANTS,
        roles=[r.value for r in Role],
        next=safe_next(next),
        message_key="error.session" if expired else None,
    )


@router.post("/signin")
async def signin(request: Request, settings: Settings) -> Response:
    """The development sign-in: mints a token with the local key and puts it in the session cookie."""
    if not settings.dev_signin or settings.dev_signing_key_file is None:
        raise NotFound("The demo sign-in is not enabled on this portal.")
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
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
    principal = request.app.state.verifier.verify(token)  # the signing key must match the API's key
    target = safe_next(form.get("next"))
    if target == "/ui/":
        if principal.role is Role.ministry and principal.ministry:
            target = f"/ui/ministry/{principal.ministry.value}"
        elif principal.role is Role.operator:
            target = "/ui/ops"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.session_ttl_s,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/ui",
    )
    return response


def _signin_again(request: Request, settings: UISettings, form: dict[str, str], key: str) -> HTMLResponse:
    return render(
        request,
        "signin.html",
        status=422,
        settings=settings,
        demo=DEMO_PARTICIPANTS,
        roles=[r.value for r in Role],
        next=safe_next(form.get("next")),
        message_key=key,
        principal=None,
    )


@router.post("/signout")
async def signout() -> Response:
    response = RedirectResponse("/ui/?signed_out=1", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/signin/oidc")
async def oidc_start(request: Request, settings: Settings) -> Response:
    """Production sign-in: send the user to the OIDC provider (authorization-code flow)."""
    if not settings.oidc_configured:
        return error_page(request, 503, "signin.not_configured")
    state = secrets.token_urlsafe(24)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id,
            "redirect_uri": settings.oidc_redirect_uri,
            "scope": settings.oidc_scope,
            "state": state,
        }
    )
    response = RedirectResponse(f"{settings.oidc_authorize_url}?{query}", status_code=303)
    response.set_cookie("bt_oidc_state", state, max_age=600, httponly=True, samesite="lax", path="/ui")
    return response


@router.get("/oidc/callback")
async def oidc_callback(request: Request) -> Response:
    """Not implemented: exchanging the code for a token needs the provider's token endpoint and a client
    secret, which this portal does not hold yet. Says so instead of pretending."""
    return error_page(request, 501, "signin.oidc_unfinished")


# ---- a battery ----


@router.get("/batteries/{battery_id}", response_class=HTMLResponse)
async def battery(
    request: Request,
    session: SessionDep,
    principal: Viewer,
    battery_id: str,
    at: Annotated[date | None, Query(description="Composition as built at the end of this day (KST).")] = None,
) -> Response:
    viewer = require_signin(principal)
    try:
        page = await ui.battery_page(session, viewer, battery_id, at)
    except Forbidden as exc:
        raise _problem(exc, org=viewer.org, id=battery_id) from None
    except NotFound as exc:
        raise _problem(exc, id=battery_id) from None
    return render(request, "battery.html", principal=viewer, at=at, **page)


@router.get("/passport/{battery_id}", response_class=HTMLResponse)
async def public_passport(request: Request, session: SessionDep, battery_id: str) -> Response:
    try:
        passport = await ui.public_passport(session, battery_id)
    except NotFound as exc:
        raise _problem(exc, id=battery_id) from None
    return render(request, "passport.html", passport=passport)


# ---- ministry dashboards ----


def _ministry(code: str, principal: Principal | None) -> tuple[Ministry, Principal]:
    try:
        ministry = Ministry(code.upper())
    except ValueError:
        raise _problem(NotFound(f"No ministry '{code}'.", code="unknown-ministry"), code=code) from None
    viewer = require_signin(principal)
    if access.may_see_ministry_view(viewer, ministry):
        return ministry, viewer
    raise _problem(
        Forbidden(f"This view is for {ministry.value} only.", code="wrong-ministry"), ministry=ministry.value
    )


@router.get("/ministry", response_class=HTMLResponse)
async def my_dashboard(request: Request, principal: Viewer) -> Response:
    viewer = require_signin(principal)
    if viewer.role is Role.ministry and viewer.ministry:
        return RedirectResponse(f"/ui/ministry/{viewer.ministry.value}", status_code=303)
    if viewer.role is Role.admin:
        return render(request, "home.html", principal=viewer, q="", message_key="dash.choose")
    raise _problem(Forbidden("Ministries only.", code="wrong-ministry"), ministry="/".join(m.value for m in Ministry))


@router.get("/ministry/{code}", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    session: SessionDep,
    principal: Viewer,
    code: str,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    region: str | None = None,
) -> Response:
    ministry, viewer = _ministry(code, principal)
    d = await ui.dashboard(session, ministry, ui.make_period(start, end, region))
    filters = {"from": start or "", "to": end or "", "region": region or ""}
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
    session: SessionDep,
    principal: Viewer,
    code: str,
    table: str,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    region: str | None = None,
) -> Response:
    ministry, _ = _ministry(code, principal)
    d = await ui.dashboard(session, ministry, ui.make_period(start, end, region))
    body = ui.to_csv(d.table(table))
    name = f"{ministry.value.lower()}-{table}.csv"
    return Response(
        body.encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


# ---- operations ----


def _operator(principal: Principal | None) -> Principal:
    viewer = require_signin(principal)
    if not access.may_see_operations(viewer):
        raise Forbidden("Operators only.", code="operators-only")
    return viewer


@router.get("/ops", response_class=HTMLResponse)
async def operations(request: Request, principal: Viewer, settings: Settings) -> Response:
    viewer = _operator(principal)
    report = await ui.operations(request.app.state)
    return render(request, "ops.html", principal=viewer, ops=report, refresh_s=settings.ops_refresh_s)


@router.get("/ops/live", response_class=HTMLResponse)
async def operations_live(request: Request, principal: Viewer) -> Response:
    """The live part of the operations page, fetched again every few seconds."""
    viewer = _operator(principal)
    report = await ui.operations(request.app.state)
    return render(request, "ops_live.html", principal=viewer, ops=report)
