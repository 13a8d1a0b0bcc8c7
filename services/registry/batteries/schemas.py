from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from typing_extensions import TypedDict

from services.registry.catalog.schemas import CONTENT_MATERIALS, Chemistry, Kind
from shared.contract.lifecycle import amounts_model
from shared.pagination import Page
from shared.validation import BatteryId, NonNegative, PastAwareDatetime, Percent, documented

if TYPE_CHECKING:  # built from the contract's material names; to a type checker, models
    Materials = BaseModel
    RecycledContent = BaseModel
else:
    Materials = amounts_model("Materials", CONTENT_MATERIALS, NonNegative)
    RecycledContent = amounts_model("RecycledContent", ("lithium", "nickel", "cobalt", "lead"), Percent)


EXAMPLE_BATTERY: dict[str, Any] = {
    "id": "KR-LGES-P000001",
    "model_id": "NCM811-P96-77KWH",
    "serial_number": "P000001",
    "manufactured_at": "2026-03-02T09:00:00+09:00",
    "manufacturing_site": "Ochang, KR",
    "materials_kg": {
        "lithium": 8.1,
        "nickel": 39.5,
        "cobalt": 4.9,
        "manganese": 4.6,
        "copper": 21.0,
        "aluminium": 38.0,
        "graphite": 52.0,
    },
    "recycled_content_pct": {"lithium": 6, "nickel": 4, "cobalt": 16, "lead": 0},
    "carbon_footprint_kg_co2e_per_kwh": 61.5,
}


class BatteryIn(BaseModel):
    model_config = documented(EXAMPLE_BATTERY, extra="forbid")
    id: BatteryId
    model_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Kind | None = Field(None, description="Optional; when given it must equal the model's kind.")
    serial_number: Annotated[str, Field(min_length=1, max_length=64)]
    manufactured_at: PastAwareDatetime
    manufacturing_site: Annotated[str, Field(min_length=1, max_length=200)]
    materials_kg: Materials = Materials()
    recycled_content_pct: RecycledContent = RecycledContent()
    carbon_footprint_kg_co2e_per_kwh: NonNegative | None = None


class BulkIn(BaseModel):
    model_config = documented({"batteries": [EXAMPLE_BATTERY]}, extra="forbid")
    batteries: Annotated[list[BatteryIn], Field(min_length=1, max_length=10_000)]


class PlainModel:
    """A model validated into plain dicts: the same fields, types, constraints, validators and `extra` rule, through
    a TypedDict derived from the model (nested models likewise), so that pydantic builds no model instances (a
    bulk body of 10,000 batteries validated about 3x faster so, issue 16). `fill` puts the model's defaults in:
    `fill(adapter.validate_json(raw))` equals `model.model_validate_json(raw).model_dump()`. Errors differ in
    wording (a TypedDict is not a model): callers re-validate a refused body with the model for its errors."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        #: the fields that are models themselves
        self.nested: dict[str, PlainModel] = {}
        #: every field in the model's order: its default, or None until the value given replaces it
        self.template: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                self.nested[name] = PlainModel(info.annotation)
                annotation = self.nested[name].typed
            else:
                annotation = _plain(info.annotation)
            if info.metadata:
                annotation = Annotated[annotation, *info.metadata]
            fields[name] = annotation if info.is_required() else NotRequired[annotation]
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            self.template[name] = default.model_dump() if isinstance(default, BaseModel) else default
        make: Any = TypedDict  # built from the model's fields at runtime
        self.typed: Any = make(f"{model.__name__}Dict", fields)
        self.typed.__pydantic_config__ = ConfigDict(extra=model.model_config.get("extra"))

    def fill(self, value: dict[str, Any]) -> dict[str, Any]:
        out = {**self.template, **value}
        for name, nested in self.nested.items():
            out[name] = nested.fill(out[name]) if nested.nested else {**nested.template, **out[name]}
        return out


def _plain(annotation: Any) -> Any:
    """The annotation with every model in it (`list[Model]`, `Model | None`) replaced by its TypedDict."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return PlainModel(annotation).typed
    args = typing.get_args(annotation)
    plain = tuple(_plain(a) for a in args)
    if plain == args:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.Union[plain]  # noqa: UP007 - rebuilt from its arguments
    return typing.get_origin(annotation)[plain]


#: A bulk registration's batteries as plain dicts, as BatteryIn validates them (`register_bulk`).
PLAIN_BATTERY = PlainModel(BatteryIn)
PLAIN_BULK = TypeAdapter(PlainModel(BulkIn).typed)


class BulkOut(BaseModel):
    created: int
    ids: list[str]


