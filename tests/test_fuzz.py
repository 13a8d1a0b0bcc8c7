"""API fuzzing: schemathesis generates requests from every service's own OpenAPI document and sends them to the
real apps (in-process over ASGI, on real PostgreSQL and the broker) with admin, manufacturer, ministry and no
tokens. Checks on every answer: no 5xx; every error is application/problem+json; status code, content type,
headers and body match the document; invalid input is rejected.

Positive and negative (schema-violating) cases, `BT_FUZZ_EXAMPLES` of each per operation and principal; half
of them aim their path parameters at seeded records. `make fuzz` runs the long version (over 10,000 requests);
`BT_FUZZ_SEED` picks another generation seed."""

from __future__ import annotations

import asyncio
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import load_all_checks
from schemathesis.core.failures import FailureGroup

from services.portal.app import create_app as create_portal
from services.portal.settings import PortalSettings
from tests.conftest import eventually, serve
from tests.events_helpers import stack

EXAMPLES = int(os.environ.get("BT_FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("BT_FUZZ_SEED", "20260"))
MIN_REQUESTS = int(os.environ.get("BT_FUZZ_MIN_REQUESTS", "0"))
PRINCIPALS = ("admin", "manufacturer", "ministry", "anonymous")
BATTERY = "KR-FUZZ-P000001"
KNOWN = {"battery_id": BATTERY, "model_id": "NCM-PACK-77", "participant_id": "LGES"}
# `/v1/ops/streams` asks the services for their positions over HTTP: here nothing listens there (refused at once).
NOWHERE = "http://127.0.0.1:9"

load_all_checks()
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@dataclass
class Report:
    requests: Counter[str] = field(default_factory=Counter)
    failures: dict[tuple[str, ...], str] = field(default_factory=dict)
    unsendable: int = 0

    def fail(self, key: tuple[str, ...], example: str) -> None:
        self.failures.setdefault(key, example)

    def summary(self) -> str:
        lines = [
            f"fuzz: {sum(self.requests.values())} requests ({', '.join(f'{k} {v}' for k, v in self.requests.items())})"
        ]
        lines.append(f"fuzz: {len(self.failures)} distinct failures (BT_FUZZ_EXAMPLES={EXAMPLES}, BT_FUZZ_SEED={SEED})")
        lines += [f"  {' | '.join(k)}\n    e.g. {v}" for k, v in sorted(self.failures.items())]
        return "\n".join(lines)


def headers_for(principal: str, token: Any) -> dict[str, str]:
    return {
        "admin": lambda: token("root", "admin"),
        "manufacturer": lambda: token("LGES", "manufacturer"),
        "ministry": lambda: token("MOLIT", "ministry", ministry="MOLIT"),
        "anonymous": dict,
    }[principal]()


def generate(
    operation: Any, mode: GenerationMode, n: int, path_parameters: dict[str, str] | None, headers: dict[str, str]
) -> list[Any]:
    """Up to `n` cases for one operation (fewer when its input space is small). The principal's headers are
    fixed, so that negative cases never "remove" a token the request then carries anyway."""
    cases: list[Any] = []

    @seed(SEED)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters, headers=headers or None))
    def collect(case: Any) -> None:
        cases.append(case)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # schemathesis's own use of `random` inside its strategies
            collect()
    except Unsatisfiable:  # nothing to negate (no parameters, or only the fixed path parameters)
        pass
    except Exception as exc:  # e.g. a schema the generator cannot satisfy: reported, not fatal
        cases.append(exc)
    return cases


def to_httpx(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    # Paths may carry characters no HTTP client sends raw; send them percent-encoded, as clients do.
    url = quote(kw["url"], safe=":/?#[]@!$&'()*+,;=%")
    out = {"method": kw["method"], "url": url, "headers": kw["headers"], "params": kw.get("params")}
    if "json" in kw:
        out["json"] = kw["json"]
    elif kw.get("data") is not None:
        out["content"] = kw["data"] if isinstance(kw["data"], bytes) else str(kw["data"]).encode()
    if kw.get("cookies"):
        out["cookies"] = kw["cookies"]
    return out


def array_query_params(operation_doc: dict[str, Any]) -> set[str]:
    def is_array(schema: dict[str, Any]) -> bool:
        return schema.get("type") == "array" or any(is_array(s) for s in schema.get("anyOf", []))

    return {p["name"] for p in operation_doc.get("parameters", []) if p["in"] == "query" and is_array(p["schema"])}


def scalar_for_array(case: Any, array_params: set[str]) -> bool:
    """`?p=v` is the one-item array ["v"] to the server. Schemathesis counts a scalar sent for an array query
    parameter as schema-violating when the array sits in anyOf with null (FastAPI's `list[str] | None`)."""
    mutations = getattr(case.meta.phase.data, "mutations", ()) if case.meta else ()
    return bool(mutations) and all(
        m.parameter_location.value == "query"
        and m.parameter in array_params
        and not isinstance((case.query or {}).get(m.parameter), list)
        for m in mutations
    )


def describe(case: Any, request: dict[str, Any]) -> str:
    body = request.get("json", request.get("content"))
    text = f"{request['method']} {request['url']} params={request.get('params')!r} body={body!r}"
    return text if len(text) < 400 else text[:400] + "…"


async def fuzz_service(name: str, client: httpx.AsyncClient, token: Any, report: Report) -> None:
    app = client.app  # type: ignore[attr-defined]
    document = app.openapi()
    schema = schemathesis.openapi.from_dict(document)
    # Errors surface as 500 answers (as in production), not as exceptions in the test.
    raw = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://testserver", timeout=60
    )
    async with raw:
        for result in schema.get_all_operations():
            operation = result.ok()
            params = re.findall(r"\{(\w+)\}", operation.path)
            known = {p: KNOWN[p] for p in params if p in KNOWN} or None
            arrays = array_query_params(document["paths"][operation.path][operation.method.lower()])
            for principal in PRINCIPALS:
                auth = headers_for(principal, token)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    cases: list[Any] = []
                    for fixed in [None, known] if known else [None]:
                        cases += await asyncio.to_thread(generate, operation, mode, EXAMPLES, fixed, auth)
                    for case in cases:
                        label = (name, operation.method.upper(), operation.path)
                        if isinstance(case, Exception):
                            report.fail((*label, "generation", type(case).__name__), str(case)[:300])
                            continue
                        await send(name, label, case, auth, principal, raw, report, arrays)


