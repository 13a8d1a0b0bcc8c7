"""The soak's RSS verdict (devtools.soak.growth), over the last half of a process's life: flat (steps before it
were bursts the allocator kept memory for), rising in steps (flat between bursts that each still add), or growing
outside steps (a leak); a short life tells none of them."""

from __future__ import annotations

from devtools.soak import STEP_MIB, Sample, growth


def _life(mib_at: list[float], every_s: float = 10.0, start_s: float = 0.0) -> list[Sample]:
    return [Sample(start_s + i * every_s, 42, m, m - 30, 30, 6) for i, m in enumerate(mib_at)]


def test_a_step_at_a_fault_with_flat_memory_around_it_is_a_step_not_a_slope() -> None:
    rss = [100.0] * 40 + [120.0] * 20  # 10 minutes, one 20 MiB step at 400 s
    faults = [{"fault": "broker", "detail": "", "at_s": 390.0, "seconds": 9.0}]
    r = growth("portal-consumer", _life(rss), faults)
    assert r["steps"] == [{"at_s": 400.0, "mib": 20.0, "after": "fault broker"}]
    assert r["drift_last_half_mib_per_min"] == 0.0
    assert r["verdict"] == "rising in steps over the last half (+20.0 MiB at 1: fault broker), flat between them"
    assert r["slope_mib_per_min"] > 1 and r["slope_last_half_mib_per_min"] > 1  # slopes alone: a leak


def test_the_events_ledger_sweep_is_named_as_the_cause_of_its_step() -> None:
    rss = [100.0] * 31 + [121.0] * 29  # the sweeps: at the start and 300 s later
    r = growth("events", _life(rss), [])
    assert r["steps"] == [{"at_s": 310.0, "mib": 21.0, "after": "ledger sweep"}]
    assert r["verdict"].startswith("rising in steps over the last half (+21.0 MiB at 1: ledger sweep)")


def test_memory_rising_between_steps_keeps_growing() -> None:
    rss = [100.0 + 0.1 * i for i in range(60)]  # 0.6 MiB per minute, never a step
    r = growth("events", _life(rss), [])
    assert r["steps"] == []
    assert 0.55 < r["drift_last_half_mib_per_min"] < 0.65
    assert r["verdict"].startswith("growing")
    assert r["slope_last_half_mib_per_min"] is not None and r["slope_last_half_mib_per_min"] > 0.5


def test_a_step_early_in_life_and_nothing_after_it_is_a_plateau() -> None:
    rss = [100.0] * 10 + [120.0] * 50  # a republish at 100 s; the next ones (not shown) reused its memory
    faults = [{"fault": "broker", "detail": "", "at_s": 95.0, "seconds": 9.0}]
    r = growth("portal-consumer", _life(rss), faults)
    assert r["verdict"] == "flat over the last half (after steps earlier, +20.0 MiB at 1: fault broker)"


def test_caches_filling_for_minutes_then_flat_is_a_plateau() -> None:
    rss = [100.0 + 0.2 * i for i in range(30)] + [106.0] * 40  # 1.2 MiB/min for 5 minutes, then flat
    r = growth("portal", _life(rss), [])
    assert r["drift_after_warm_up_mib_per_min"] > 0.25  # the warm-up's two minutes are not enough
    assert r["drift_last_half_mib_per_min"] == 0.0
    assert r["verdict"] == "flat over the last half"


def test_a_rise_smaller_than_a_step_is_drift_not_a_step() -> None:
    rss = [100.0] * 20 + [100.0 + STEP_MIB / 2 * k for k in range(1, 21)]
    r = growth("registry", _life(rss), [])
    assert r["steps"] == []
    assert r["verdict"].startswith("growing")


def test_a_life_of_a_few_minutes_is_too_short_to_tell() -> None:
    r = growth("portal-consumer", _life([100.0, 110.0, 112.0, 113.0] * 5), [])
    assert r["verdict"].startswith("too short to tell")


def test_a_burst_rising_over_several_samples_is_one_step() -> None:
    rss = [100.0] * 40 + [101.0, 111.0, 112.0] + [112.0] * 20
    r = growth("portal-consumer", _life(rss), [])
    assert [(s["at_s"], s["mib"]) for s in r["steps"]] == [(400.0, 12.0)]
    assert r["drift_last_half_mib_per_min"] == 0.0


def test_a_leak_fast_enough_to_rise_every_sample_is_no_step() -> None:
    rss = [100.0 + 0.6 * i for i in range(60)]  # 3.6 MiB per minute, every sample
    r = growth("events", _life(rss), [])
    assert r["steps"] == []
    assert r["verdict"].startswith("growing 3.6")
