"""The EU targets of Regulation (EU) 2023/1542 Annex XII and their measuring, driven directly (pure, no I/O)."""

from __future__ import annotations

import pytest

from services.portal.views import targets
from services.portal.views.targets import EFFICIENCY_TARGETS_LITHIUM, RECOVERY_TARGETS, Target


def test_the_targets_are_annex_xii_as_published() -> None:
    # Part C (material recovery): 2027 and 2031.
    assert {m: (a.pct, b.pct) for m, (a, b) in RECOVERY_TARGETS.items()} == {
        "lithium": (50.0, 80.0),
        "cobalt": (90.0, 95.0),
        "nickel": (90.0, 95.0),
        "copper": (90.0, 95.0),
        "lead": (90.0, 95.0),
    }
    assert {a.year for a, _ in RECOVERY_TARGETS.values()} == {2027}
    assert {b.year for _, b in RECOVERY_TARGETS.values()} == {2031}
    # Part B (recycling efficiency, lithium-based): 65 % by 2025, 70 % by 2030.
    assert EFFICIENCY_TARGETS_LITHIUM == (Target(2025, 65.0), Target(2030, 70.0))


@pytest.mark.parametrize(
    ("material", "recovered", "contained", "rate", "meets_2027", "meets_2031"),
    [
        ("lithium", 4.0, 8.0, 50.0, True, False),  # exactly the 2027 target
        ("lithium", 6.4, 8.0, 80.0, True, True),  # exactly the 2031 target
        ("lithium", 3.99, 8.0, 49.88, False, False),
        ("copper", 19.0, 20.0, 95.0, True, True),
        ("copper", 18.0, 20.0, 90.0, True, False),
        ("cobalt", 4.4, 5.0, 88.0, False, False),
        ("copper", 10.0, 0.0, None, None, None),  # nothing declared: no rate
        ("manganese", 2.0, 4.5, 44.44, None, None),  # no target
        ("graphite", 0.0, 50.0, 0.0, None, None),
    ],
)
def test_recovery_against_both_dates(
    material: str,
    recovered: float,
    contained: float,
    rate: float | None,
    meets_2027: bool | None,
    meets_2031: bool | None,
) -> None:
    r = targets.recovery(material, recovered, contained)
    assert (r["rate_pct"], r["meets_2027_target"], r["meets_2031_target"]) == (rate, meets_2027, meets_2031)
    assert (r["recovered_kg"], r["contained_kg"]) == (recovered, contained)


@pytest.mark.parametrize(
    ("recovered", "input_kg", "pct", "m2025", "m2030"),
    [
        ({"nickel": 65.0}, 100.0, 65.0, True, False),
        ({"nickel": 40.0, "copper": 30.0}, 100.0, 70.0, True, True),
        ({"lithium": 4.0}, 477.0, 0.84, False, False),
        ({}, 0.0, None, None, None),
    ],
)
def test_recycling_efficiency_against_both_dates(
    recovered: dict[str, float], input_kg: float, pct: float | None, m2025: bool | None, m2030: bool | None
) -> None:
    e = targets.efficiency(recovered, input_kg)
    assert (e["efficiency_pct"], e["meets_2025_target"], e["meets_2030_target"]) == (pct, m2025, m2030)
    assert (e["eu_target_2025_pct"], e["eu_target_2030_pct"]) == (65.0, 70.0)


def test_recoveries_list_every_material_asked() -> None:
    rows = targets.recoveries(("lithium", "aluminium"), {"lithium": 1.0}, {"aluminium": 3.0})
    assert [(r["material"], r["rate_pct"]) for r in rows] == [("lithium", None), ("aluminium", 0.0)]


def test_the_module_is_pure_and_cites_the_regulation() -> None:
    import ast
    from pathlib import Path

    source = Path(targets.__file__).read_text()
    assert "Regulation (EU) 2023/1542" in source and "Annex XII" in source
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= {"__future__", "collections.abc", "dataclasses", "typing"}
