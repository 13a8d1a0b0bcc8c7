"""Posting lifecycle events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.events.lifecycle import service
from services.events.lifecycle.schemas import BatchIn, BatchOut, EventIn, EventResult
from shared.auth import CurrentPrincipal
from shared.db import SessionDep
from shared.limits import create_route
from shared.participants import directory
from shared.problems import PROBLEM_RESPONSES

router = APIRouter(tags=["lifecycle events"], responses=PROBLEM_RESPONSES)
#: Largest legal bodies (compact JSON, every string at its maximum length): one event is at most an
#: ERROR_DECLARED naming 100 corrective IDs of 512 characters (about 52 KB); in a batch each of the 5,000
#: events counts as the largest of the other types (an INCIDENT with a 2,000-character description and a
#: full location: about 2.6 KB). Bodies above twice these are 413.
EVENT_BYTES = 56 * 1024
BATCH_EVENT_BYTES = 2_600
BATCH_MAX_EVENTS = 5_000

TYPES_DOC = """
| type | from | to | roles | custody | `data` |
|---|---|---|---|---|---|
| ASSEMBLED | manufactured, remanufactured | assembled | manufacturer, remanufacturer | must hold child and parent | `parent_id` |
| DISASSEMBLED | assembled | removed | remanufacturer, recycler, manufacturer | must hold parent | `parent_id` (the current parent) |
| INSTALLED | manufactured, remanufactured, repurposed (after a passing SAFETY_INSPECTED) | in_service | oem | custodian | `vin` or `ess_site_id` |
| INSPECTED | in_service | in_service | inspector, oem | — | `soh_pct`, `cycle_count` |
| REMOVED | in_service | removed | dismantler, oem | poster becomes custodian | `reason`: end_of_life, accident, recall, replacement; `consignee`? (the collector it hands the battery to) |
| COLLECTED | removed | collected | collector | custodian or the consignee REMOVED named; becomes custodian | `centre`, `region` |
| GRADED | removed, collected | graded | assessor | custodian | `soh_pct`, `grade`: reuse, remanufacture, recycle |
| REMANUFACTURED | graded (remanufacture) | remanufactured | remanufacturer | custodian | `note`? |
| REPURPOSED | graded (reuse) | repurposed | repurposer | custodian | `new_application`, `rated_capacity` (kWh) |
| SAFETY_INSPECTED | repurposed, remanufactured | unchanged | certifier | — | `standard` (KC 10031), `result` pass/fail, `body` |
| RECYCLED | graded (recycle), collected, removed | recycled | recycler | custodian | `process`, `input_mass_kg`, `black_mass_kg`, `recovered_kg`{lithium, nickel, cobalt, manganese, copper, aluminium, graphite, lead} |
| DISPOSED | any but final | disposed | collector, recycler | custodian | `method`?, `note`? |
| TRANSFERRED | any but final | unchanged | the custodian | receiver becomes custodian | `to` |
| INCIDENT | any but final | unchanged | any operational role, ministry | — | `kind`, `severity`, `description`? |
| BMS_REPORTED | any but final | unchanged | any operational role but certifier | the custodian, the battery's manufacturer, or (in service) an inspector or assessor | at least one BMS reading: `soh_pct`, `soce_pct`, `soc_pct` (%), `cycle_count`, `remaining_capacity_ah`, `remaining_energy_kwh`, `capacity_fade_pct`, `power_fade_pct`, `remaining_power_w` [{`at_soc_pct`, `power_w`}], `remaining_round_trip_efficiency_pct`, `round_trip_efficiency_fade_pct`, `self_discharge_rate_pct_per_month`, `self_discharge_evolution_pct`, `internal_resistance_ohm` / `internal_resistance_increase_pct` {`pack`, `module`, `cell`}, running totals `energy_throughput_kwh`, `capacity_throughput_ah`, `deep_discharge_events`, `overcharge_events`, `extreme_temperature_min` {`above`, `below`, `charging_above`, `charging_below`} |
| ERROR_DECLARED | any | the state without the declared event | the declared event's poster, an authority | as without it | `declared_event_id`, `declared_actor`?, `reason`, `corrective_event_ids`? |

ERROR_DECLARED takes the declared event's effects out: the battery's state is recomputed from its ledger without it
(the ledger keeps it, marked). RECYCLED and DISPOSED: by their poster within `correction_window_days` (default 30;
403 `correction-window-closed` after), by an authority at any time. 409 `already-declared` for an event declared
before; 409 `later-events-depend` while a later event needs it (declare that one first); 422 for a declaration or
the registration (amend registry facts at the registry instead).

BMS_REPORTED carries a battery management system's readings (EU 2023/1542 Art. 14, Annex VII) for the passport's
PerformanceAndDurability aspect: SoH and cycles follow INSPECTED's rules (SoH within 0-100 and not rising without a
REMANUFACTURED, cycles never falling); a running total never falls (422 `implausible-total`); remaining capacity or
energy more than 10 % above the rated one is 422
`implausible-remaining`.

MANUFACTURED is recorded when the registry registers the battery (sequence 1). Event IDs are unique per poster.
`occurred_at` may be at most a few seconds (the `occurred_at_max_ahead_s` setting, default 5) ahead of the server.
`expected_sequence`, when given, must equal the battery's current sequence (its last event's).
"""


@create_route(
    router,
    "/v1/events",
    EventResult,
    "Record one lifecycle event",
    limit=EVENT_BYTES,
    description="The actor is the caller's organisation (from the token). Re-sending the same `event_id` with "
    "the same content answers the original 201 again; with other content, 409 `event-id-conflict`.\n" + TYPES_DOC,
)
async def post_event(body: EventIn, request: Request, principal: CurrentPrincipal) -> Any:
    state = request.app.state
    return await service.capture_one(
        state.statement_pool,
        state.sessionmaker,
        body,
        principal,
        state.registry,
        state.capture_rules,
        receivers=directory(request),
    )


@create_route(
    router,
    "/v1/events/batch",
    BatchOut,
    "Record up to 5,000 events, all or nothing",
    limit=BATCH_MAX_EVENTS * BATCH_EVENT_BYTES,
    description="Events apply in the order given (several for one battery are fine). If any fails, nothing is "
    "stored and `errors` lists each failing item's `index` with its problem.",
)
async def post_batch(body: BatchIn, request: Request, session: SessionDep, principal: CurrentPrincipal) -> Any:
    state = request.app.state
    results = await service.capture(
        session, body.events, principal, state.registry, state.capture_rules, receivers=directory(request)
    )
    return {"results": results}
