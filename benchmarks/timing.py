"""Timing helpers shared by the benchmarks: a best-of-five rate, percentiles, the event loop.

Other processes on a shared machine can only slow a run down, so a rate is the best of several
runs; latencies are pooled and reported as percentiles.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")

LoopName = Literal["asyncio", "uvloop"]


def rate(step: Callable[[], object], seconds: float, per_call: int = 1) -> float:
    """Operations per second of ``step`` (each call doing ``per_call`` of them) on this
    thread's CPU time: the best of five runs of about ``seconds / 5`` each.

    ``step`` must do all its work on the calling thread (no waits, no other threads). CPU time,
    not wall time: another process sharing the CPU takes time slices from a run, which the
    wall clock counts and this thread's clock does not, so a figure and its baseline measured
    one after the other stay comparable on a loaded machine.
    """
    clock = time.thread_time
    calls = 1
    while True:  # size the loop so one run lasts about seconds / 5
        start = clock()
        for _ in range(calls):
            step()
        if clock() - start > seconds / 5:
            break
        calls *= 2
    best = 0.0
    for _ in range(5):
        start = clock()
        for _ in range(calls):
            step()
        best = max(best, calls * per_call / (clock() - start))
    return best


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, _T], loop: LoopName = "asyncio") -> _T:
    """``asyncio.run(main)`` on the named loop."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


def child_env(loop: LoopName) -> dict[str, str]:
    """The environment for a child process (a daemon or a helper of ours) on loop ``loop``:
    the repository on ``PYTHONPATH`` and ``VSCARD_EVENT_LOOP`` (daemons/event_loop.py)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": root, "VSCARD_EVENT_LOOP": loop}


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread) so far, from /proc/PID/stat: clock ticks
    (10 ms), so sum over long spans."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
