"""Problems in Korean and English: every code the code base can raise is in the catalogue (found by reading the
source), each has both languages, the language follows Accept-Language's q-values, and `code` never changes."""

from __future__ import annotations

import ast
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.events.lifecycle import machine, plausibility
from shared import problems
from shared.i18n_problems import localize, preferred_language
from shared.problem_catalogue import CATALOGUE
from tests.events_helpers import Stack, stack

ROOT = Path(__file__).resolve().parents[1]
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def raised_codes() -> dict[str, str]:
    """Every problem code written in services/ and shared/, with where: `code="..."` in a call, `code = "..."` and
    `status, code, title = ...` in a class, a `Refusal(status, "code", ...)` or `refuse("code", ...)`, the lifecycle's refusal codes, the status codes HTTP errors map to,
    and the plausibility rules' codes."""
    found: dict[str, str] = {}
    for path in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        found.setdefault(kw.value.value, f"{rel}:{node.lineno}")
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name == "Refusal" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                    found.setdefault(str(node.args[1].value), f"{rel}:{node.lineno}")
                if name == "refuse" and node.args and isinstance(node.args[0], ast.Constant):
                    found.setdefault(str(node.args[0].value), f"{rel}:{node.lineno}")
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs: list[tuple[ast.expr, ast.expr]] = [(target, node.value)]
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts, strict=False))
                    for t, v in pairs:
                        if isinstance(t, ast.Name) and t.id == "code" and isinstance(v, ast.Constant):
                            found.setdefault(str(v.value), f"{rel}:{node.lineno}")
    for code in problems._STATUS_CODES.values():
        found.setdefault(code, "shared/problems.py (_STATUS_CODES)")
    found.setdefault("error", "shared/problems.py (an HTTP status outside _STATUS_CODES)")
    for code in machine.REFUSAL_STATUS:
        found.setdefault(code, "services/events/lifecycle/machine.py (REFUSAL_STATUS)")
    for code in plausibility.CODES:
        found.setdefault(code, "services/events/lifecycle/plausibility.py")
    return found


def test_the_scan_finds_the_codes_it_should() -> None:
    """The scan is not vacuous: it sees codes of each kind of raise site."""
    codes = raised_codes()
    for code in ("illegal-transition", "not-custodian", "wrong-ministry", "too-many-requests", "batch-rejected"):
        assert code in codes, code
    assert len(codes) >= 60


def test_the_catalogue_covers_every_code_raised_anywhere() -> None:
    missing = {code: where for code, where in raised_codes().items() if code not in CATALOGUE}
    assert not missing, f"add these to shared/problem_catalogue.py CATALOGUE: {missing}"


def test_the_catalogue_holds_no_code_nothing_raises() -> None:
    stale = set(CATALOGUE) - set(raised_codes())
    assert not stale, stale


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_code_in_both_languages(code: str) -> None:
    text = CATALOGUE[code]
    assert text.title_en and not HANGUL.search(text.title_en)
    assert HANGUL.search(text.title_ko) and HANGUL.search(text.detail_ko)
    english = {
        "type": problems.PROBLEM_BASE + code,
        "title": text.title_en,
        "status": 400,
        "detail": "Some English detail.",
        "code": code,
        "errors": [{"field": "data.x", "rule": "r", "message": "m"}],
    }
    assert localize(english, "en") == english
    korean = localize(english, "ko")
    assert (korean["code"], korean["type"], korean["status"]) == (code, english["type"], 400)
    assert korean["title"] == text.title_ko and HANGUL.search(korean["detail"])
    assert "{" not in korean["detail"] and "}" not in korean["detail"]


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("", "en"),
        ("ko", "ko"),
        ("ko-KR", "ko"),
        ("en;q=0.5, ko;q=0.9", "ko"),
        ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
        ("en-US,en;q=0.9,ko;q=0.8", "en"),
        ("ko;q=0, en", "en"),  # q=0: not acceptable
        ("fr, ko;q=0.1", "ko"),
        ("fr, de", "en"),
        ("*", "en"),
        ("ko;q=bogus, en;q=0.1", "en"),  # a malformed q-value does not make Korean preferred
        (";;;", "en"),
    ],
)
def test_accept_language_is_negotiated_by_q_values(header: str | None, language: str) -> None:
    assert preferred_language(header) == language


def test_a_hostile_accept_language_header_never_breaks_the_answer() -> None:
    assert preferred_language("ko;q=0.9, " * 2000) == "ko"
    assert preferred_language("\x00\xff;q=1e9, ko;q=-1, en;q=2") == "en"
    assert preferred_language("ko;q=1.0000000001") in ("ko", "en")


