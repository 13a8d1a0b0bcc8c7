"""Which services exist in this build (each arrives with its issue)."""

from __future__ import annotations

import importlib.util


def available_services() -> list[str]:
    return [n for n in ("registry", "events", "portal") if importlib.util.find_spec(f"services.{n}.app")]
