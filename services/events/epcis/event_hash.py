"""The EPCIS event hash (CBV 2.0 §8.9, "EPCIS Event Hash ID"): `ni:///sha-256;<hex>?ver=CBV2.0`, the same for
every serialisation of one event, so a server can name events sent without an eventID and recognise them when
they are sent again. Pure: no I/O.

The algorithm builds a *pre-hash string* from the event and hashes it (UTF-8, SHA-256):
- `eventType=<type>`, then the standard fields in the CBV's order (`PROP_ORDER`), each `name=value`, nested
  fields by their XML element names (`epcListepc=...`, `readPointid=...`); repeated values sorted;
- then every other field (user extensions), as `{namespace}name=value`, sorted;
- values canonical: timestamps in UTC at millisecond precision (`...T14:45:00.000Z`), numbers without
  redundant zeros, CBV terms as their web URIs (`shipping` → `https://ref.gs1.org/cbv/BizStep-shipping`), old
  CBV URNs as web URIs, GS1 keys as constrained canonical GS1 Digital Link URIs (`gs1_keys.normalise`);
- never: `eventID`, `recordTime`, `errorDeclaration`, comments, and the fields the document lists in its
  `ignoreFields`.

This follows GS1's reference implementation (`epcis-event-hash-generator`, MIT, R. Troeger and S. Schmittner)
rule for rule, including its treatment of the JSON/XML model differences, without JSON-LD processing: the GS1
context's vocabulary terms are read from the packaged GS1 context (`epcis-context.json`), and the document's own inline
prefixes name extension namespaces (remote contexts are never fetched). Every reference vector of the
standard's test suite is reproduced exactly (tests/test_epcis_hash.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from services.events.epcis.gs1_keys import normalise

#: (name, order of its children or None), as in the CBV: the pre-hash string's field order.
Order = list[tuple[Any, Any]]
_QUANTITY: Order = [("quantityElement", [("epcClass", None), ("quantity", None), ("uom", None)])]
_PAIR = (("type", None), ("source", None))  # a list of (type, value) pairs: kept in document order
PROP_ORDER: Order = [
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("certificationInfo", None),
    ("parentID", None),
    ("epcList", [("epc", None)]),
    ("inputEPCList", [("epc", None)]),
    ("childEPCs", [("epc", None)]),
    ("quantityList", _QUANTITY),
    ("childQuantityList", _QUANTITY),
    ("inputQuantityList", _QUANTITY),
    ("outputEPCList", [("epc", None)]),
    ("outputQuantityList", _QUANTITY),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", [("set", None), ("unset", None)]),
    ("readPoint", [("id", None)]),
    ("bizLocation", [("id", None)]),
    ("bizTransactionList", [(("type", None), ("bizTransaction", None))]),
    ("sourceList", [_PAIR]),
    ("destinationList", [(("type", None), ("destination", None))]),
    (
        "sensorElementList",
        [
            (
                "sensorElement",
                [
                    (
                        "sensorMetadata",
                        [
                            (n, None)
                            for n in (
                                "time",
                                "startTime",
                                "endTime",
                                "deviceID",
                                "deviceMetadata",
                                "rawData",
                                "dataProcessingMethod",
                                "bizRules",
                            )
                        ],
                    ),
                    (
                        "sensorReport",
                        [
                            (n, None)
                            for n in (
                                "type",
                                "exception",
                                "deviceID",
                                "deviceMetadata",
                                "rawData",
                                "dataProcessingMethod",
                                "time",
                                "microorganism",
                                "chemicalSubstance",
                                "value",
                                "component",
                                "stringValue",
                                "booleanValue",
                                "hexBinaryValue",
                                "uriValue",
                                "minValue",
                                "maxValue",
                                "meanValue",
                                "sDev",
                                "percRank",
                                "percValue",
                                "uom",
                                "coordinateReferenceSystem",
                            )
                        ],
                    ),
                ],
            )
        ],
    ),
]
#: Never hashed.
IGNORED = ("recordTime", "eventID", "type", "errorDeclaration")
#: Never part of an event's content (comments).
COMMENTS = ("#text", "rdfs:comment", "comment")
#: Lists whose (type, value) pairs keep their document order (CBV 2.0).
PAIR_LISTS = ("sourceList", "destinationList", "bizTransactionList")
UNSORTED = ("bizTransaction", "source", "destination")
WEB_VOCABULARY = (
    ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-"),
    ("urn:epcglobal:cbv:disp:", "https://ref.gs1.org/cbv/Disp-"),
    ("urn:epcglobal:cbv:btt:", "https://ref.gs1.org/cbv/BTT-"),
    ("urn:epcglobal:cbv:sdt:", "https://ref.gs1.org/cbv/SDT-"),
    ("urn:epcglobal:cbv:er:", "https://ref.gs1.org/cbv/ER-"),
)
EXPANDED_PREFIXES = ("https://ref.gs1.org/cbv", "https://gs1.org/voc")

Node = tuple[Any, str, list[Any]]  # (name, text, children): the event as the XML binding would have it


# ---- the GS1 context's vocabulary (bare CBV terms of vocabulary-typed fields) ----


@cache
def _gs1_context() -> dict[str, Any]:
    text = resources.files("services.events.epcis").joinpath("epcis-context.json").read_text()
    context: dict[str, Any] = json.loads(text)["@context"]
    return context


def _terms(definition: Any) -> dict[str, str]:
    """The term → compact IRI table of a vocabulary-typed field's scoped context."""
    scoped = definition.get("@context") if isinstance(definition, dict) else None
    out: dict[str, str] = {}
    for ctx in scoped if isinstance(scoped, list) else [scoped]:
        if isinstance(ctx, dict):
            out.update({k: v for k, v in ctx.items() if isinstance(v, str) and not k.startswith("@")})
    return out


