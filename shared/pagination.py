"""Opaque keyset cursors for list endpoints."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from shared.problems import Unprocessable, field_error


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception:
        raise Unprocessable(
            "cursor: not a cursor this API returned",
            errors=[field_error("cursor", "cursor", "not a cursor this API returned")],
        ) from None
