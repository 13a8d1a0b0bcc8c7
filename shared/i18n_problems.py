"""Problems in the request's language: the choice between English and Korean by its `Accept-Language` (RFC 9110
§12.5.4: q-values and language ranges), and a problem body in Korean from the catalogue
(`shared.problem_catalogue`: every code's titles and its Korean detail). A problem keeps its `code` (stable, for
programs) whatever the language; `title` and `detail` are for people."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from shared.problem_catalogue import CATALOGUE

LANGUAGES = ("en", "ko")


def preferred_language(accept_language: str | None) -> str:
    """'ko' when the request prefers Korean (any ko-* range counts) over English, else 'en'; q=0 excludes."""
    if not accept_language:
        return "en"
    accepted = parse_accept_header(accept_language, LanguageAccept)
    return str(accepted.best_match(LANGUAGES, default="en"))


class _Members(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


def _value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v) or "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def korean_detail(code: str, body: Mapping[str, Any]) -> str:
    """The problem's Korean detail, from its members (a code outside the catalogue: its English detail)."""
    text = CATALOGUE.get(code)
    if text is None:
        return str(body.get("detail", ""))
    members = _Members({k: _value(v) for k, v in body.items() if k not in ("errors", "detail", "title")})
    errors = body.get("errors") or []
    first = errors[0] if errors and isinstance(errors[0], Mapping) else {}
    members.setdefault("field", str(first.get("field", "-")))
    members.setdefault("rule", str(first.get("rule", "-")))
    return string.Formatter().vformat(text.detail_ko, (), members)


def localize(body: dict[str, Any], language: str) -> dict[str, Any]:
    """The problem body in `language`: for 'ko', the catalogue's title and detail (and those of a batch's items);
    `code` never changes."""
    if language != "ko":
        return body
    code = str(body.get("code", ""))
    out = dict(body)
    text = CATALOGUE.get(code)
    if text is not None:
        out["title"] = text.title_ko
        out["detail"] = korean_detail(code, body)
    items = body.get("errors")
    if isinstance(items, list):
        out["errors"] = [
            {**item, "detail": korean_detail(str(item["code"]), item)}
            if isinstance(item, Mapping) and "code" in item and "detail" in item
            else item
            for item in items
        ]
    return out
