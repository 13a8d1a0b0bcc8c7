"""Keyset pagination for list endpoints: the query, the page, opaque cursors and the answer's schema."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select

from shared.problems import Unprocessable, field_error

T = TypeVar("T")
ItemT = TypeVar("ItemT")


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type | None = None) -> Any:
    """The value `encode_cursor` was given. With `kind`, a cursor holding another type (one this API never
    returns for the list) is refused too, before it reaches a query."""
    if not cursor:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if kind is not None and type(value) is not kind:
            raise TypeError(kind)
    except Exception:
        raise Unprocessable(
            "cursor: not a cursor this API returned",
            errors=[field_error("cursor", "cursor", "not a cursor this API returned")],
        ) from None
    return value


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A list endpoint's `cursor` and `limit` query parameters."""

    cursor: str | None
    limit: int

    def after(self, kind: type | None = None) -> Any:
        """The key the page starts after (None: from the start); see `decode_cursor`."""
        return decode_cursor(self.cursor, kind)


def paging(most: int = 1000) -> Callable[..., PageQuery]:
    """The dependency reading `cursor` and `limit` (1 to `most`, 100 unless asked)."""

    def params(cursor: str | None = None, limit: int = Query(100, ge=1, le=most)) -> PageQuery:
        return PageQuery(cursor, limit)

    return params


#: A list endpoint's paging parameters, at most 1,000 items a page.
Paging = Annotated[PageQuery, Depends(paging())]


def keyset(
    query: Select[Any],
    key: ColumnElement[Any],
    after: Any,
    limit: int,
    equal: Iterable[tuple[ColumnElement[Any], Any]] = (),
) -> Select[Any]:
    """`query` in `key` order from after `after` (None: from the start), at most `limit` rows, narrowed to the
    rows whose column equals the value given for it (None: no condition)."""
    query = query.order_by(key).limit(limit)
    for column, value in equal:
        if value is not None:
            query = query.where(column == value)
    if after is not None:
        query = query.where(key > after)
    return query


def split_page(rows: list[T], limit: int) -> tuple[list[T], bool]:
    """Rows fetched with `limit + 1`: the page, and whether more follow."""
    return rows[:limit], len(rows) > limit


def page(rows: list[dict[str, Any]], more: bool, key: str) -> dict[str, Any]:
    """A list's answer: the items and, when more follow, the cursor that pages on after the last one."""
    return {"items": rows, "next_cursor": encode_cursor(rows[-1][key]) if more else None}


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page.")
