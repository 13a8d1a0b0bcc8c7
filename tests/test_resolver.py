"""The GS1 Digital Link resolver (GS1-Conformant resolver standard 1.1): redirects by link type, the
default link, RFC 9264 linksets, the description file, and each battery's QR code."""

from __future__ import annotations

import io

import pytest

from tests.conftest import RegistrySettings, serve
from tests.factories import TEST_GS1_PREFIX, register
from tests.passport_helpers import BATTERY_PASS_DECLARATION, DECLARED_MODEL, DOC
from tests.portal_helpers import eventually, portal_app, portal_settings, wait_registered

GTIN = "08801234567893"
LINKS = {
    "R1": "https://id.example.kr/01/08801234567893/21/R1",
    "R2": "https://id.example.kr/01/08801234567893/21/A%2FB",
}


@pytest.fixture
async def resolver(make_settings, token):
    from services.registry.app import create_app

    async with (
        serve(create_app(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        admin = token("ops", "admin")
        r = await registry.post(
            "/v1/participants",
            json={
                "id": "LGES",
                "name": "LG Energy Solution",
                "role": "manufacturer",
                "gs1_company_prefixes": [TEST_GS1_PREFIX],
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        maker = token("LGES", "manufacturer")
        r = await registry.post(
            "/v1/models", json={**DECLARED_MODEL, "passport": {"batterypass": BATTERY_PASS_DECLARATION}}, headers=maker
        )
        assert r.status_code == 201, r.text
        for bid, link in LINKS.items():
            await register(registry, maker, battery_id=bid, model_id=DECLARED_MODEL["id"])
            r = await registry.post(
                f"/v1/batteries/{bid}/aliases", json={"scheme": "gs1_digital_link", "value": link}, headers=maker
            )
            assert r.status_code in (200, 201), r.text
        await register(registry, maker, battery_id="R3", model_id=DECLARED_MODEL["id"])  # no Digital Link
        await wait_registered(portal, admin, "R3")

        async def known() -> bool | None:
            codes = [(await portal.get(f"/01/{GTIN}/21/{s}")).status_code for s in ("R1", "A%2FB")]
            return True if codes == [307, 307] else None

        await eventually(known, timeout_s=30)
        yield portal


async def test_default_link_is_the_public_passport(resolver) -> None:
    r = await resolver.get(f"/01/{GTIN}/21/R1")
    assert r.status_code == 307 and r.headers["location"] == "http://testserver/ui/passport/R1"
    assert 'rel="linkset"' in r.headers["link"] and "application/linkset+json" in r.headers["link"]


@pytest.mark.parametrize(
    ("link_type", "location"),
    [
        ("gs1:pip", "http://testserver/ui/passport/R1"),
        ("gs1:certificationInfo", "http://testserver/v1/passports/R1/jws"),
        ("gs1:sustainabilityInfo", "http://testserver/v1/passports/R1/catenax"),
        (
            "gs1:epcis",
            "http://testserver/epcis/events?MATCH_epc=https%3A%2F%2Fid.example.kr%2F01%2F08801234567893%2F21%2FR1",
        ),
        ("gs1:safetyInfo", f"{DOC}/safety.pdf"),
        ("https://gs1.org/voc/recyclingInfo", f"{DOC}/collection.pdf"),
        ("gs1:defaultLink", "http://testserver/ui/passport/R1"),
        ("gs1:recipeInfo", "http://testserver/ui/passport/R1"),  # not available: the default link
    ],
)
async def test_link_type_redirects_to_its_link(resolver, link_type, location) -> None:
    r = await resolver.get(f"/01/{GTIN}/21/R1", params={"linkType": link_type})
    assert (r.status_code, r.headers["location"]) == (307, location)


async def test_linkset_on_request_by_link_type_or_accept(resolver) -> None:
    for params, headers in (({"linkType": "all"}, {}), ({}, {"Accept": "application/linkset+json"})):
        r = await resolver.get(f"/01/{GTIN}/21/R1", params=params, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/linkset+json")
        (context,) = r.json()["linkset"]
        assert context["anchor"] == f"http://testserver/01/{GTIN}/21/R1"
        voc = "https://gs1.org/voc/"
        assert context[voc + "defaultLink"][0]["href"] == "http://testserver/ui/passport/R1"
        assert {h["href"] for h in context[voc + "certificationInfo"]} == {
            "http://testserver/v1/passports/R1/jws",
            "http://testserver/v1/passports/R1",
            f"{DOC}/doc.pdf",
        }
        assert all(isinstance(v, list) and all("href" in t for t in v) for k, v in context.items() if k != "anchor")
        # only what the public level reads: no test report (authorities), no dismantling manual (legitimate interest)
        assert "test-report.pdf" not in r.text and "dis.pdf" not in r.text


async def test_short_gtins_are_the_same_gtin_14(resolver) -> None:
    """GTIN-13 `8801234567893` is GTIN-14 `08801234567893`: the same battery."""
    r = await resolver.get("/01/8801234567893/21/R1")
    assert (r.status_code, r.headers["location"]) == (307, "http://testserver/ui/passport/R1")


async def test_a_serial_with_an_encoded_slash_is_one_serial(resolver) -> None:
    r = await resolver.get(f"/01/{GTIN}/21/A%2FB")
    assert (r.status_code, r.headers["location"]) == (307, "http://testserver/ui/passport/R2")
    assert (await resolver.get(f"/01/{GTIN}/21/A/B")).status_code == 400  # a segment too many


async def test_product_level_answers_the_model_declaration(resolver) -> None:
    r = await resolver.get(f"/01/{GTIN}", params={"linkType": "gs1:certificationInfo"})
    assert (r.status_code, r.headers["location"]) == (307, f"{DOC}/doc.pdf")
    (context,) = (await resolver.get(f"/01/{GTIN}", params={"linkType": "linkset"})).json()["linkset"]
    assert context["anchor"] == f"http://testserver/01/{GTIN}"
    assert not any("/ui/passport/" in t["href"] for v in context.values() if isinstance(v, list) for t in v)


async def test_description_file(resolver) -> None:
    d = (await resolver.get("/.well-known/gs1resolver")).json()
    assert d["resolverRoot"] == "http://testserver" and d["supportedPrimaryKeys"] == ["01"]
    assert {"namespace": "https://gs1.org/voc/", "prefix": "gs1:"} in d["supportedLinkType"]


async def test_each_battery_has_a_qr_code_of_its_digital_link(resolver) -> None:
    import segno

    svg = await resolver.get("/v1/batteries/R1/digital-link/qr.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<svg") and "<path" in svg.text
    png = await resolver.get("/v1/batteries/R2/digital-link/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    # the matrix encodes the resolver URI: compare with the same URI drawn independently of the route
    expected = segno.make_qr(f"http://testserver/01/{GTIN}/21/A%2FB", error="m")
    out = io.BytesIO()
    expected.save(out, kind="png", scale=8, border=4)
    assert png.content == out.getvalue()
    r = await resolver.get("/v1/batteries/R3/digital-link/qr.svg")
    assert r.status_code == 404 and r.json()["code"] == "no-digital-link"
    assert (await resolver.get("/v1/batteries/NOPE/digital-link/qr.png")).status_code == 404
