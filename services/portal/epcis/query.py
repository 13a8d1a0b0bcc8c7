"""The EPCIS 2.0 SimpleEventQuery's parameters, parsed into conditions the repository turns into SQL. Pure: no I/O.

Every parameter of the standard (EPCIS 2.0 §8.2.7.1, GS1's REST binding and its query schema) is understood; an
unknown parameter, or a value of the wrong form, is a `QueryParameterException` (400) naming it, never ignored.
Values of one parameter combine with OR (repeated, or `|`-separated as the REST binding's pipeDelimited
style), parameters with AND.

Conditions:
- `Column`: a column of the portal's EPCIS table (type, times, bizStep, disposition, locations, eventID);
- `Ids`: identifiers (exact values, battery aliases added by the service, and `urn:epc:idpat:` patterns with
  `*` wildcards) in JSON paths of the event;
- `Path`: a comparison (`==`, `>`, `>=`, `<`, `<=`, exists) of the values at JSON paths of the event, or of its
  error declaration (`on_declaration`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shared.problems import EpcisFieldException

EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransformationEvent", "TransactionEvent", "AssociationEvent")
ACTIONS = ("ADD", "OBSERVE", "DELETE")
CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 30

Op = Literal["==", ">", ">=", "<", "<=", "exists"]
OPS: dict[str, Op] = {"EQ": "==", "GT": ">", "GE": ">=", "LT": "<", "LE": "<=", "EXISTS": "exists"}
Scalar = str | float | bool | datetime


class QueryParameterException(EpcisFieldException):
    rule = "query-parameter"


@dataclass(frozen=True)
class Column:
    column: str
    op: Op
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Ids:
    """Identifiers at `paths`; `column` also matches the indexed identifier column (MATCH_epc/anyEPC keep
    finding a battery by any of its names there)."""

    parameter: str
    paths: tuple[str, ...]
    values: tuple[str, ...]
    patterns: tuple[str, ...]  # regular expressions from idpat values
    column: str | None = None


@dataclass(frozen=True)
class Path:
    paths: tuple[str, ...]
    op: Op
    values: tuple[Scalar, ...] = ()
    on_declaration: bool = False


Condition = Column | Ids | Path


@dataclass
class EventQuery:
    conditions: list[Condition] = field(default_factory=list)
    order_by: Literal["record_time", "event_time"] = "record_time"
    descending: bool = False
    event_count_limit: int | None = None
    max_event_count: int | None = None
    per_page: int = DEFAULT_PER_PAGE
    next_page_token: str | None = None


# ---- value forms ----


def _values(name: str, raw: list[str]) -> list[str]:
    out = [v for item in raw for v in item.split("|") if v != ""]
    if not out:
        raise QueryParameterException(name, "needs a value")
    return out


def _one(name: str, raw: list[str]) -> str:
    if len(raw) != 1:
        raise QueryParameterException(name, "takes one value")
    return raw[0]


def parse_time(name: str, value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise QueryParameterException(name, f"'{value[:60]}' is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        raise QueryParameterException(name, "needs a time zone (Z or ±hh:mm)")
    return when


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise QueryParameterException(name, f"'{value[:60]}' is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise QueryParameterException(name, "must be a finite number")
    return number


def _int(name: str, value: str, lo: int, hi: int | None = None) -> int:
    if not re.fullmatch(r"\+?\d{1,9}", value):
        raise QueryParameterException(name, f"'{value[:60]}' is not a whole number")
    n = int(value)
    if n < lo or (hi is not None and n > hi):
        raise QueryParameterException(name, f"must be between {lo} and {hi}" if hi else f"must be at least {lo}")
    return n


def _bool(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise QueryParameterException(name, "must be true or false")
    return value.lower() == "true"


def _uri(name: str, value: str) -> str:
    if ":" not in value or any(c.isspace() for c in value):
        raise QueryParameterException(name, f"'{value[:60]}' is not a URI")
    return value


def scalar(name: str, value: str, op: Op) -> Scalar:
    """An extension field's comparison value: a number, a time or (EQ only) a string."""
    try:
        return (
            float(value) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value) else parse_time(name, value)
        )
    except QueryParameterException:
        if op != "==":
            raise QueryParameterException(name, f"'{value[:60]}' is neither a number nor a date-time") from None
        return value


def vocabulary(values: list[str], kind: str) -> tuple[str, ...]:
    """A CBV term as the forms it may be stored in: bare, web URI, URN (`shipping`, `.../BizStep-shipping`)."""
    out: list[str] = []
    urn = {"BizStep": "bizstep", "Disp": "disp", "BTT": "btt", "SDT": "sdt", "ER": "er"}.get(kind)
    for v in values:
        bare = v
        for prefix in (f"{CBV}{kind}-", f"urn:epcglobal:cbv:{urn}:" if urn else None, f"cbv:{kind}-"):
            if prefix and v.startswith(prefix):
                bare = v[len(prefix) :]
        out += [v, bare, f"{CBV}{kind}-{bare}"] + ([f"urn:epcglobal:cbv:{urn}:{bare}"] if urn else [])
    return tuple(dict.fromkeys(out))


