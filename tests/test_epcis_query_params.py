"""The SimpleEventQuery parameter table: one test per parameter of the standard, against real stored events (the
portal's EPCIS table on PostgreSQL, written by its own projection, `from_capture`, as the consumer writes it),
through the portal's HTTP query. Each test asserts the events one parameter selects (values from the events
below), that a participant with no relation to them gets none of them, and the pure parsing of the parameters
(unknown or malformed → 400 QueryParameterException)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.portal.epcis import repository as repo
from services.portal.epcis.query import QueryParameterException, id_pattern, parse
from services.portal.epcis.service import from_capture
from tests.conftest import serve
from tests.portal_helpers import portal_settings

EX = "https://ns.example.com/epcis/"
CONTEXT = {"ex": EX}
A1, A2, B1, C1 = (f"urn:epc:id:sgtin:0614141.107346.{s}" for s in ("A1", "A2", "B1", "C1"))
PARENT = "urn:epc:id:sscc:0614141.1234567890"
RP1, BL1 = "urn:epc:id:sgln:0614141.07346.1234", "urn:epc:id:sgln:0614141.07346.0"
LOT = "urn:epc:class:lgtin:4012345.012345.998877"
T = "2026-03-0{}T10:00:00+09:00"

E1: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventID": "urn:uuid:00000000-0000-4000-8000-000000000001",
    "eventTime": T.format(1),
    "eventTimeZoneOffset": "+09:00",
    "action": "ADD",
    "bizStep": "commissioning",
    "disposition": "active",
    "epcList": [A1, A2],
    "readPoint": {"id": RP1, "ex:room": "R1"},
    "bizLocation": {"id": BL1},
    "persistentDisposition": {"set": ["completeness_verified"]},
    "quantityList": [{"epcClass": LOT, "quantity": 10, "uom": "KGM"}],
    "ilmd": {"ex:lot": "L1", "ex:weight": 5},
    "ex:temp": 20,
    "ex:box": {"ex:depth": 7},
    "bizTransactionList": [{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:0614141073467:PO1"}],
    "sourceList": [{"type": "owning_party", "source": "urn:epc:id:pgln:0614141.00001"}],
    "destinationList": [{"type": "owning_party", "destination": "urn:epc:id:pgln:0614141.00002"}],
    "sensorElementList": [
        {
            "sensorMetadata": {
                "time": "2026-03-01T09:00:00+09:00",
                "startTime": "2026-03-01T08:00:00+09:00",
                "endTime": "2026-03-01T09:30:00+09:00",
                "deviceID": "urn:epc:id:giai:4000001.111",
                "bizRules": "https://example.com/rules/1",
                "ex:calibrated": "yes",
            },
            "sensorReport": [
                {"type": "Temperature", "value": 21.5, "uom": "CEL", "time": "2026-03-01T09:10:00+09:00"},
                {
                    "type": "Humidity",
                    "exception": "ALARM_CONDITION",
                    "component": "x",
                    "stringValue": "ok",
                    "booleanValue": True,
                    "hexBinaryValue": "0A1B",
                    "uriValue": "https://example.com/u",
                    "microorganism": "https://www.ncbi.nlm.nih.gov/taxonomy/1303",
                    "chemicalSubstance": "https://identifiers.org/inchikey:CZMRCDWAGMRECN",
                    "dataProcessingMethod": "https://example.com/dpm",
                    "deviceID": "urn:epc:id:giai:4000001.222",
                    "minValue": 1,
                    "maxValue": 3,
                    "meanValue": 2,
                    "sDev": 0.5,
                    "percRank": 50,
                    "percValue": 10,
                    "ex:note": "n",
                },
            ],
        }
    ],
}
E2: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventID": "urn:uuid:00000000-0000-4000-8000-000000000002",
    "eventTime": T.format(2),
    "eventTimeZoneOffset": "+09:00",
    "action": "OBSERVE",
    "bizStep": "shipping",
    "disposition": "in_transit",
    "epcList": [B1],
    "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.9"},
    "persistentDisposition": {"unset": ["completeness_verified"]},
    "quantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.012345.1", "quantity": 2.5, "uom": "KGM"}],
    "ex:temp": 30,
    "errorDeclaration": {
        "declarationTime": "2026-03-05T10:00:00+09:00",
        "reason": "incorrect_data",
        "correctiveEventIDs": ["urn:uuid:00000000-0000-4000-8000-0000000000c1"],
        "ex:by": "auditor",
    },
}
E3: dict[str, Any] = {
    "type": "AggregationEvent",
    "eventID": "urn:uuid:00000000-0000-4000-8000-000000000003",
    "eventTime": T.format(3),
    "eventTimeZoneOffset": "+09:00",
    "action": "ADD",
    "bizStep": "packing",
    "parentID": PARENT,
    "childEPCs": [A1],
    "childQuantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.099999.7", "quantity": 4}],
}
E4: dict[str, Any] = {
    "type": "TransformationEvent",
    "eventID": "urn:uuid:00000000-0000-4000-8000-000000000004",
    "eventTime": T.format(4),
    "eventTimeZoneOffset": "+09:00",
    "inputEPCList": [A2],
    "outputEPCList": [C1],
    "inputQuantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.011111.4", "quantity": 3, "uom": "KGM"}],
    "outputQuantityList": [{"epcClass": "urn:epc:class:lgtin:4012345.022222.5", "quantity": 1, "uom": "KGM"}],
    "transformationID": "urn:epc:id:gdti:0614141.12345.400",
}
E5: dict[str, Any] = {
    "type": "AssociationEvent",
    "eventID": "urn:uuid:00000000-0000-4000-8000-000000000005",
    "eventTime": T.format(5),
    "eventTimeZoneOffset": "+09:00",
    "action": "DELETE",
    "parentID": "urn:epc:id:grai:4012345.55555.987",
    "childEPCs": ["urn:epc:id:giai:4000001.12345"],
}
EVENTS = [E1, E2, E3, E4, E5]
ONE, TWO, THREE, FOUR, FIVE = (e["eventID"] for e in EVENTS)
ALL = {ONE, TWO, THREE, FOUR, FIVE}

#: (parameter, value, the events it selects). One row per parameter of the standard (README "EPCIS query").
TABLE: list[tuple[str, str | list[str], set[str]]] = [
    ("eventType", "ObjectEvent|TransformationEvent", {ONE, TWO, FOUR}),
    ("GE_eventTime", "2026-03-03T01:00:00Z", {THREE, FOUR, FIVE}),
    ("LT_eventTime", "2026-03-02T10:00:00+09:00", {ONE}),
    ("GE_recordTime", "2026-01-01T00:00:00Z", ALL),
    ("LT_recordTime", "2026-01-01T00:00:00Z", set()),
    ("EQ_action", "DELETE|OBSERVE", {TWO, FIVE}),
    ("EQ_bizStep", "https://ref.gs1.org/cbv/BizStep-shipping", {TWO}),
    ("EQ_disposition", "active", {ONE}),
    ("EQ_persistentDisposition_set", "completeness_verified", {ONE}),
    ("EQ_persistentDisposition_unset", "https://ref.gs1.org/cbv/Disp-completeness_verified", {TWO}),
    ("EQ_readPoint", RP1, {ONE}),
    ("WD_readPoint", RP1, {ONE}),
    ("EQ_bizLocation", BL1, {ONE}),
    ("WD_bizLocation", BL1, {ONE}),
    ("EQ_transformationID", "urn:epc:id:gdti:0614141.12345.400", {FOUR}),
    ("MATCH_epc", A1, {ONE, THREE}),
    ("MATCH_parentID", PARENT, {THREE}),
    ("MATCH_inputEPC", A2, {FOUR}),
    ("MATCH_outputEPC", "urn:epc:idpat:sgtin:0614141.107346.*", {FOUR}),
    ("MATCH_anyEPC", PARENT, {THREE}),
    ("MATCH_epcClass", "urn:epc:idpat:sgtin:4012345.012345.*", {ONE, TWO}),
    ("MATCH_inputEPCClass", "urn:epc:class:lgtin:4012345.011111.4", {FOUR}),
    ("MATCH_outputEPCClass", "urn:epc:idpat:sgtin:4012345.022222.*", {FOUR}),
    ("MATCH_anyEPCClass", "urn:epc:idpat:sgtin:4012345.*.*", {ONE, TWO, THREE, FOUR}),
    ("EQ_quantity", "10", {ONE}),
    ("GT_quantity", "3", {ONE, THREE}),
    ("GE_quantity", "3", {ONE, THREE, FOUR}),
    ("LT_quantity", "2.5", {FOUR}),
    ("LE_quantity", "2.5", {TWO, FOUR}),
    ("GE_quantity_KGM", "3", {ONE, FOUR}),
    ("EQ_eventID", f"{TWO}|{FIVE}", {TWO, FIVE}),
    ("EXISTS_errorDeclaration", "", {TWO}),
    ("GE_errorDeclarationTime", "2026-03-05T00:00:00Z", {TWO}),
    ("LT_errorDeclarationTime", "2026-03-05T00:00:00Z", set()),
    ("EQ_errorReason", "incorrect_data", {TWO}),
    ("EQ_correctiveEventID", "urn:uuid:00000000-0000-4000-8000-0000000000c1", {TWO}),
    ("EQ_ex:temp", "30", {TWO}),
    ("GT_ex:temp", "20", {TWO}),
    ("GE_ex:temp", "20", {ONE, TWO}),
    ("LT_ex:temp", "30", {ONE}),
    ("LE_ex:temp", "30", {ONE, TWO}),
    ("EXISTS_ex:box", "", {ONE}),
    ("EQ_INNER_ex:depth", "7", {ONE}),
    ("EXISTS_INNER_ex:depth", "", {ONE}),
    ("EQ_ILMD_ex:lot", "L1", {ONE}),
    ("GE_ILMD_ex:weight", "5", {ONE}),
    ("EXISTS_ILMD_ex:lot", "", {ONE}),
    ("EQ_ERROR_DECLARATION_ex:by", "auditor", {TWO}),
    ("EQ_SENSORMETADATA_ex:calibrated", "yes", {ONE}),
    ("EQ_SENSORREPORT_ex:note", "n", {ONE}),
    ("EQ_readPoint_ex:room", "R1", {ONE}),
    ("EQ_bizTransaction_po", "urn:epcglobal:cbv:bt:0614141073467:PO1", {ONE}),
    ("EQ_source_owning_party", "urn:epc:id:pgln:0614141.00001", {ONE}),
    ("EQ_destination_owning_party", "urn:epc:id:pgln:0614141.00002", {ONE}),
    ("EXISTS_sensorElementList", "", {ONE}),
    ("EQ_type", "Temperature", {ONE}),
    ("EQ_exception", "ALARM_CONDITION", {ONE}),
    ("EQ_component", "x", {ONE}),
    ("EQ_deviceID", "urn:epc:id:giai:4000001.111", {ONE}),
    ("EQ_dataProcessingMethod", "https://example.com/dpm", {ONE}),
    ("EQ_microorganism", "https://www.ncbi.nlm.nih.gov/taxonomy/1303", {ONE}),
    ("EQ_chemicalSubstance", "https://identifiers.org/inchikey:CZMRCDWAGMRECN", {ONE}),
    ("EQ_bizRules", "https://example.com/rules/1", {ONE}),
    ("EQ_stringValue", "ok", {ONE}),
    ("EQ_booleanValue", "true", {ONE}),
    ("EQ_hexBinaryValue", "0a1b", {ONE}),
    ("EQ_uriValue", "https://example.com/u", {ONE}),
    ("EQ_uom", "CEL", {ONE}),
    ("GE_time", "2026-03-01T00:10:00Z", {ONE}),
    ("LT_time", "2026-03-01T00:00:00Z", set()),
    ("GE_startTime", "2026-03-01T08:00:00+09:00", {ONE}),
    ("LT_startTime", "2026-03-01T08:00:00+09:00", set()),
    ("GE_endTime", "2026-03-01T09:30:00+09:00", {ONE}),
    ("LT_endTime", "2026-03-01T09:30:00+09:00", set()),
    ("EQ_value", "21.5", {ONE}),
    ("GE_value_CEL", "21", {ONE}),
    ("LT_value", "21", set()),
    ("GE_minValue", "1", {ONE}),
    ("LE_maxValue", "3", {ONE}),
    ("GT_meanValue", "1.5", {ONE}),
    ("LT_sDev", "1", {ONE}),
    ("EQ_percRank", "50", {ONE}),
    ("GE_percValue", "10", {ONE}),
]


@pytest.fixture
async def portal(make_settings) -> AsyncIterator[httpx.AsyncClient]:
    """The portal on a database holding EVENTS, captured by participant ACME."""
    async with serve(_portal_app(make_settings)) as client:
        rows = [
            from_capture(
                {
                    "event_id": e["eventID"],
                    "actor": "ACME",
                    "record_time": "2026-06-01T00:00:00Z",
                    "battery_ids": [],
                    "ledger_event_ids": [],
                    "context": CONTEXT,
                    "event": e,
                }
            )
            for e in EVENTS
        ]
        async with client.app.state.sessionmaker() as session, session.begin():  # type: ignore[attr-defined]
            await repo.add_captured(session, rows)
        yield client


def _portal_app(make_settings: Any) -> Any:
    from services.portal.app import create_app

    return create_app(portal_settings(make_settings, consumers_enabled=False))


def ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["eventID"] for e in r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]}


def test_every_parameter_of_the_standard_has_a_row() -> None:
    """GS1's REST binding lists the SimpleEventQuery parameters: each has a row here."""
    import orjson

    from tests.standards import standard

    doc = orjson.loads(standard("epcis", "rest", "openapi.json").read_bytes())
    names = {
        p["$ref"].rsplit("/", 1)[1]
        for p in doc["paths"]["/events"]["get"]["parameters"]
        if not p["$ref"].rsplit("/", 1)[1].startswith(("GS1-", "PerPage", "NextPageToken"))
    }
    covered = {row[0] for row in TABLE} | {"orderBy", "orderDirection", "eventCountLimit", "maxEventCount"}
    assert names <= covered, sorted(names - covered)