@cache
def _vocabularies() -> dict[str, dict[str, str]]:
    """Where a bare term means a CBV/GS1 URI: field path (`bizStep`, `sourceList.type`, ...) → terms."""
    c = _gs1_context()
    sensor = c["sensorElementList"]["@context"]["sensorReport"]["@context"]
    pd = _terms(c["persistentDisposition"])
    return {
        "bizStep": _terms(c["bizStep"]),
        "disposition": _terms(c["disposition"]),
        "persistentDisposition.set": pd,
        "persistentDisposition.unset": pd,
        "sourceList.type": _terms(c["sourceList"]["@context"]["type"]),
        "destinationList.type": _terms(c["destinationList"]["@context"]["type"]),
        "bizTransactionList.type": _terms(c["bizTransactionList"]["@context"]["type"]),
        "sensorElementList.sensorReport.type": _terms(sensor["type"]),
        "sensorElementList.sensorReport.exception": _terms(sensor["exception"]),
        "sensorElementList.sensorReport.component": _terms(sensor["component"]),
        "errorDeclaration.reason": _terms(c["errorDeclaration"]["@context"]["reason"]),
    }


def _prefixes(context: Any) -> dict[str, str]:
    """The document's inline prefix definitions (prefix → namespace IRI)."""
    out: dict[str, str] = {}
    for c in context if isinstance(context, list) else [context]:
        if isinstance(c, dict):
            out.update({k: v for k, v in c.items() if isinstance(v, str)})
    return out


def _expand_curie(value: str, prefixes: Mapping[str, str]) -> str:
    head, sep, tail = value.partition(":")
    if sep and not tail.startswith("//") and head in prefixes:
        return prefixes[head] + tail
    return value


def _expanded_values(document: Any, prefixes: Mapping[str, str]) -> set[str]:
    """What JSON-LD expansion would turn the document's vocabulary values into (CBV and GS1 Web Vocabulary
    URIs only: the only ones bare strings are replaced by)."""
    gs1 = {k: v for k, v in _gs1_context().items() if isinstance(v, str)}
    both = {**gs1, **prefixes}
    vocabularies = _vocabularies()
    found: set[str] = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, list):
            for v in value:
                walk(v, path)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k if path in ("", "event") else f"{path}.{k}")
        elif isinstance(value, str):
            terms = vocabularies.get(path)
            if terms is not None and value in terms:
                found.add(_expand_curie(terms[value], both))
            elif ":" in value:
                found.add(_expand_curie(value, both))

    for event in _events(document):
        walk(event, "event")
    return {v for v in found if v.startswith(EXPANDED_PREFIXES)}


