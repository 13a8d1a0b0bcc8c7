"""Opaque keyset cursors for list endpoints."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from shared.problems import Unprocessable, field_error


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
