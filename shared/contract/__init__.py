"""The published contract between the services: what crosses a service boundary, declared once.

Producers and consumers import it; no service imports another's code. Three parts:
- `streams`: topic names, CloudEvent types and the envelope, the deterministic registration event ID, and the
  rule a consumer follows for a message it does not know;
- `lifecycle`: lifecycle event types and states, the shared vocabularies, the ledger record's fields, the
  canonical JSON and the hash chain (`GENESIS`);
- `epcis`: the EPCIS 2.0 / CBV battery vocabulary and the lifecycle ↔ EPCIS step table.
"""
