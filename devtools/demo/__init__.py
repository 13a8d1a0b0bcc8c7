"""The demo (`batterytrace demo`, `batterytrace dev --demo`): realistic, deterministic data loaded through the
real HTTP APIs (registry → Kafka → events → Kafka → portal), so that every ministry view shows figures.

What it loads (seeded, so the same seed gives the same data):
- participants of every role: 3 manufacturers, 3 OEMs (two carmakers and an ESS integrator), 2 inspectors,
  5 dismantlers, 8 collection centres in 8 regions, 2 assessors, 2 remanufacturers, 2 repurposers, the
  certifiers KTL and KTR, 3 recyclers, the four ministries and an operator;
- 18 models: cell, module and pack models of six families in four chemistries (NCM, NCA, LFP, LMFP);
- `packs` packs (2,000 by default), each with a sampled composition of 2 modules x 4 cells (a real pack has
  far more; the sample keeps the load to about a minute), registered and ASSEMBLED cell → module → pack,
  manufactured between January 2024 and about three weeks ago;
- plausible lifecycles: transfer to an OEM and installation (VIN aliases, or an ESS site), periodic
  inspections with declining SoH, incidents, removals (accident, recall, replacement, end of life),
  collection by region, grading, then repurposing (with KC 10031 safety inspections, re-installation at
  ESS sites), remanufacturing (a weak module taken out and recycled), recycling (recovered masses from
  the pack's declared content and the process's yields), a few disposals, and backlogs left waiting.
  The first packs follow scripted stories so that even a small demo fills every section of every view.
- corrections (`corrections`): a recycler's mistaken RECYCLED of a pack waiting at a centre, declared in error
  within its window (the pack is back to collected, every figure as before, the history strikes it through), and
  a manufacturer's amendment of the second pack's site and carbon footprint (a record: who, when, why, before,
  after).

Idempotent: participants, models and batteries that exist (409) are skipped; event IDs are UUIDv5 of the
battery and step, and all times are fixed relative to the first run's clock (read back from the first
pack's manufacturing date), so a second run re-posts the same events as harmless retries.

`catalogue` holds the cast (participants, model families), `plan` the seeded stories (which events happen to
which battery in which order), `load` the HTTP loading with progress.
"""

from __future__ import annotations

from devtools.demo.catalogue import ORGS
from devtools.demo.load import load_demo, load_demo_async
from devtools.demo.plan import build_plans

__all__ = ["ORGS", "build_plans", "load_demo", "load_demo_async"]