async def send(
    name: str,
    label: tuple[str, ...],
    case: Any,
    auth: dict[str, str],
    principal: str,
    client: httpx.AsyncClient,
    report: Report,
    arrays: set[str],
) -> None:
    request = to_httpx(case, auth)
    try:
        response = await client.request(**request)
    except (httpx.InvalidURL, UnicodeEncodeError, ValueError) as exc:  # the client refused to send it
        report.unsendable += 1
        report.fail((*label, "unsendable", type(exc).__name__), f"{describe(case, request)}: {exc}")
        return
    report.requests[name] += 1
    status = response.status_code
    ctype = response.headers.get("content-type", "")
    if status >= 400 and not ctype.startswith("application/problem+json"):
        report.fail((*label, str(status), "error is not problem+json", ctype), describe(case, request))
    try:
        case.validate_response(response, checks=CHECKS, headers=request["headers"])
    except FailureGroup as group:
        for failure in group.exceptions:
            title = getattr(failure, "title", type(failure).__name__)
            if title == "Schema-violating request accepted" and scalar_for_array(case, arrays):
                continue
            message = " ".join(str(getattr(failure, "message", "")).split())[:300]
            report.fail(
                (*label, str(status), title),
                f"[{principal}] {describe(case, request)} -> {response.text[:300]}\n    {message}",
            )


@pytest.fixture
async def services(make_settings, token):
    """All three services on one database and broker, with a model, a participant, a battery with an alias and a
    few events that the portal has applied: path parameters sometimes hit real records."""
    async with stack(make_settings, token, streams=True) as s:
        admin = token("root", "admin")
        r = await s.registry.post(
            "/v1/participants", json={"id": "SDI", "name": "Samsung SDI", "role": "manufacturer"}, headers=admin
        )
        assert r.status_code == 201, r.text
        await s.battery(BATTERY)
        r = await s.registry.post(
            f"/v1/batteries/{BATTERY}/aliases",
            json={"scheme": "epc", "value": f"urn:epc:id:sgtin:8801234.056789.{BATTERY}"},
            headers=s.as_role("manufacturer"),
        )
        assert r.status_code == 201, r.text
        await s.transfer_to(BATTERY, "oem")
        await s.ok(BATTERY, "INSTALLED", "oem")
        await s.ok(BATTERY, "INSPECTED", "inspector")
        async with serve(
            create_portal(make_settings(PortalSettings, registry_url=NOWHERE, events_url=NOWHERE, self_url=NOWHERE))
        ) as portal:

            async def applied() -> bool:
                r = await portal.get(f"/v1/batteries/{BATTERY}/history", headers=admin)
                return r.status_code == 200 and len(r.json()["timeline"]) >= 4

            await eventually(applied, timeout_s=30)
            yield {"registry": s.registry, "events": s.events, "portal": portal}


@pytest.mark.timeout(0)
async def test_fuzz_every_service(services, token, capsys) -> None:
    report = Report()
    for name, client in services.items():
        await fuzz_service(name, client, token, report)
    # What the fuzzer wrote must reach the read models: nothing dead-lettered by any consumer.
    await asyncio.sleep(3)
    loops = [*services["events"].app.state.consumers.values(), *services["portal"].app.state.consumers.values()]
    for loop in loops:
        if loop.dead_lettered:
            report.fail(("consumer", loop.name, "dead-lettered"), f"{loop.dead_lettered} records; see the log")
    with capsys.disabled():  # the figures belong in every run's output
        print("\n" + report.summary())
    assert sum(report.requests.values()) >= MIN_REQUESTS
    assert not report.failures, report.summary()
