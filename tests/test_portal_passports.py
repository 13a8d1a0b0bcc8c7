"""Battery passports: the Battery Pass 1.2 aspects layout, valid against the standard's schemas, and
exactly the fields of each access level."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft4Validator

from tests.conftest import RegistrySettings, serve
from tests.factories import create_models, register
from tests.portal_helpers import Lifecycle, at, portal_app, portal_settings, topics, wait_registered, wait_sequence
from tests.standards import standard

SCHEMA_FILES = {
    "generalProductInformation": "GeneralProductInformation-schema.json",
    "materialComposition": "MaterialComposition-schema.json",
    "carbonFootprint": "CarbonFootprintForBatteries-schema.json",
    "circularity": "Circularity-schema.json",
}
ASPECTS = set(SCHEMA_FILES)


def assert_valid_aspects(passport: dict) -> None:
    """Each aspect validates against its schema once the fields the passport declares restricted or
    unavailable are taken out of `required`."""
    for name, aspect in passport["aspects"].items():
        schema = json.loads(standard("batterypass", SCHEMA_FILES[name]).read_text())
        absent = set(passport["restricted"].get(name, [])) | set(passport["unavailable"].get(name, []))
        assert not absent & set(aspect), (name, absent & set(aspect))
        schema = copy.deepcopy(schema)
        schema["required"] = [k for k in schema["required"] if k not in absent]
        errors = sorted(
            Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER).iter_errors(aspect), key=str
        )
        assert not errors, f"{name}: {[e.message for e in errors]}"
        missing = set(schema["required"]) - set(aspect)
        assert not missing, (name, missing)


@pytest.fixture
async def portal(make_settings, token, infra, topic_prefix):
    from services.registry.app import create_app

    async with (
        serve(create_app(make_settings(RegistrySettings))) as registry,
        portal_app(portal_settings(make_settings)) as portal,
    ):
        admin = token("ops", "admin")
        r = await registry.post(
            "/v1/participants", json={"id": "LGES", "name": "LG Energy Solution", "role": "manufacturer"}, headers=admin
        )
        assert r.status_code == 201, r.text
        maker = token("LGES", "manufacturer")
        await create_models(registry, maker, "NCM-PACK-77")
        await register(registry, maker, battery_id="P1", model_id="NCM-PACK-77")
        await register(registry, maker, battery_id="P2", model_id="NCM-PACK-77")
        life = Lifecycle(infra.kafka.bootstrap, topics(topic_prefix)[1])
        ev = life.event
        await life.publish(
            [
                life.manufactured("P1", "LGES", at("2026-01-15")),
                ev("P1", "TRANSFERRED", "LGES", "manufacturer", at("2026-01-20"), {"to": "HMC"}),
                ev("P1", "INSTALLED", "HMC", "oem", at("2026-02-01"), {"vin": "KMHEM41AP6A000001"}, region="KR-31"),
                ev("P1", "REMOVED", "DISM-1", "dismantler", at("2026-06-01"), {"reason": "accident"}, region="KR-31"),
                ev("P1", "COLLECTED", "COL-1", "collector", at("2026-06-05"), {"centre": "C-1", "region": "KR-41"}),
                ev("P1", "GRADED", "COL-1", "assessor", at("2026-06-10"), {"soh_pct": 81, "grade": "reuse"}),
                ev("P1", "TRANSFERRED", "COL-1", "collector", at("2026-06-12"), {"to": "REP-1"}),
                ev(
                    "P1",
                    "REPURPOSED",
                    "REP-1",
                    "repurposer",
                    at("2026-07-01"),
                    {"new_application": "ESS", "rated_capacity": 50},
                ),
                ev(
                    "P1",
                    "SAFETY_INSPECTED",
                    "KTL",
                    "certifier",
                    at("2026-07-10"),
                    {"standard": "KC 10031", "result": "pass", "body": "KTL"},
                ),
                life.manufactured("P2", "LGES", at("2026-01-15")),
                ev("P2", "REMOVED", "DISM-1", "dismantler", at("2026-03-01"), {"reason": "end_of_life"}),
                ev(
                    "P2",
                    "RECYCLED",
                    "DISM-1",
                    "recycler",
                    at("2026-03-05"),
                    {"process": "pyro", "input_mass_kg": 400, "black_mass_kg": 100, "recovered_kg": {"nickel": 30}},
                ),
            ]
        )
        await wait_sequence(portal, admin, "P1", 9)
        await wait_sequence(portal, admin, "P2", 3)
        await wait_registered(portal, admin, "P1")
        yield portal


EXT_CONDITION, EXT_LIFECYCLE, EXT_MANUFACTURING = (
    "kr.batterytrace.condition",
    "kr.batterytrace.lifecycle",
    "kr.batterytrace.manufacturing",
)


async def test_public_passport_without_token(portal) -> None:
    r = await portal.get("/v1/passports/P1")
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["access_level"] == "public"
    assert set(p["aspects"]) == ASPECTS and p["extensions"] == {}
    assert "batteryMaterials" not in p["aspects"]["materialComposition"]
    assert p["restricted"] == {"materialComposition": ["batteryMaterials"]}
    general = p["aspects"]["generalProductInformation"]
    assert general["batteryStatus"] == "Repurposed" and general["batteryCategory"] == "stationary"
    assert general["manufacturerInformation"]["contactName"] == "LG Energy Solution"
    assert general["operatorInformation"]["identifier"] == "REP-1"
    assert general["batteryPassportIdentifier"] == p["passport_id"] != p["predecessor"]
    assert p["predecessor"].startswith("urn:batterytrace:")
    assert "puttingIntoService" not in general  # not installed since it was repurposed
    assert p["aspects"]["carbonFootprint"] == {"batteryCarbonFootprint": 61.5, "absoluteCarbonFootprint": 4760.1}
    assert_valid_aspects(p)


async def test_recycled_battery_passport_is_waste(portal) -> None:
    p = (await portal.get("/v1/passports/P2")).json()
    assert p["status"] == "Waste" and p["predecessor"] is None
    assert p["aspects"]["generalProductInformation"]["batteryStatus"] == "Waste"
    assert_valid_aspects(p)


LEVELS = [
    (("COL-1", "collector"), "legitimate_interest", {EXT_CONDITION}),
    (("REP-1", "repurposer"), "legitimate_interest", {EXT_CONDITION}),
    (("COL-9", "collector"), "public", set()),  # never handled P1
    (("HMC", "oem"), "public", set()),  # handled it, but not a legitimate-interest role
    # Issue 12: a certifier reads what it certified (condition, safety), no material masses; one that
    # certified nothing of P1 reads the public level.
    (("KTL", "certifier"), "legitimate_interest", {EXT_CONDITION}),
    (("KTL-9", "certifier"), "public", set()),
    (("MOLIT", "ministry", "MOLIT"), "authority", {EXT_CONDITION, EXT_LIFECYCLE}),
    (("LGES", "manufacturer"), "manufacturer", {EXT_CONDITION, EXT_LIFECYCLE, EXT_MANUFACTURING}),
    (("SDI", "manufacturer"), "public", set()),
]


async def test_each_access_level_sees_exactly_its_fields(portal, token) -> None:
    for who, level, extensions in LEVELS:
        p = (await portal.get("/v1/passports/P1", headers=token(*who))).json()
        check_level(p, level, extensions)


def check_level(p: dict, level: str, extensions: set[str]) -> None:
    assert p["access_level"] == level
    assert set(p["aspects"]) == ASPECTS
    assert set(p["extensions"]) == extensions
    materials = p["aspects"]["materialComposition"].get("batteryMaterials")
    if level in ("public", "legitimate_interest"):  # material masses are commercial facts (issue 12)
        assert materials is None and p["restricted"] == {"materialComposition": ["batteryMaterials"]}
    else:
        assert p["restricted"] == {}
        assert {m["batteryMaterialName"]: m["batteryMaterialMass"] for m in materials} == {
            "lithium": 8.0,
            "nickel": 40.0,
            "cobalt": 5.0,
            "manganese": 4.5,
            "graphite": 50.0,
        }
    if EXT_CONDITION in extensions:
        cond = p["extensions"][EXT_CONDITION]
        assert (cond["state"], cond["grade"], cond["soh_pct"], cond["safety_inspection"]) == (
            "repurposed",
            "reuse",
            81.0,
            "pass",
        )
    if EXT_LIFECYCLE in extensions:
        lc = p["extensions"][EXT_LIFECYCLE]
        assert (lc["custodian"], lc["events"], lc["chain"]) == ("REP-1", 9, "valid")
        assert lc["safety_inspections"][0]["body"] == "KTL"
    if EXT_MANUFACTURING in extensions:
        assert p["extensions"][EXT_MANUFACTURING]["serial_number"].startswith("SN")
    assert_valid_aspects(p)


async def test_unknown_battery_passport_is_404(portal) -> None:
    r = await portal.get("/v1/passports/NOPE")
    assert r.status_code == 404 and r.json()["code"] == "unknown-battery"


def _b64url(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def test_signed_passport_verifies_offline_with_the_published_jwks(portal, token) -> None:
    """The JWS is checked here without the portal's JWS library: Ed25519 over `header.payload` (RFC 7515 §5.2,
    RFC 8037) with the key the JWKS names by `kid`; the payload is the passport the caller's level sees."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    jwks = (await portal.get("/.well-known/jwks.json")).json()
    keys = {k["kid"]: k for k in jwks["keys"]}
    for headers, level in [({}, "public"), (token("LGES", "manufacturer"), "manufacturer")]:
        r = await portal.get("/v1/passports/P1/jws", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/jose")
        header_b64, payload_b64, sig_b64 = r.text.split(".")
        header = json.loads(_b64url(header_b64))
        assert header["alg"] == "EdDSA" and header["kid"] in keys
        jwk = keys[header["kid"]]
        assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
        Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"])).verify(
            _b64url(sig_b64), f"{header_b64}.{payload_b64}".encode()
        )
        signed = json.loads(_b64url(payload_b64))
        plain = (await portal.get("/v1/passports/P1", headers=headers)).json()
        assert signed["access_level"] == level and signed["passport_id"] == plain["passport_id"]
        assert signed["aspects"] == plain["aspects"]
    tampered = r.text.split(".")
    tampered[1] = tampered[1][:-4] + ("AAAA" if not tampered[1].endswith("AAAA") else "BBBB")
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"])).verify(
            _b64url(tampered[2]), f"{tampered[0]}.{tampered[1]}".encode()
        )
    assert (await portal.get("/v1/passports/NOPE/jws")).status_code == 404


def test_jwk_thumbprint_is_rfc_7638_as_rfc_8037_computes_it() -> None:
    from services.portal.passports.signing import thumbprint

    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
