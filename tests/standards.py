"""The standards files the tests check against (EPCIS examples, Battery Pass schemas): `../shared/standards`
beside the checkout, i.e. the project's `shared/standards` folder next to the repository. A test that needs
one and cannot find it fails, naming the file and where it looked; it never skips or passes without it."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Where the standards live: beside this checkout, then the project's usual place (for a worktree elsewhere).
PLACES = list(dict.fromkeys([ROOT.parent / "shared" / "standards", Path("/work/shared/standards")]))


def _missing(what: str) -> str:
    return f"missing standards file(s) {what}: looked in {', '.join(map(str, PLACES))} (../shared/standards)"


def standard(*parts: str) -> Path:
    """A standards file or folder, e.g. standard("batterypass", "Circularity-schema.json")."""
    for place in PLACES:
        if (path := place.joinpath(*parts)).exists():
            return path
    pytest.fail(_missing("/".join(parts)), pytrace=False)


def standard_files(folder: str, pattern: str) -> list[Path]:
    """The standards files matching `pattern` in `folder` (at least one), e.g. the EPCIS example documents."""
    for place in PLACES:
        if found := sorted((place / folder).glob(pattern)):
            return found
    pytest.fail(_missing(f"{folder}/{pattern}"), pytrace=False)