class BatteryPublic(BaseModel):
    """What anyone holding the battery's ID or QR may see (EU passport: public level)."""

    id: str = Field(examples=["KR-LGES-P000001"])
    kind: Kind
    model_id: str = Field(description="The battery model it is an instance of.", examples=["NCM811-P96-77KWH"])
    chemistry: Chemistry = Field(description="The model's cell chemistry.")
    manufacturer: str = Field(description="The manufacturer's participant ID.", examples=["LGES"])
    manufactured_at: datetime
    manufacturing_site: str = Field(examples=["Ochang, KR"])
    rated_capacity_ah: float | None = Field(None, description="The model's rated capacity (Ah).")
    nominal_voltage_v: float | None = Field(None, description="The model's nominal voltage (V).")
    rated_energy_kwh: float | None = Field(None, description="The model's rated energy (kWh).")
    mass_kg: float | None = Field(None, description="The model's mass (kg).")
    recycled_content_pct: RecycledContent
    carbon_footprint_kg_co2e_per_kwh: float | None = Field(
        None, description="Carbon footprint per kWh of rated energy (EU 2023/1542 Art. 7)."
    )
    access_level: str = Field("public", description="What this answer shows: `public`, or `full` with a token.")


class BatteryOut(BatteryPublic):
    """The full record (needs a token)."""

    serial_number: str
    materials_kg: Materials
    aliases: list[AliasOut] = []
    created_at: datetime
    access_level: str = "full"


class BatteryFilter(BaseModel):
    """A battery list's filters (None: any), read as its query parameters (`Annotated[..., Query()]`)."""

    model_config = ConfigDict(frozen=True)

    manufacturer: str | None = None
    kind: Kind | None = None
    chemistry: Chemistry | None = None


class BatteryPage(Page[BatteryOut]):
    pass


class AliasScheme(StrEnum):
    gs1_digital_link = "gs1_digital_link"
    epc = "epc"
    vin = "vin"


VIN_PATTERN = r"^[A-HJ-NPR-Z0-9]{17}$"


class AliasIn(BaseModel):
    model_config = documented(
        {"scheme": "vin", "value": "KMHEM41AP6A123456"},
        {"scheme": "gs1_digital_link", "value": "https://id.example.kr/01/08801234567893/21/P000001"},
        {"scheme": "epc", "value": "urn:epc:id:sgtin:8801234.056789.P000001"},
        extra="forbid",
    )
    scheme: AliasScheme
    value: Annotated[str, Field(min_length=1, max_length=512)]

    @model_validator(mode="after")
    def _value_fits_scheme(self) -> AliasIn:
        import re

        if self.scheme is AliasScheme.vin and not re.fullmatch(VIN_PATTERN, self.value):
            raise ValueError("a VIN is 17 characters of A-Z (not I, O, Q) and 0-9")
        if self.scheme is AliasScheme.epc and not self.value.startswith("urn:epc:id:"):
            raise ValueError("an EPC alias is a URN starting with 'urn:epc:id:'")
        if self.scheme is AliasScheme.gs1_digital_link and not re.match(r"^https?://[^/]+/.*\d{2,4}/", self.value):
            raise ValueError("a GS1 Digital Link is an http(s) URI with GS1 application identifiers in its path")
        return self


class AliasOut(AliasIn):
    model_config = ConfigDict(extra="ignore")
    battery_id: str


class Resolved(BaseModel):
    """What `/v1/resolve` found: an alias, or the battery ID itself (scheme `battery_id`)."""

    battery_id: str
    scheme: AliasScheme | Literal["battery_id"]
    value: str


BatteryOut.model_rebuild()


class Shaped:
    """Plain data shaped as `model` serialises it: its fields in its order, nothing else, nested models (and
    lists of them) likewise. For hot reads answered with `shared.responses.DirectJSON`, whose data has the
    model's types already: FastAPI then neither validates it through the model nor serialises the model."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.fields: list[tuple[str, Shaped | None, bool]] = []  # name, nested shape, whether a list of it
        for name, info in model.model_fields.items():
            annotation, many = info.annotation, typing.get_origin(info.annotation) is list
            if many:
                annotation = typing.get_args(annotation)[0]
            nested = Shaped(annotation) if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
            self.fields.append((name, nested, many))

    def __call__(self, value: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, nested, many in self.fields:
            v = value[name]
            if nested is not None and v is not None:
                v = [nested(x) for x in v] if many else nested(v)
            out[name] = v
        return out


#: A battery as GET /v1/batteries/{id} answers it, by its `access_level`.
BATTERY_SHAPES = {"full": Shaped(BatteryOut), "public": Shaped(BatteryPublic)}