def gs1_vocabulary(values: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        bare = v.removeprefix(GS1_VOC).removeprefix("gs1:")
        out += [v, bare, GS1_VOC + bare, "gs1:" + bare]
    return tuple(dict.fromkeys(out))


_IDPAT = re.compile(r"^urn:epc:idpat:([a-z0-9]+):(.+)$")


def id_pattern(name: str, value: str) -> str | None:
    """`urn:epc:idpat:sgtin:0614141.107346.*` → a regular expression matching the EPCs (and, for class
    matching, the lgtin classes) it stands for; None for a plain identifier."""
    m = _IDPAT.match(value)
    if m is None:
        return None
    scheme, fields = m[1], m[2].split(".")
    if any(f != "*" and not re.fullmatch(r"[A-Za-z0-9%!'()*+,\-:;=_]+", f) for f in fields):
        raise QueryParameterException(name, f"'{value[:80]}' is not an EPC pattern")
    seen_star = False
    parts = []
    for f in fields:
        if f == "*":
            seen_star = True
            parts.append(r"[^.]+" if f is not fields[-1] else r".+")
        elif seen_star:
            raise QueryParameterException(name, "a pattern's fields after a '*' must be '*' too")
        else:
            parts.append(re.escape(f))
    schemes = f"(?:{re.escape(scheme)}|lgtin)" if scheme == "sgtin" else re.escape(scheme)
    return rf"^urn:epc:(?:id|class|idpat):{schemes}:" + r"\.".join(parts) + "$"


# ---- the parameter table ----

_EPC_LISTS = ("$.epcList[*]", "$.childEPCs[*]", "$.inputEPCList[*]", "$.outputEPCList[*]")
_CLASS = {
    "MATCH_epcClass": ("$.quantityList[*].epcClass", "$.childQuantityList[*].epcClass"),
    "MATCH_inputEPCClass": ("$.inputQuantityList[*].epcClass",),
    "MATCH_outputEPCClass": ("$.outputQuantityList[*].epcClass",),
}
_CLASS["MATCH_anyEPCClass"] = tuple(p for v in _CLASS.values() for p in v)
_QUANTITY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
_IDS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "MATCH_epc": (_EPC_LISTS, "epcs"),
    "MATCH_parentID": (("$.parentID",), None),
    "MATCH_inputEPC": (("$.inputEPCList[*]",), None),
    "MATCH_outputEPC": (("$.outputEPCList[*]",), None),
    "MATCH_anyEPC": ((*_EPC_LISTS, "$.parentID"), "any"),
    **{k: (v, None) for k, v in _CLASS.items()},
}
_SENSOR = "$.sensorElementList[*]"
_REPORT = _SENSOR + ".sensorReport[*]"
_META = _SENSOR + ".sensorMetadata"
#: Sensor parameters: name → (JSON paths, value form)
_SENSOR_EQ: dict[str, tuple[tuple[str, ...], str]] = {
    "EQ_type": ((_REPORT + ".type",), "measurement"),
    "EQ_exception": ((_REPORT + ".exception",), "measurement"),
    "EQ_component": ((_REPORT + ".component",), "component"),
    "EQ_deviceID": ((_REPORT + ".deviceID", _META + ".deviceID"), "uri"),
    "EQ_dataProcessingMethod": ((_REPORT + ".dataProcessingMethod", _META + ".dataProcessingMethod"), "uri"),
    "EQ_microorganism": ((_REPORT + ".microorganism",), "uri"),
    "EQ_chemicalSubstance": ((_REPORT + ".chemicalSubstance",), "uri"),
    "EQ_bizRules": ((_META + ".bizRules",), "uri"),
    "EQ_stringValue": ((_REPORT + ".stringValue",), "string"),
    "EQ_hexBinaryValue": ((_REPORT + ".hexBinaryValue",), "hex"),
    "EQ_uriValue": ((_REPORT + ".uriValue",), "uri"),
    "EQ_booleanValue": ((_REPORT + ".booleanValue",), "bool"),
    "EQ_uom": ((_REPORT + ".uom",), "string"),
}
_SENSOR_TIMES = {
    "time": (_REPORT + ".time", _META + ".time"),
    "startTime": (_META + ".startTime",),
    "endTime": (_META + ".endTime",),
}
_SENSOR_NUMBERS = ("value", "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue")
_CURIE = r"[a-z][a-zA-Z0-9]*:\w+"
_EXTENSION = re.compile(
    rf"^(EQ|GT|GE|LT|LE|EXISTS)_(INNER_)?(ILMD_|ERROR_DECLARATION_|SENSORELEMENT_|SENSORMETADATA_|SENSORREPORT_)?({_CURIE})$"
)
_PARTY = re.compile(r"^EQ_(bizTransaction|source|destination)_([a-z][a-zA-Z0-9_]+)$")
_LOCATION_EXT = re.compile(rf"^EQ_(INNER_)?(readPoint|bizLocation)_({_CURIE})$")
_UOM = re.compile(r"^(EQ|GT|GE|LT|LE)_(quantity|" + "|".join(_SENSOR_NUMBERS) + r")(?:_([A-Z0-9]{2,4}))?$")
_TIMES = {"eventTime": "event_time", "recordTime": "record_time"}
_COLUMNS_EQ = {
    "EQ_bizStep": ("biz_step", "BizStep"),
    "EQ_disposition": ("disposition", "Disp"),
    "EQ_readPoint": ("read_point", None),
    "WD_readPoint": ("read_point", None),  # with descendants: without master data, a location has none
    "EQ_bizLocation": ("biz_location", None),
    "WD_bizLocation": ("biz_location", None),
    "EQ_eventID": ("event_id", None),
}
PAGING = ("perPage", "nextPageToken")


