"""shared.memdebug's probe without tracing (BT_MEMDEBUG_PROBE): the split and census on SIGUSR1, the trim on
SIGUSR2, and tracemalloc left off, so what it measures is the memory as production allocates it."""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path

import orjson
import pytest

from shared import memdebug


def test_the_probe_dumps_the_split_and_trims_without_tracing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memdebug.ENV, raising=False)
    monkeypatch.setenv(memdebug.PROBE_ENV, str(tmp_path / "probe"))
    saved = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    try:
        assert memdebug.install_from_env()
        assert not tracemalloc.is_tracing()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR1, saved[0])
        signal.signal(signal.SIGUSR2, saved[1])
    split = orjson.loads((tmp_path / f"probe.{os.getpid()}.0.json").read_bytes())
    assert split["rss"] > 0 and "traced" not in split and split["types"]
    assert not list(tmp_path.glob("*.snap"))
    trim = orjson.loads((tmp_path / f"probe.{os.getpid()}.trim.json").read_bytes())
    assert trim["before"]["rss"] > 0 and trim["after"]["rss"] > 0