def _suffixes(expanded: set[str]) -> dict[str, set[str]]:
    """Each expanded URI under every tail that follows one of its `-` or `/` (`shipping` for `.../BizStep-shipping`),
    so a bare string is looked up once instead of compared with every URI (a large document stays linear)."""
    index: dict[str, set[str]] = {}
    for x in expanded:
        for i, c in enumerate(x):
            if c in "-/":
                index.setdefault(x[i + 1 :], set()).add(x)
    return index


def _replace_bare_strings(value: Any, index: dict[str, set[str]]) -> Any:
    """A bare string that names exactly one expanded URI (`.../BizStep-shipping` for `shipping`) becomes it."""
    if isinstance(value, str):
        matches = index.get(value)
        return next(iter(matches)) if matches is not None and len(matches) == 1 else value
    if isinstance(value, list):
        return [_replace_bare_strings(v, index) for v in value]
    if isinstance(value, dict):
        return {k: _replace_bare_strings(v, index) for k, v in value.items()}
    return value


# ---- JSON → the XML binding's tree ----


class _Converter:
    def __init__(self, namespaces: dict[str, str]) -> None:
        self.namespaces = namespaces  # prefix → "{namespace}"
        # What `replace` made of each name and each value (a document repeats them in every event); forgotten
        # whenever a namespace is declared.
        self._names: dict[str, Any] = {}
        self._values: dict[str, str] = {}

    def replace(self, text: Any, is_value: bool = False) -> Any:
        if not isinstance(text, str):
            return text
        head, sep, tail = text.partition(":")
        if sep and head in self.namespaces:
            ns = self.namespaces[head]
            return (ns.replace("{", "").replace("}", "") if is_value else ns) + tail
        return text

    def _name(self, key: str) -> Any:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = self.replace(key)
        return name

    def _leaf(self, value: Any) -> str:
        """A value's text: `_text(self.replace(value, True))`."""
        if isinstance(value, str):
            text = self._values.get(value)
            if text is None:
                text = self._values[value] = _text(self.replace(value, True))
            return text
        return _text(value)

    def convert(self, value: Any) -> Node:
        node: Node = ("", "", [])
        if isinstance(value, list):
            for child in value:
                node[2].append(self.convert(child))
        elif isinstance(value, dict):
            if "type" in value:
                node = (value["type"], "", [])
            if "#text" in value:
                node = (node[0], _text(value["#text"]), node[2])
            children = node[2]
            for key, val in value.items():
                if key in COMMENTS:
                    continue
                if key.startswith("@xmlns"):
                    self.namespaces[key[7:]] = "{" + _text(val) + "}"
                    self._names.clear()
                    self._values.clear()
                    node = (self.replace(node[0]), node[1], node[2])
                    continue
                if isinstance(val, list):
                    child = self.convert(val)  # namespaces declared inside first, then the key
                    name = self._name(key)
                    children.extend((name, element[1], element[2]) for element in child[2])
                elif isinstance(val, dict):
                    child = self.convert(val)
                    children.append((self._name(key), child[1], child[2]))
                else:
                    children.append((self._name(key), self._leaf(val), []))
        else:
            return "", self._leaf(value), []
        if not ("bizTransaction" in value or "source" in value or "destination" in value):  # UNSORTED
            try:
                node[2].sort()
            except TypeError:  # names of mixed types (a non-string `type`): no reference order; a stable one
                node[2].sort(key=repr)
        return node


def _text(value: Any) -> str:
    """Python's `str()` of a JSON value, as the reference implementation reads it (`True`, `1.5`, `None`)."""
    return str(value)


