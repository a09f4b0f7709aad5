"""The daemons' garbage-collector policy: collect cyclic garbage rarely, and never rescan
what start-up built.

A daemon's steady state makes almost no reference cycles (refcounting frees its per-APDU
objects), yet with CPython's default thresholds (700, 10, 10) the collector ran about 200
times a second under load, and with 1,000 readers every full collection walked all their
objects: 110 ms each, 3-4 a second. That was a quarter of ccid-passthru's CPU and most of its
p99 latency (benchmarks/bench_scale.py, docs/benchmarks.md). So: objects that exist once
start-up is done (modules, classes, configuration) are frozen out of collections, and the
young generation is collected after 50,000 net allocations instead of 700, with a full
collection at most every 100 middle ones. Cyclic garbage is still collected, only later: it
is bounded by those thresholds, not left to grow.
"""

from __future__ import annotations

import gc
from typing import Final

#: Net container allocations between young collections; the middle and old multipliers.
THRESHOLDS: Final = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze what exists now and apply :data:`THRESHOLDS` (call once start-up is done)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
