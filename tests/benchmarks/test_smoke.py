"""Every benchmark still runs end to end, at toy sizes: the report's numbers come from
``python -m benchmarks.run_all``, never from here (nothing here is timed)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import pytest

from benchmarks.bench_card import run_card
from benchmarks.bench_chain import run_chain
from benchmarks.bench_codec import run_codec
from benchmarks.bench_piv import run_piv
from benchmarks.bench_rsa import run_rsa
from benchmarks.bench_scale import run_scale
from benchmarks.bench_storm import run_storm
from benchmarks.bench_usbip import run_usbip
from benchmarks.report import Section

RUNS: dict[str, Callable[[], Section]] = {
    "codec": lambda: run_codec(0.01),
    "rsa": lambda: run_rsa(0.05),
    "card": lambda: run_card(0.05),
    "piv": lambda: run_piv(0.05),
    "usbip": lambda: run_usbip(40, 1, "asyncio"),
    "chain": lambda: run_chain(40, 1, "asyncio"),
    "scale": lambda: run_scale((2,), 0.3, "asyncio"),
    "storm": lambda: run_storm(5, "asyncio"),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_the_benchmark_runs_and_reports_finite_figures(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Benchmarks set their children's environment on os.environ: undo it after the test.
    for variable in ("VSCARD_EVENT_LOOP", "PYTHONPATH"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    section = RUNS[name]()
    assert section.figures, f"{name} reported no figure"
    for figure in section.figures:
        assert math.isfinite(figure.value), figure
        assert figure.value >= 0, figure
