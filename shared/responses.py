"""A JSON response for hot read paths that build their answer as plain data already shaped like the
route's response model: serialised by orjson in one step, without FastAPI validating it through the
model first (tests check the two agree: `tests/test_portal_history.py`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from fastapi.responses import Response


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class DirectJSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # OPT_UTC_Z: UTC times end in "Z", as pydantic writes them.
        return orjson.dumps(content, default=_default, option=orjson.OPT_UTC_Z)