def test_a_korean_detail_names_the_numbers_of_the_problem() -> None:
    body = {
        "code": "implausible-recovery",
        "title": "Implausible report",
        "detail": "9 kg of lithium recovered, but the battery contained 8 kg",
        "material": "lithium",
        "recovered_kg": 9.0,
        "contained_kg": 8.0,
        "tolerance_pct": 5.0,
        "limit_kg": 8.4,
    }
    ko = localize(body, "ko")
    assert ko["detail"] == "lithium 회수량 9 kg이 배터리 함유량 8 kg(허용 오차 5 % 포함 최대 8.4 kg)을 넘습니다."
    assert ko["recovered_kg"] == 9.0 and ko["code"] == "implausible-recovery"


# ---- over HTTP: the handlers and the ASGI middleware both answer in the language asked ----
@pytest.fixture
async def s(make_settings, token):
    async with stack(make_settings, token) as st_:
        yield st_


def _event(bid: str, etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "battery_id": bid,
        "type": etype,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }


async def test_problems_over_http_follow_accept_language(s: Stack) -> None:
    bid = await s.battery()
    illegal = _event(bid, "REMOVED", {"reason": "end_of_life"})  # a manufactured battery is not installed
    answers = {}
    for header in (None, "ko-KR,ko;q=0.9", "en;q=0.5, ko;q=0.9", "ko;q=0.2, en"):
        headers = s.as_role("dismantler") | ({"Accept-Language": header} if header else {})
        r = await s.events.post("/v1/events", json=illegal, headers=headers)
        assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
        answers[header] = (r.json(), r.headers["content-language"])
    english, _ = answers[None]
    assert english["title"] == "Illegal transition" and "is not allowed for battery" in english["detail"]
    for header in ("ko-KR,ko;q=0.9", "en;q=0.5, ko;q=0.9"):
        korean, language = answers[header]
        assert language == "ko" and korean["code"] == english["code"] == "illegal-transition"
        assert korean["title"] == "허용되지 않는 전이"
        assert korean["detail"] == (
            "현재 상태 'manufactured'에서는 이 이벤트를 기록할 수 없습니다. "
            "가능한 다음 이벤트: ASSEMBLED, INSTALLED, DISPOSED, TRANSFERRED, INCIDENT."
        )
        assert {k: v for k, v in korean.items() if k not in ("title", "detail")} == {
            k: v for k, v in english.items() if k not in ("title", "detail")
        }
    assert answers["ko;q=0.2, en"] == (english, "en")


async def test_validation_batches_and_middleware_problems_in_korean(s: Stack) -> None:
    bid = await s.battery()
    ko = {"Accept-Language": "ko"}
    bad = _event(bid, "INSPECTED", {"soh_pct": 130, "cycle_count": 1})
    r = await s.events.post("/v1/events", json=bad, headers=s.as_role("inspector") | ko)
    assert r.status_code == 422 and r.json()["code"] == "validation-error"
    assert r.json()["detail"].startswith("data.soh_pct: ") and HANGUL.search(r.json()["detail"])
    incident = _event(bid, "INCIDENT", {"kind": "other", "severity": "low"})
    batch = {"events": [_event(bid, "REMOVED", {"reason": "end_of_life"}), incident]}
    r = await s.events.post("/v1/events/batch", json=batch, headers=s.as_role("dismantler") | ko)
    body = r.json()
    assert body["code"] == "batch-rejected" and body["title"] == "배치 거부"
    assert [e["code"] for e in body["errors"]] == ["illegal-transition", "depends-on-failed-item"]
    assert all(HANGUL.search(e["detail"]) for e in body["errors"])
    # Answered by the ASGI middleware before any route: a body route without a token.
    r = await s.events.post("/v1/events", json=bad, headers=ko)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized" and r.json()["title"] == "인증 필요"
    assert r.headers["content-language"] == "ko"
    r = await s.events.get("/v1/no-such-path", headers={"Accept-Language": "en;q=0.1, ko"})
    assert (r.status_code, r.json()["code"], r.json()["title"]) == (404, "not-found", "찾을 수 없음")


@pytest.mark.parametrize("code", sorted(machine.REFUSAL_STATUS))
def test_every_refusal_code_answers_with_its_status_and_the_catalogues_title(code: str) -> None:
    """A lifecycle refusal takes its title from the catalogue and its status from one table: a code refused in
    two places (`not-custodian` of a battery or of its parent) answers alike."""
    refusal = machine.refuse(code, "why", machine.field_error("data.x", "a-rule", "wrong"), extra_member=1)
    assert (refusal.status, refusal.code, refusal.title) == (
        machine.REFUSAL_STATUS[code],
        code,
        CATALOGUE[code].title_en,
    )
    assert refusal.errors == ({"field": "data.x", "rule": "a-rule", "message": "wrong"},)
    assert dict(refusal.extra) == {"extra_member": 1} and 400 <= refusal.status < 600
