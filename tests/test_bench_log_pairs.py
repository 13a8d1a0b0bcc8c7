"""The log part's cost design (bench/log.py): adjacent off/on pairs in A-B-B-A order, each pair one cost, the
figure their median."""

from __future__ import annotations

import pytest

from bench.log import median, pair_costs, pair_deltas, run_order


def test_the_runs_alternate_off_on_and_on_off_so_each_pair_is_adjacent() -> None:
    assert run_order(1) == ["off", "on"]
    assert run_order(4) == ["off", "on", "on", "off", "off", "on", "on", "off"]
    for pairs in range(1, 7):
        order = run_order(pairs)
        assert order.count("off") == order.count("on") == pairs
        assert all({order[k], order[k + 1]} == {"off", "on"} for k in range(0, len(order), 2))


def test_each_pair_compares_its_own_two_runs_whatever_their_order() -> None:
    # (label, events, seconds, CPU ms per event): pair 1 off-on, pair 2 on-off, on a machine that slowed between.
    done = [
        ("off", 1000, 1.0, 0.50),
        ("on", 1000, 1.1, 0.55),
        ("on", 1000, 2.2, 1.10),
        ("off", 1000, 2.0, 1.00),
    ]
    costs = pair_costs(done)
    assert [round(rate, 6) for rate, _ in costs] == [round((1 - 1 / 1.1) * 100, 6)] * 2
    assert [round(cpu or 0, 6) for _, cpu in costs] == [10.0, 10.0]
    # Pooling all runs instead would mix the slow pair with the fast one; the pairs do not.
    assert pair_costs([("on", 1000, 1.0, None), ("off", 1000, 1.0, 0.5)]) == [(0.0, None)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [([3.0], 3.0), ([5.0, 1.0], 3.0), ([9.0, -2.0, 4.0], 4.0), ([1.0, 100.0, 2.0, 3.0], 2.5)],
)
def test_median(values: list[float], expected: float) -> None:
    assert median(values) == expected


def test_the_log_s_own_processes_are_compared_pair_by_pair() -> None:
    # (label, CPU ms per event of the events service and PostgreSQL's events sessions), A-B-B-A.
    own = [("off", 0.20), ("on", 0.21), ("on", 0.32), ("off", 0.30), ("off", None), ("on", 0.5)]
    assert [round(d, 6) for d in pair_deltas(own)] == [0.01, 0.02]  # the pair with an unmeasured run is left out
