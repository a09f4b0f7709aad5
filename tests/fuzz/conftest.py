"""Shows how many inputs each decoder survived in the short fuzz run, in pytest's summary."""

from __future__ import annotations

import pytest

from .driver import Result

FUZZ_RESULTS = pytest.StashKey[list[Result]]()


@pytest.fixture
def fuzz_results(request: pytest.FixtureRequest) -> list[Result]:
    """Where a test leaves its :class:`~tests.fuzz.driver.Result` for the summary."""
    return request.config.stash.setdefault(FUZZ_RESULTS, [])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    results = config.stash.get(FUZZ_RESULTS, [])
    if not results:
        return
    terminalreporter.section("fuzz: inputs per decoder (built-in driver, seed 0)")
    for result in results:
        terminalreporter.write_line(
            f"{result.target:<13} {result.inputs:>7,} inputs in {result.seconds:5.1f} s "
            f"({result.exec_per_sec:,.0f}/s), peak RSS {result.peak_rss_mb:.0f} MB, "
            f"slowest {result.slowest_input_ms:.1f} ms, crashes {result.crash_count}"
        )
    total = sum(result.inputs for result in results)
    crashes = sum(result.crash_count for result in results)
    terminalreporter.write_line(f"{total:,} inputs in all, {crashes} crashes")
