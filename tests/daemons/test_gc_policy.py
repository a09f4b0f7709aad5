"""The daemons' GC policy: rarer collections, start-up frozen, cyclic garbage still bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]

# Run in a fresh interpreter: the policy is process-wide and must not leak into the suite's.
PROGRAM = textwrap.dedent(
    """
    import gc
    import weakref

    from daemons.gc_policy import THRESHOLDS, tune_gc

    tune_gc()
    assert gc.get_threshold() == THRESHOLDS, gc.get_threshold()
    assert gc.get_freeze_count() > 0


    class Node:
        pass


    probes = []
    for i in range(300_000):
        node = Node()
        node.me = node  # a reference cycle: only the collector can free it
        if i % 1000 == 0:
            probes.append(weakref.ref(node))
        del node
    print(sum(probe() is not None for probe in probes))
    """
)


def test_tuned_gc_still_frees_reference_cycles_within_its_thresholds() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    alive = int(result.stdout)
    # 300 probes over 300,000 cycles: only those made since the last young collection
    # (at most 50,000 allocations, two per cycle) may still be alive.
    assert alive <= 30, f"{alive} of 300 probed cycles never collected"
