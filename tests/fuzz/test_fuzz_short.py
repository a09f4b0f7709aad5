"""The short fuzz run CI does: every decoder takes a fixed, seeded stream of mutated inputs
with no crash, hang or runaway memory. The long run is ``python -m tests.fuzz`` (see
docs/fuzzing.md); the counts show in pytest's summary."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import structlog

from .driver import Result, fuzz
from .targets import TARGETS

#: Inputs per target: about two seconds each here, deterministic (seed 0).
SHORT_RUNS = 20_000


@pytest.fixture(autouse=True)
def _errors_only() -> None:
    # Warnings from millions of hostile inputs are expected; rendering them costs more than
    # the decoding. The suite's conftest restores the configuration afterwards.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_decoder_survives_a_short_fuzz_run(
    name: str,
    fuzz_results: list[Result],
    record_property: Callable[[str, object], None],
) -> None:
    target = TARGETS[name]
    harness = target.harness()
    result = fuzz(
        name,
        harness.fuzz_one,
        target.corpus(),
        max_len=harness.max_len,
        runs=SHORT_RUNS,
        seed=0,
        timeout=2.0,
        rss_limit_mb=1024,
    )
    fuzz_results.append(result)
    record_property("fuzz_inputs", result.inputs)
    record_property("fuzz_exec_per_sec", round(result.exec_per_sec))
    assert result.inputs == SHORT_RUNS
    assert not result.crashes, "\n\n".join(
        f"{crash.kind}: {crash.summary}\ninput: {crash.input.hex()}\n{crash.traceback}"
        for crash in result.crashes
    )


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_committed_corpus_is_what_the_harness_seeds(name: str) -> None:
    # Regenerate with: python -m tests.fuzz.make_corpus
    target = TARGETS[name]
    committed = {path.name: path.read_bytes() for path in (target.corpus_directory).iterdir()}
    assert committed == target.harness().seeds()