def _correct_names(node: Node) -> Node:
    if node[0] in ("inputEPC", "outputEPC"):
        return "epc", node[1], node[2]
    if node[0] in ("inputQuantity", "outputQuantity", "childQuantity") or (node[0] == "quantity" and node[2]):
        return "quantityElement", node[1], node[2]
    return node


def _xml_model(node: Node) -> Node:
    """The JSON binding's data model → the XML binding's (element names JSON omits)."""
    source: list[Any] = node[2] if len(node) > 2 else []
    if not source:
        return _correct_names((node[0], node[1], []))
    children: list[Any] = []
    lists: dict[str, list[Node]] = {}
    for element in source:
        name = element[0]
        if not isinstance(name, tuple) and name.endswith("List"):
            lists.setdefault(name, []).append((name[:-4], element[1], element[2]))
        else:
            children.append(element)
    for list_name, elements in lists.items():
        if list_name in PAIR_LISTS:
            children.append((list_name, "", [(e[2][0], e[2][1]) for e in elements]))
        else:
            children.append((list_name, "", elements))
    child_epcs: list[Node] = [("epc", e[1], []) for e in children if e[0] == "childEPCs"]
    if child_epcs:
        children = [e for e in children if e[0] != "childEPCs"]
        children.append(("childEPCs", "", child_epcs))
    corrected = [e if e[0] in PAIR_LISTS else _xml_model(e) if e[2] else _leaf_name(e) for e in children]
    return _correct_names((node[0], node[1], corrected))


def _leaf_name(node: Node) -> Node:
    """`_xml_model` of a node without children: `_correct_names` of it (most nodes are such leaves)."""
    name = node[0]
    renamed = _LEAF_NAMES.get(name) if isinstance(name, str) else None
    return node if renamed is None else (renamed, node[1], [])


#: What `_correct_names` renames a childless node to.
_LEAF_NAMES = {
    "inputEPC": "epc",
    "outputEPC": "epc",
    "inputQuantity": "quantityElement",
    "outputQuantity": "quantityElement",
    "childQuantity": "quantityElement",
}


# ---- the pre-hash string ----


@lru_cache(maxsize=1 << 14)
def canonical_time(text: str) -> str:
    """UTC at millisecond precision, `Z` (a value that is no timestamp stays as it is)."""
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return text
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    micro = round(when.microsecond, -3)
    when = when.replace(microsecond=0) + timedelta(microseconds=micro)
    return when.isoformat(timespec="milliseconds")[:-6] + "Z"


