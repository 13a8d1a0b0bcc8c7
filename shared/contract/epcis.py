"""The EPCIS 2.0 / CBV 2.0 battery vocabulary: our URI namespaces, compact prefixes, and the table of which
EPCIS event, action, bizStep and disposition stand for each lifecycle event. The events service reads EPCIS
through it (capture), the portal writes EPCIS through it (query). CBV has no recycling, remanufacturing or
repurposing step, so those are extension URIs under `BIZSTEP`."""

from __future__ import annotations

from urllib.parse import quote, unquote

GS1_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
BT = "https://batterytrace.kr/voc/"
BIZSTEP = BT + "bizstep/"
DISP = BT + "disp/"
MEASUREMENT = BT + "measurement/"
MATERIAL = "https://batterytrace.kr/material/"
BATTERY = "https://batterytrace.kr/battery/"
PARTICIPANT = "https://batterytrace.kr/participant/"
SITE = "https://batterytrace.kr/site/"
CBV_PREFIXES = (
    "https://ref.gs1.org/cbv/BizStep-",
    "https://ref.gs1.org/cbv/Disp-",
    "urn:epcglobal:cbv:bizstep:",
    "urn:epcglobal:cbv:disp:",
    "cbv:BizStep-",
    "cbv:Disp-",
)
#: Compact IRI prefixes a document may use for our namespaces.
COMPACT = {
    "bt:": BT,
    "btbizstep:": BIZSTEP,
    "btdisp:": DISP,
    "btmeasurement:": MEASUREMENT,
    "btmaterial:": MATERIAL,
    "btbattery:": BATTERY,
    "btparticipant:": PARTICIPANT,
    "btsite:": SITE,
}
#: Our prefixes, for the @context of documents we answer with.
CONTEXT = {"bt": BT}
CONTEXT_URL_PATH = "/epcis/context/batterytrace.jsonld"
ERROR_REASONS = frozenset({"did_not_occur", "incorrect_data"})

#: lifecycle type → (EPCIS event type, action, bizStep): how the ledger is written as EPCIS.
STEPS: dict[str, tuple[str, str, str | None]] = {
    "MANUFACTURED": ("ObjectEvent", "ADD", "commissioning"),
    "ASSEMBLED": ("AggregationEvent", "ADD", "assembling"),
    "DISASSEMBLED": ("AggregationEvent", "DELETE", "disassembling"),
    "INSTALLED": ("ObjectEvent", "OBSERVE", "installing"),
    "INSPECTED": ("ObjectEvent", "OBSERVE", "inspecting"),
    "REMOVED": ("ObjectEvent", "OBSERVE", "removing"),
    "COLLECTED": ("ObjectEvent", "OBSERVE", "collecting"),
    "GRADED": ("ObjectEvent", "OBSERVE", BIZSTEP + "grading"),
    "REMANUFACTURED": ("ObjectEvent", "OBSERVE", BIZSTEP + "remanufacturing"),
    "REPURPOSED": ("ObjectEvent", "OBSERVE", BIZSTEP + "repurposing"),
    "SAFETY_INSPECTED": ("ObjectEvent", "OBSERVE", BIZSTEP + "safety_inspecting"),
    "RECYCLED": ("TransformationEvent", "", BIZSTEP + "recycling"),
    "DISPOSED": ("ObjectEvent", "DELETE", "destroying"),
    "TRANSFERRED": ("ObjectEvent", "OBSERVE", None),
    "INCIDENT": ("ObjectEvent", "OBSERVE", BIZSTEP + "incident_reporting"),
}
#: bizStep → lifecycle type, for captured ObjectEvents about batteries (the reverse of STEPS, plus CBV's
#: `repairing` as remanufacturing).
OBJECT_STEPS: dict[str, str] = {
    "installing": "INSTALLED",
    "inspecting": "INSPECTED",
    "removing": "REMOVED",
    "collecting": "COLLECTED",
    "repairing": "REMANUFACTURED",
    "destroying": "DISPOSED",
    BIZSTEP + "grading": "GRADED",
    BIZSTEP + "repurposing": "REPURPOSED",
    BIZSTEP + "remanufacturing": "REMANUFACTURED",
    BIZSTEP + "safety_inspecting": "SAFETY_INSPECTED",
    BIZSTEP + "incident_reporting": "INCIDENT",
}
RECYCLING = BIZSTEP + "recycling"
#: grade ↔ disposition
GRADE_DISPOSITIONS = {
    DISP + "grade_reuse": "reuse",
    DISP + "grade_remanufacture": "remanufacture",
    DISP + "grade_recycle": "recycle",
}
#: CBV disposition → removal reason, and back
REMOVAL_DISPOSITIONS = {"recalled": "recall", "damaged": "accident"}
REMOVAL_DISPOSITION = {v: k for k, v in REMOVAL_DISPOSITIONS.items()}
#: CBV disposition → safety-inspection result, and back
SAFETY_DISPOSITIONS = {"conformant": "pass", "non_conformant": "fail"}
SAFETY_DISPOSITION = {v: k for k, v in SAFETY_DISPOSITIONS.items()}
#: sensor measurement types (under MEASUREMENT) and their UN/CEFACT units
MEASUREMENTS = {"soh": ("StateOfHealth", "P1"), "cycles": ("CycleCount", "C62")}
CUSTODY_TYPES = frozenset({"owning_party", "possessing_party"})
MASS_UOM = {"KGM": 1.0, "GRM": 0.001, "TNE": 1000.0}


def expand(value: str) -> str:
    """A compact IRI with one of our prefixes → the full URI; CBV URIs → the bare CBV term (how bizStep and
    disposition are stored and compared)."""
    for prefix, full in COMPACT.items():
        if value.startswith(prefix):
            return full + value[len(prefix) :]
    for prefix in CBV_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def battery_uri(battery_id: str) -> str:
    return BATTERY + battery_id


def site_uri(site: str) -> str:
    """A site as an EPCIS location ID: URIs stay as they are, free text is wrapped in our namespace."""
    return site if ":" in site else SITE + quote(site, safe="")


def site_of(location_id: str) -> str:
    return unquote(location_id[len(SITE) :]) if location_id.startswith(SITE) else location_id


def participant_uri(org: str) -> str:
    return PARTICIPANT + quote(org)


def event_uri(event_id: str) -> str:
    """A ledger event's EPCIS eventID (client-chosen UUIDs are URIs this way)."""
    return f"urn:uuid:{event_id}"
