"""Which events of a battery's ledger are declared in error: the one reading of ERROR_DECLARED that the events
service (its state fold) and every consumer (the portal's projections) share (DOMAIN.md, Corrections).

An ERROR_DECLARED names the declared event by `data.declared_event_id` and, where several posters used that ID
on the battery, `data.declared_actor`; the events service accepts only a declaration that names exactly one
earlier event of the same battery (where several fit, the declarer's own). A declared event loses every
effect; the ledger keeps it, marked. An ERROR_DECLARED cannot itself be declared (declare the original again is
refused too: an event is declared once)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

DECLARATION = "ERROR_DECLARED"
#: Registry facts are not events: MANUFACTURED (the registration) is corrected by an amendment, never declared.
NOT_DECLARABLE = frozenset({"MANUFACTURED", DECLARATION})


class Recorded(Protocol):
    """What of a ledger record the reading needs (the events service's LedgerRow, the portal's timeline event)."""

    @property
    def sequence(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


def declared_target(declaration: Recorded, earlier: Iterable[Recorded]) -> Recorded | None:
    """The earlier event a declaration names (None: none fits, or it is ambiguous)."""
    declared_id = declaration.data.get("declared_event_id")
    named = declaration.data.get("declared_actor")
    fitting = [
        e
        for e in earlier
        if str(e.event_id) == declared_id
        and (named is None or e.actor == named)
        and str(e.type) not in NOT_DECLARABLE
        and e.sequence < declaration.sequence
    ]
    if len(fitting) > 1:
        fitting = [e for e in fitting if e.actor == declaration.actor]
    return fitting[0] if len(fitting) == 1 else None


def declared_sequences(events: Iterable[Recorded]) -> dict[int, int]:
    """{declared event's sequence: its declaration's sequence} over one battery's events (any order). The first
    declaration of an event counts (the events service accepts no second)."""
    ordered = sorted(events, key=lambda e: e.sequence)
    out: dict[int, int] = {}
    for i, e in enumerate(ordered):
        if str(e.type) == DECLARATION:
            target = declared_target(e, ordered[:i])
            if target is not None:
                out.setdefault(target.sequence, e.sequence)
    return out