def _numeric(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return str(int(number)) if int(number) == number else str(number)


@lru_cache(maxsize=1 << 16)
def canonical_value(text: str) -> str:
    for old, new in WEB_VOCABULARY:
        text = text.replace(old, new)
    text = _numeric(text)
    if not text.startswith(("urn:epc:", "http")):  # the only forms a GS1 key URI takes
        return text
    return normalise(text) or text


def _child(child: Node, order: Order | None) -> str:
    grand = _ordered(child[2], order) if order else ""
    text = ""
    if child[1]:
        text = child[1].strip()
        lower = child[0].lower()
        text = canonical_time(text) if "time" in lower and "offset" not in lower else canonical_value(text)
        if text:
            text = "=" + text
    return child[0] + text + grand if text or grand else ""


def _user_extensions(children: list[Any]) -> list[Any]:
    """Extensions inside a standard field (readPoint, sensorElement, ...): hashed after its standard parts."""
    if len(children) <= 1 or any("eventTime" in c[0] or "action" in c[0] for c in children):
        return []
    found = [c for c in children if isinstance(c, tuple) and "{" in c[0] and "/}" in c[0]]
    for c in found:
        children.remove(c)
    return found


def _ordered(children: list[Any], order: Order) -> str:
    """The standard fields in CBV order; what is consumed is removed from `children`."""
    out = ""
    extensions = _user_extensions(children)
    if all(type(c[0]) is str for c in children):
        # The children by name, in one pass: each name's children are consumed together and only those.
        groups: dict[str, list[Any]] = {}
        for c in children:
            groups.setdefault(c[0], []).append(c)
        consumed: list[Any] = []
        for name, sub_order in order:
            group = groups.get(name)
            if group is None:
                continue
            out += _group(group, sub_order, consumed)
        if consumed:
            gone = {id(c) for c in consumed}
            children[:] = [c for c in children if id(c) not in gone]
    else:  # names that are no strings (pairs, a non-string `type`): as the reference does it
        present = [c[0] for c in children]  # children only shrink below: a name absent now stays absent
        for name, sub_order in order:
            if name not in present:
                continue
            taken: list[Any] = []
            out += _group([c for c in children if c[0] == name], sub_order, taken)
            for child in taken:
                children.remove(child)
    if extensions:
        out += _generic(extensions)
    return out


def _group(group: list[Any], sub_order: Order | None, consumed: list[Any]) -> str:
    """One name's children, hashed and sorted; those without children of their own go to `consumed`."""
    values = []
    for child in group:
        text = _child(child, sub_order)
        if text:
            values.append(text)
        if not child[2]:
            consumed.append(child)
    values.sort()
    return "".join(values)


def _generic(children: list[Any]) -> str:
    values = []
    for child in children:
        if isinstance(child, tuple) and len(child) == 2 and isinstance(child[0], tuple):
            values.append(_generic(list(child)))
        else:
            text = child[1].strip()
            if text:
                text = "=" + canonical_value(text)
            values.append(child[0] + text + _generic(child[2]))
    if len(children) > 1 and not any(c[0] in UNSORTED for c in children):
        values.sort()
    return "".join(values)


def _rest(children: list[Any]) -> str:
    rest = [c for c in children if c[0] not in IGNORED]
    return _generic(rest) if rest else ""


def _events(document: Any) -> list[Any]:
    body = document.get("epcisBody") if isinstance(document, dict) else None
    if not isinstance(body, dict):
        return []
    if "eventList" in body:
        return list(body["eventList"] or [])
    if "event" in body:
        return [body["event"]]
    results = (body.get("queryResults") or {}).get("resultsBody") or {}
    return list(results.get("eventList") or [])


def _ignore_fields(document: Mapping[str, Any]) -> set[str]:
    """The fields a document (or its query results) declares outside the event's content."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if (k == "ignoreFields" or k.endswith(":ignoreFields")) and isinstance(v, list):
                    found.update(x for x in v if isinstance(x, str))
                elif k != "eventList":
                    walk(v)

    walk(document)
    return found


def prehashes(document: Mapping[str, Any]) -> list[str]:
    """The pre-hash string of each event of an EPCISDocument or EPCISQueryDocument, in document order."""
    prefixes = _prefixes(document.get("@context"))
    expanded = _suffixes(_expanded_values(document, prefixes))
    ignore = _ignore_fields(document)
    converter = _Converter({k: "{" + v + "}" for k, v in prefixes.items()})
    out = []
    for raw in _events(document):
        event = _replace_bare_strings(raw, expanded)  # a copy: the tree below never shares the caller's objects
        if isinstance(event, dict):
            event = {k: v for k, v in event.items() if k not in ignore}
        tree = _xml_model(converter.convert(event))
        children = tree[2]
        out.append("eventType=" + str(tree[0]) + _ordered(children, PROP_ORDER) + _rest(children))
    return out


def hash_of(prehash: str) -> str:
    return f"ni:///sha-256;{hashlib.sha256(prehash.encode()).hexdigest()}?ver=CBV2.0"


def event_hashes(document: Mapping[str, Any]) -> list[str]:
    """The event hash of each event of the document, in document order."""
    return [hash_of(p) for p in prehashes(document)]


def event_hash(event: Mapping[str, Any], context: Any = None) -> str:
    """One event's hash, as it would be in a document with that `@context`."""
    return event_hashes({"@context": context, "epcisBody": {"eventList": [event]}})[0]


def is_event_hash(value: object) -> bool:
    return isinstance(value, str) and value.startswith("ni:///sha-256;") and value.endswith("?ver=CBV2.0")


__all__ = ["event_hash", "event_hashes", "hash_of", "is_event_hash", "prehashes"]