@pytest.mark.parametrize(("name", "value", "expected"), TABLE, ids=[row[0] for row in TABLE])
async def test_parameter(portal: httpx.AsyncClient, token: Any, name: str, value: str, expected: set[str]) -> None:
    headers = token("ops", "admin") | {"GS1-Extensions": f"ex={EX}"}
    assert ids(await portal.get("/epcis/events", params={name: value}, headers=headers)) == expected
    # the access rules apply to every result: a participant with no relation to these events sees none
    stranger = token("NOBODY", "recycler")
    assert ids(await portal.get("/epcis/events", params={name: value}, headers=stranger)) == set()


async def test_the_capturer_sees_its_own_events(portal: httpx.AsyncClient, token: Any) -> None:
    assert ids(await portal.get("/epcis/events", params={"EQ_action": "ADD"}, headers=token("ACME", "recycler"))) == {
        ONE,
        THREE,
    }


async def test_order_limits_and_pages(portal: httpx.AsyncClient, token: Any) -> None:
    admin = token("ops", "admin")

    def order(r: httpx.Response) -> list[str]:
        assert r.status_code == 200, r.text
        return [e["eventID"] for e in r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]

    r = await portal.get("/epcis/events", params={"orderBy": "eventTime", "orderDirection": "DESC"}, headers=admin)
    assert order(r) == [FIVE, FOUR, THREE, TWO, ONE]
    r = await portal.get("/epcis/events", params={"orderBy": "eventTime", "eventCountLimit": "3"}, headers=admin)
    assert order(r) == [ONE, TWO, THREE] and "link" not in r.headers
    # eventCountLimit holds across pages
    seen: list[str] = []
    params: dict[str, str] = {"orderBy": "eventTime", "eventCountLimit": "3", "perPage": "2"}
    while True:
        r = await portal.get("/epcis/events", params=params, headers=admin)
        seen += order(r)
        if "link" not in r.headers:
            break
        params["nextPageToken"] = httpx.URL(r.headers["link"][1:].split(">")[0]).params["nextPageToken"]
    assert seen == [ONE, TWO, THREE]
    r = await portal.get("/epcis/events", params={"maxEventCount": "4"}, headers=admin)
    assert r.status_code == 413 and r.json()["type"] == "epcisException:QueryTooLargeException"
    r = await portal.get("/epcis/events", params={"maxEventCount": "5"}, headers=admin)
    assert len(order(r)) == 5
    # a token from one order is refused for another
    r = await portal.get("/epcis/events", params={"perPage": "1", "orderBy": "eventTime"}, headers=admin)
    token_ = httpx.URL(r.headers["link"][1:].split(">")[0]).params["nextPageToken"]
    r = await portal.get("/epcis/events", params={"perPage": "1", "nextPageToken": token_}, headers=admin)
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/epcis/eventTypes/TransformationEvent/events", {FOUR}),
        (f"/epcis/epcs/{PARENT}/events", {THREE}),
        ("/epcis/bizSteps/shipping/events", {TWO}),
        (f"/epcis/bizLocations/{BL1}/events", {ONE}),
        (f"/epcis/readPoints/{RP1}/events", {ONE}),
        ("/epcis/dispositions/in_transit/events", {TWO}),
    ],
)
async def test_resource_paths(portal: httpx.AsyncClient, token: Any, path: str, expected: set[str]) -> None:
    assert ids(await portal.get(path, headers=token("ops", "admin"))) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"EQ_nonsense": "1"},
        {"eventtype": "ObjectEvent"},
        {"GE_eventTime": "yesterday"},
        {"GE_eventTime": "2026-01-01T00:00:00"},  # no time zone
        {"EQ_action": "LOOK"},
        {"GE_quantity": "many"},
        {"GE_quantity": "NaN"},
        {"perPage": "0"},
        {"perPage": "100000"},
        {"eventCountLimit": "-1"},
        {"eventCountLimit": "3", "maxEventCount": "3"},
        {"orderBy": "bizStep"},
        {"orderDirection": "UP"},
        {"MATCH_epc": "not a uri"},
        {"MATCH_epc": "urn:epc:idpat:sgtin:*.107346.A1"},
        {"EQ_booleanValue": "maybe"},
        {"GT_ex:temp": "warm"},
        {"nextPageToken": "zz"},
        {"EQ_bizStep": ""},
        {"EQ_bizStep": "urn:epcglobal:cbv:bizstep:\x00receiving"},  # a NUL, as schemathesis sent one
        {"MATCH_anyEPC": "urn:epc:id:sgtin:0614141.107346.\x00"},
    ],
)
async def test_a_bad_parameter_is_a_query_parameter_exception(
    portal: httpx.AsyncClient, token: Any, params: dict[str, str]
) -> None:
    r = await portal.get("/epcis/events", params=params, headers=token("ops", "admin"))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "epcisException:QueryParameterException" and body["title"] == "QueryParameterException"
    assert body["errors"][0]["field"] in params


