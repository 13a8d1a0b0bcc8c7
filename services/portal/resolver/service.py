"""What a Digital Link resolves to, pure but for the look-ups: the links of a battery (serial level) or of its
model (product level), by GS1 link type, and the answer the resolver standard asks for (a redirect to the
requested or default link, or the whole linkset, RFC 9264)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg

from services.portal.history import repository as history_repo
from services.portal.passports import repository as passports_repo
from services.portal.resolver import gs1
from services.portal.resolver import repository as repo
from shared.problems import NotFound

VOC = "https://gs1.org/voc/"
#: The link types this resolver serves (GS1 Web Vocabulary), the first a battery always has.
LINK_TYPES = (
    "gs1:pip",
    "gs1:certificationInfo",
    "gs1:sustainabilityInfo",
    "gs1:epcis",
    "gs1:safetyInfo",
    "gs1:recyclingInfo",
)
DEFAULT = "gs1:defaultLink"
LINKSET = "application/linkset+json"


@dataclass(frozen=True, slots=True)
class Link:
    link_type: str
    href: str
    title: str
    type: str | None = None

    def target(self) -> dict[str, Any]:
        out: dict[str, Any] = {"href": self.href, "title": self.title}
        if self.type:
            out["type"] = self.type
        return out


async def resolve(conn: asyncpg.Connection, request: gs1.Request, base: str) -> tuple[str, list[Link]]:
    """(anchor, links) of a Digital Link: 404 unless the portal knows exactly one battery under it."""
    anchor = request.uri(base)
    if request.serial is None:
        bid = await repo.by_gtin(conn, request.gtin)
        battery = await history_repo.get_battery(conn, bid) if bid else None
        links = declared_links(await passports_repo.declaration(conn, battery) if battery else {}, product=True)
        if not links:
            raise NotFound(f"The resolver has no links for GTIN {request.gtin}.", code="unknown-digital-link")
        return anchor, links
    found = await repo.by_key(conn, request.key)
    battery = await history_repo.get_battery(conn, found[0]) if found else None
    if found is None or battery is None or not battery["registered"]:
        raise NotFound(f"No battery is known as {anchor}.", code="unknown-digital-link")
    declared = await passports_repo.declaration(conn, battery)
    return anchor, battery_links(battery, found[1], base, declared)


def battery_links(battery: dict[str, Any], alias: str, base: str, declared: dict[str, Any]) -> list[Link]:
    bid = quote(battery["id"], safe="")
    root = base.rstrip("/")
    return [
        Link("gs1:pip", f"{root}/ui/passport/{bid}", "Battery passport (public)", "text/html"),
        Link("gs1:certificationInfo", f"{root}/v1/passports/{bid}/jws", "Signed battery passport", "application/jose"),
        Link("gs1:certificationInfo", f"{root}/v1/passports/{bid}", "Battery passport", "application/json"),
        Link(
            "gs1:sustainabilityInfo",
            f"{root}/v1/passports/{bid}/catenax",
            "Catena-X BatteryPass 6.1",
            "application/json",
        ),
        Link(
            "gs1:epcis",
            f"{root}/epcis/events?MATCH_epc={quote(alias, safe='')}",
            "EPCIS events of this battery",
            "application/json",
        ),
        *declared_links(declared, product=False),
    ]


def declared_links(declaration: dict[str, Any], *, product: bool) -> list[Link]:
    """The public documents the manufacturer declared for the model (registry passport declaration)."""
    declared = declaration.get("batterypass") or {}

    def at(aspect: str, *path: str) -> str | None:
        node: Any = declared.get(aspect) or {}
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        return node if isinstance(node, str) else None

    wanted = [
        ("gs1:pip", at("generalProductInformation", "manufacturerInformation", "webAddress"), "Manufacturer"),
        ("gs1:certificationInfo", at("labeling", "declarationOfConformity"), "EU declaration of conformity"),
        ("gs1:sustainabilityInfo", at("supplyChainDueDiligence", "supplyChainDueDiligenceReport"), "Due diligence"),
        ("gs1:sustainabilityInfo", at("carbonFootprint", "carbonFootprintStudy"), "Carbon footprint study"),
        ("gs1:safetyInfo", at("circularity", "safetyMeasures", "safetyInstructions"), "Safety instructions"),
        ("gs1:recyclingInfo", at("circularity", "endOfLifeInformation", "separateCollection"), "Separate collection"),
    ]
    return [Link(t, href, title) for t, href, title in wanted if href and (product or t != "gs1:pip")]


def default_link(links: list[Link]) -> Link:
    return next((x for x in links if x.link_type == "gs1:pip"), links[0])


def choose(links: list[Link], link_type: str | None) -> Link:
    """The requested type's first link; the default link when none was asked for or none has that type
    (resolver standard: an unavailable link type falls back to the default)."""
    if link_type and link_type != DEFAULT:
        wanted = link_type if link_type.startswith("gs1:") else link_type.replace(VOC, "gs1:", 1)
        found = next((x for x in links if x.link_type == wanted), None)
        if found is not None:
            return found
    return default_link(links)


def linkset(anchor: str, links: list[Link]) -> dict[str, Any]:
    """RFC 9264 JSON linkset: one context object, relation types as the GS1 vocabulary's URIs."""
    context: dict[str, Any] = {"anchor": anchor}
    for x in [*links, Link(DEFAULT, default_link(links).href, default_link(links).title, default_link(links).type)]:
        context.setdefault(VOC + x.link_type.removeprefix("gs1:"), []).append(x.target())
    return {"linkset": [context]}


def description(base: str) -> dict[str, Any]:
    """The resolver description file (`/.well-known/gs1resolver`, resolver standard 1.1 §5)."""
    root = base.rstrip("/")
    return {
        "name": "batterytrace GS1-conformant resolver",
        "resolverRoot": root,
        "supportedPrimaryKeys": ["01"],
        "supportedLinkType": [{"namespace": VOC, "prefix": "gs1:"}],
        "linkTypeDefaultCanBeLinkset": False,
        "linkTypes": [*LINK_TYPES, DEFAULT],
        "validatesAIcombination": True,
        "qualifiers": [{"01": [{"21": "serialNumber"}]}],
    }
