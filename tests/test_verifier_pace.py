"""The ledger sweep's pace (services/events/ledger/verifier.sweep_rate): through the ledger once per period,
within its floor and cap."""

from __future__ import annotations

import pytest

from services.events.ledger.verifier import sweep_rate


@pytest.mark.parametrize(
    ("events", "period_s", "cap", "floor", "rate"),
    [
        (3_600_000, 3_600.0, 2_000.0, 500.0, 1_000.0),  # a million events an hour... and a bit: 1,000 a second
        (1_300_000, 3_600.0, 2_000.0, 500.0, 500.0),  # the 1 M run's ledger: the floor
        (10_000_000, 3_600.0, 2_000.0, 500.0, 2_000.0),  # ten million: the cap (the sweep takes longer)
        (10_000_000, 3_600.0, None, 500.0, 10_000_000 / 3_600),  # no cap: the period holds
        (12, 3_600.0, 2_000.0, 500.0, 500.0),  # a small ledger is swept at the floor, not over an hour
        (0, 3_600.0, 2_000.0, 500.0, 500.0),  # an analysed empty ledger
        (None, 3_600.0, 2_000.0, 500.0, 2_000.0),  # never analysed: the cap, as before pacing by period
        (None, 3_600.0, None, 500.0, None),  # and no cap: unpaced
        (3_600_000, 3_600.0, 600.0, 800.0, 600.0),  # a cap below the floor wins: it bounds the CPU
    ],
)
def test_the_pace_goes_through_the_ledger_once_per_period(
    events: int | None, period_s: float, cap: float | None, floor: float, rate: float | None
) -> None:
    assert sweep_rate(events, period_s, cap, floor) == (pytest.approx(rate) if rate is not None else None)
