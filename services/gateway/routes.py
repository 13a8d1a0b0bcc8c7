"""Which service answers which path of the EPCIS 2.0 REST binding under the one base `/epcis`, as an ingress
routes them (`deploy/` writes the same table into the k8s Ingress and the compose proxy). Pure: no I/O.

Capture (and our JSON-LD context) is the events service's; every query resource is the portal's. A path the
binding does not define answers 404 at the gateway, never reaching a service."""

from __future__ import annotations

from urllib.parse import unquote

BASE = "/epcis"
#: First path segment under BASE → the service that answers it (`""`: the base itself, GS1's `GET /`).
ROUTES: dict[str, str] = {
    "capture": "events",
    "context": "events",
    "": "portal",
    "events": "portal",
    "eventTypes": "portal",
    "epcs": "portal",
    "bizSteps": "portal",
    "bizLocations": "portal",
    "readPoints": "portal",
    "dispositions": "portal",
    "queries": "portal",
    "nextPageToken": "portal",
}


def upstream_of(path: str) -> str | None:
    """The service that answers `path` (as sent, percent-encoding kept), or None when no service does. A path
    with a dot segment (`.` or `..`, percent-encoded or not) is none: the HTTP client resolves them before it
    sends, so `/epcis/capture/../../v1/events` would leave the EPCIS base for any path of the service."""
    if path != BASE and not path.startswith(BASE + "/"):
        return None
    rest = path[len(BASE) :]
    if rest.startswith("//") or any(unquote(segment) in (".", "..") for segment in rest.split("/")):
        return None
    return ROUTES.get(rest.lstrip("/").split("/", 1)[0])