async def test_a_nul_in_a_path_value_is_a_query_parameter_exception(portal: httpx.AsyncClient, token: Any) -> None:
    """The path's value is a parameter too (`/epcs/{epc}/events` is MATCH_anyEPC): a NUL in it is refused as
    one, not answered as a value the database cannot store."""
    r = await portal.get("/epcis/epcs/urn:epc:id:sgtin:0614141.107346.%00/events", headers=token("ops", "admin"))
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "epcisException:QueryParameterException"
    assert r.json()["errors"][0]["field"] == "MATCH_anyEPC"


# ---- the pure parser ----


def test_unknown_parameter_names_itself() -> None:
    with pytest.raises(QueryParameterException) as exc:
        parse([("MATCH_epcs", "urn:x:1")])
    assert exc.value.errors[0]["field"] == "MATCH_epcs" and exc.value.status == 400


def test_values_combine_with_or_and_parameters_with_and() -> None:
    q = parse([("EQ_action", "ADD|OBSERVE"), ("EQ_action", "DELETE"), ("eventType", "ObjectEvent")])
    assert len(q.conditions) == 2
    assert q.conditions[0].values == ("ADD", "OBSERVE", "DELETE")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        (
            "urn:epc:idpat:sgtin:0614141.107346.*",
            ["urn:epc:id:sgtin:0614141.107346.2017"],
            ["urn:epc:id:sgtin:0614141.107347.1"],
        ),
        (
            "urn:epc:idpat:sgtin:0614141.*.*",
            ["urn:epc:id:sgtin:0614141.9.x", "urn:epc:class:lgtin:0614141.1.L"],
            ["urn:epc:id:sgtin:0614142.1.1"],
        ),
        ("urn:epc:idpat:sscc:0614141.*", ["urn:epc:id:sscc:0614141.1234567890"], ["urn:epc:id:sgtin:0614141.1.1"]),
    ],
)
def test_id_patterns(pattern: str, matches: list[str], misses: list[str]) -> None:
    import re

    regex = id_pattern("MATCH_epc", pattern)
    assert regex is not None
    assert all(re.match(regex, m) for m in matches) and not any(re.match(regex, m) for m in misses)
    assert id_pattern("MATCH_epc", "urn:epc:id:sgtin:0614141.107346.2017") is None


def test_an_unresolvable_epcis_id_is_never_a_wildcard() -> None:
    assert id_pattern("MATCH_epc", f"urn:uuid:{uuid.uuid4()}") is None