def _jsonpath_key(curie: str) -> str:
    return '."' + curie + '"'  # a CURIE matched by the schema's pattern has no quote or backslash


def _extension(name: str, raw: list[str], m: re.Match[str], resolve: dict[str, str]) -> Path:
    op = OPS[m[1]]
    inner, scope, curie = bool(m[2]), m[3] or "", m[4]
    keys = [curie] + ([resolve[curie.split(":")[0]] + curie.split(":", 1)[1]] if curie.split(":")[0] in resolve else [])
    roots = {
        "": ("$",),
        "ILMD_": ("$.ilmd",),
        "ERROR_DECLARATION_": ("$",),
        "SENSORELEMENT_": (_SENSOR,),
        "SENSORMETADATA_": (_META,),
        "SENSORREPORT_": (_REPORT,),
    }[scope]
    paths = tuple((root + (".**" if inner else "") + _jsonpath_key(k)) for root in roots for k in keys)
    values: tuple[Scalar, ...] = ()
    if op != "exists":
        values = tuple(scalar(name, v, op) for v in _values(name, raw))
        if op != "==" and len(values) != 1:
            raise QueryParameterException(name, "takes one value")
    return Path(paths, op, values, on_declaration=scope == "ERROR_DECLARATION_")


def parse(params: list[tuple[str, str]], extensions: dict[str, str] | None = None) -> EventQuery:
    """The query the (name, value) pairs of a request ask for. `extensions`: prefix → namespace IRI (the
    `GS1-Extensions` header), for extension fields named by CURIE."""
    resolve = dict(extensions or {})
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        if "\x00" in name or "\x00" in value:  # no stored text holds one: refused here, for every parameter
            raise QueryParameterException(name.replace("\x00", "\\0")[:60], "holds a NUL character")
        grouped.setdefault(name, []).append(value)
    q = EventQuery()
    conds = q.conditions
    for name, raw in grouped.items():
        if name == "eventType":
            types = _values(name, raw)
            unknown = [t for t in types if t not in EVENT_TYPES]
            if unknown:
                raise QueryParameterException(name, f"unknown event type {unknown[0][:60]!r}")
            conds.append(Column("event_type", "==", tuple(types)))
        elif m := re.fullmatch(r"(GE|LT)_(eventTime|recordTime)", name):
            conds.append(Column(_TIMES[m[2]], OPS[m[1]], (parse_time(name, _one(name, raw)),)))
        elif name == "EQ_action":
            actions = _values(name, raw)
            if any(a not in ACTIONS for a in actions):
                raise QueryParameterException(name, f"one of {', '.join(ACTIONS)}")
            conds.append(Path(("$.action",), "==", tuple(actions)))
        elif name in _COLUMNS_EQ:
            column, kind = _COLUMNS_EQ[name]
            values = [_uri(name, v) if kind is None else v for v in _values(name, raw)]
            conds.append(Column(column, "==", vocabulary(values, kind) if kind else tuple(values)))
        elif m := re.fullmatch(r"EQ_persistentDisposition_(set|unset)", name):
            values_ = vocabulary(_values(name, raw), "Disp")
            conds.append(Path((f"$.persistentDisposition.{m[1]}[*]",), "==", values_))
        elif name == "EQ_transformationID":
            conds.append(Path(("$.transformationID",), "==", tuple(_uri(name, v) for v in _values(name, raw))))
        elif name in _IDS:
            id_paths, id_column = _IDS[name]
            exact: list[str] = []
            patterns: list[str] = []
            for v in _values(name, raw):
                pattern = id_pattern(name, _uri(name, v))
                (patterns.append(pattern) if pattern else exact.append(v))
            conds.append(Ids(name, id_paths, tuple(exact), tuple(patterns), id_column))
        elif m := _UOM.fullmatch(name):
            op, what, uom = OPS[m[1]], m[2], m[3]
            number = _number(name, _one(name, raw)) if op != "==" else None
            numbers = (number,) if number is not None else tuple(_number(name, v) for v in _values(name, raw))
            if what == "quantity":
                paths = tuple(
                    f"$.{lst}[*]" + (f' ? (@.uom == "{uom}")' if uom else "") + ".quantity" for lst in _QUANTITY_LISTS
                )
            else:
                paths = (_REPORT + (f' ? (@.uom == "{uom}")' if uom else "") + f".{what}",)
            conds.append(Path(paths, op, numbers))
        elif name == "EXISTS_errorDeclaration":
            if not raw or all(v == "" for v in raw) or _bool(name, _one(name, raw)):
                conds.append(Path(("$",), "exists", on_declaration=True))
        elif m := re.fullmatch(r"(GE|LT)_errorDeclaration_?Time", name):
            when = parse_time(name, _one(name, raw))
            conds.append(Path(("$.declarationTime",), OPS[m[1]], (when,), on_declaration=True))
        elif name == "EQ_errorReason":
            conds.append(Path(("$.reason",), "==", vocabulary(_values(name, raw), "ER"), on_declaration=True))
        elif name == "EQ_correctiveEventID":
            ids = tuple(_uri(name, v) for v in _values(name, raw))
            conds.append(Path(("$.correctiveEventIDs[*]",), "==", ids, on_declaration=True))
        elif name == "EXISTS_sensorElementList":
            conds.append(Path((_SENSOR,), "exists"))
        elif name in _SENSOR_EQ:
            paths, form = _SENSOR_EQ[name]
            vals = _values(name, raw)
            sensor_values: tuple[Scalar, ...]
            if form == "measurement":
                sensor_values = gs1_vocabulary(vals)
            elif form == "component":
                sensor_values = vocabulary(vals, "Comp")
            elif form == "bool":
                sensor_values = tuple(_bool(name, v) for v in vals)
            elif form == "uri":
                sensor_values = tuple(_uri(name, v) for v in vals)
            elif form == "hex":
                if any(not re.fullmatch(r"[0-9A-Fa-f]*", v) for v in vals):
                    raise QueryParameterException(name, "must be hexadecimal")
                sensor_values = tuple(dict.fromkeys([*vals, *(v.upper() for v in vals), *(v.lower() for v in vals)]))
            else:
                sensor_values = tuple(vals)
            conds.append(Path(paths, "==", sensor_values))
        elif m := re.fullmatch(r"(GE|LT)_(time|startTime|endTime)", name):
            conds.append(Path(_SENSOR_TIMES[m[2]], OPS[m[1]], (parse_time(name, _one(name, raw)),)))
        elif m := _PARTY.fullmatch(name):
            party = {"bizTransaction": "BTT", "source": "SDT", "destination": "SDT"}[m[1]]
            party_types = " || ".join(f'@.type == "{t}"' for t in vocabulary([m[2]], party))
            conds.append(Path((f"$.{m[1]}List[*] ? ({party_types}).{m[1]}",), "==", tuple(_values(name, raw))))
        elif m := _LOCATION_EXT.fullmatch(name):
            path = f"$.{m[2]}" + (".**" if m[1] else "") + _jsonpath_key(m[3])
            conds.append(Path((path,), "==", tuple(scalar(name, v, "==") for v in _values(name, raw))))
        elif m := _EXTENSION.fullmatch(name):
            conds.append(_extension(name, raw, m, resolve))
        elif name == "orderBy":
            order = _one(name, raw)
            if order not in _TIMES:
                raise QueryParameterException(name, "eventTime or recordTime")
            q.order_by = "event_time" if order == "eventTime" else "record_time"
        elif name == "orderDirection":
            direction = _one(name, raw)
            if direction not in ("ASC", "DESC"):
                raise QueryParameterException(name, "ASC or DESC")
            q.descending = direction == "DESC"
        elif name == "eventCountLimit":
            q.event_count_limit = _int(name, _one(name, raw), 1)
        elif name == "maxEventCount":
            q.max_event_count = _int(name, _one(name, raw), 1)
        elif name == "perPage":
            q.per_page = _int(name, _one(name, raw), 1, MAX_PER_PAGE)
        elif name == "nextPageToken":
            q.next_page_token = _one(name, raw)
        else:
            raise QueryParameterException(name, "not a parameter of the SimpleEventQuery")
    if q.event_count_limit is not None and q.max_event_count is not None:
        raise QueryParameterException("eventCountLimit", "cannot be combined with maxEventCount")
    return q
