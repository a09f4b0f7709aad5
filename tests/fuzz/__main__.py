"""Fuzz every decoder: ``python -m tests.fuzz [--runs N] [--seconds S] [--target NAME]``.

With atheris installed, each target runs under libFuzzer, coverage-guided, with the library
packages instrumented; otherwise (or with ``--engine builtin``) under the built-in mutational
driver (:mod:`tests.fuzz.driver`). Each target runs in its own process, ``--jobs`` at a time,
starting from its committed corpus (``tests/fuzz/corpus/<target>/``). The report gives, per
target, the inputs run, the time, exec/s, peak RSS and the crashes; the exit status is 1 when
anything crashed, hung or ran out of memory.

``--reproduce FILE...`` runs saved inputs (crash artifacts) once, in this process, and shows
what they raise.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from .driver import Crash, Result, fuzz, run_one
from .targets import CORPUS, TARGETS, Target

DEFAULT_RUNS: Final = 20_000
#: A slowest-input time libFuzzer only knows to be under its one-second resolution.
UNDER_A_SECOND: Final = -1.0
#: The packages atheris instruments for coverage (the code under test, not the harnesses).
INSTRUMENTED: Final = ("vscard", "ccid", "cacard", "daemons")
_STAT: Final = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_COVERAGE: Final = re.compile(r"\bcov: (\d+) ft: (\d+)")
_ARTIFACT: Final = re.compile(r"Test unit written to (\S+)")
_FAILURE: Final = re.compile(
    r"Uncaught Python exception|ERROR: libFuzzer: (timeout|out-of-memory|deadly signal|[\w-]+)"
)


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _quiet_logging() -> None:
    """Library logs below ERROR are noise at millions of inputs; errors go to stderr."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


@dataclass
class Report:
    """One target's outcome as the parent sees it, whichever engine ran it."""

    target: str
    engine: str
    inputs: int = 0
    seconds: float = 0.0
    exec_per_sec: float = 0.0
    peak_rss_mb: float = 0.0
    #: Built-in engine: RSS after the first 2,048 inputs; peak beside it shows any growth.
    warm_rss_mb: float = 0.0
    slowest_input_ms: float = 0.0
    crashes: int = 0
    coverage: str = ""
    details: list[str] = field(default_factory=list)
    exit_status: int = 0

    @property
    def failed(self) -> bool:
        return self.crashes > 0 or self.exit_status != 0

    def line(self) -> str:
        extra = f"  cov {self.coverage}" if self.coverage else ""
        slowest = (
            "<1 s" if self.slowest_input_ms == UNDER_A_SECOND else f"{self.slowest_input_ms:.1f} ms"
        )
        warm = f"{self.warm_rss_mb:.0f}->" if self.warm_rss_mb else ""
        return (
            f"{self.target:<13} {self.engine:<8} {self.inputs:>11,} inputs "
            f"{self.seconds:>9.1f} s {self.exec_per_sec:>9,.0f} exec/s "
            f"RSS {warm}{self.peak_rss_mb:.0f} MB  slowest {slowest:>9}  "
            f"crashes {self.crashes}{extra}"
        )


# -- workers (one target, in a child process) ---------------------------------------------------


def _builtin_worker(target: Target, options: argparse.Namespace) -> int:
    harness = target.harness()
    result = fuzz(
        target.name,
        harness.fuzz_one,
        target.corpus() or list(harness.seeds().values()),
        max_len=harness.max_len,
        runs=options.runs,
        seconds=options.seconds,
        seed=options.seed,
        timeout=options.timeout,
        rss_limit_mb=options.rss_limit_mb,
        artifacts=options.artifacts,
    )
    if options.artifacts is not None:
        # Not a failure: kept so a slow input can be timed and profiled (--reproduce).
        options.artifacts.mkdir(parents=True, exist_ok=True)
        (options.artifacts / f"slowest-{target.name}").write_bytes(result.slowest_input)
    report = _report_from_result(result)
    sys.stdout.write(json.dumps(asdict(report)) + "\n")
    return 1 if report.failed else 0


def _report_from_result(result: Result) -> Report:
    return Report(
        result.target,
        result.engine,
        inputs=result.inputs,
        seconds=result.seconds,
        exec_per_sec=result.exec_per_sec,
        peak_rss_mb=result.peak_rss_mb,
        warm_rss_mb=result.rss_after_warmup_mb,
        slowest_input_ms=result.slowest_input_ms,
        crashes=result.crash_count,
        details=[_crash_text(crash) for crash in result.crashes],
    )


def _crash_text(crash: Crash) -> str:
    where = f" (input: {crash.artifact})" if crash.artifact else f" (input: {crash.input.hex()})"
    return f"{crash.kind} x{crash.count}: {crash.summary}{where}\n{crash.traceback}"


def _atheris_worker(target: Target, options: argparse.Namespace) -> int:
    # Untyped and optional: imported by name so type checking needs neither it nor stubs.
    atheris: Any = importlib.import_module("atheris")
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        harness = target.harness()
    argv = [
        sys.argv[0],
        f"-max_len={harness.max_len}",
        f"-timeout={max(1, round(options.timeout))}",
        f"-rss_limit_mb={int(options.rss_limit_mb)}",
        f"-seed={options.seed + 1}",  # 0 would mean "pick one"
        "-print_final_stats=1",
    ]
    if options.runs is not None:
        argv.append(f"-runs={options.runs}")
    if options.seconds is not None:
        argv.append(f"-max_total_time={max(1, round(options.seconds))}")
    if options.artifacts is not None:
        options.artifacts.mkdir(parents=True, exist_ok=True)
        argv.append(f"-artifact_prefix={options.artifacts}/{target.name}-")
    argv += [str(options.workdir), str(CORPUS / target.name)]
    atheris.Setup(argv, harness.fuzz_one)
    atheris.Fuzz()  # libFuzzer exits the process when done
    return 0


# -- the parent ---------------------------------------------------------------------------------


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    return "atheris" if importlib.util.find_spec("atheris") is not None else "builtin"


def _worker_command(target: Target, options: argparse.Namespace, workdir: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "tests.fuzz",
        "--worker",
        "--target",
        target.name,
        "--engine",
        options.engine,
        "--seed",
        str(options.seed),
        "--timeout",
        str(options.timeout),
        "--rss-limit-mb",
        str(options.rss_limit_mb),
        "--workdir",
        str(workdir),
    ]
    if options.runs is not None:
        command += ["--runs", str(options.runs)]
    if options.seconds is not None:
        command += ["--seconds", str(options.seconds)]
    if options.artifacts is not None:
        command += ["--artifacts", str(options.artifacts)]
    return command


def _parse_libfuzzer(target: Target, log: str, status: int, seconds: float) -> Report:
    stats = {name: int(value) for name, value in _STAT.findall(log)}
    coverage = _COVERAGE.findall(log)
    report = Report(
        target.name,
        "atheris",
        inputs=stats.get("number_of_executed_units", 0),
        seconds=seconds,
        # Over the worker's whole life, start-up and instrumentation included.
        exec_per_sec=stats.get("number_of_executed_units", 0) / seconds,
        peak_rss_mb=stats.get("peak_rss_mb", 0),
        # libFuzzer counts whole seconds: 0 means under one.
        slowest_input_ms=stats.get("slowest_unit_time_sec", 0) * 1000 or UNDER_A_SECOND,
        coverage=f"{coverage[-1][0]}/{coverage[-1][1]}" if coverage else "",
        exit_status=status,
    )
    failure = _FAILURE.search(log)
    if status != 0 or failure is not None:
        report.crashes = 1
        start = failure.start() if failure is not None else max(0, len(log) - 4000)
        artifacts = ", ".join(_ARTIFACT.findall(log)) or "none written"
        report.details.append(f"libFuzzer stopped (artifacts: {artifacts}):\n{log[start:][:6000]}")
    return report


@dataclass
class _Running:
    target: Target
    process: subprocess.Popen[str]
    log: Path
    workdir: Path
    temporary: bool
    started: float


def _start(target: Target, options: argparse.Namespace, scratch: Path) -> _Running:
    if options.workdir is not None:
        workdir, temporary = options.workdir / target.name, False
    else:
        workdir, temporary = scratch / f"corpus-{target.name}", True
    workdir.mkdir(parents=True, exist_ok=True)
    log = scratch / f"{target.name}.log"
    with log.open("w") as stderr:
        # The built-in worker reports on stdout; atheris prints Python tracebacks there.
        stdout = stderr if options.engine == "atheris" else subprocess.PIPE
        process = subprocess.Popen(
            _worker_command(target, options, workdir),
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    return _Running(target, process, log, workdir, temporary, time.monotonic())


def _finish(running: _Running, options: argparse.Namespace) -> Report:
    stdout = running.process.communicate()[0] or ""
    status = running.process.returncode
    seconds = time.monotonic() - running.started
    log = running.log.read_text(errors="replace")
    if running.temporary:
        shutil.rmtree(running.workdir, ignore_errors=True)
    if options.engine == "atheris":
        return _parse_libfuzzer(running.target, log, status, seconds)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        report = Report(running.target.name, "builtin", exit_status=status or 1, crashes=1)
        report.details.append(f"the worker died (status {status}):\n{log[-6000:]}")
        return report
    document: dict[str, Any] = json.loads(lines[-1])
    return Report(**document)


def _run_all(targets: Sequence[Target], options: argparse.Namespace) -> list[Report]:
    reports: list[Report] = []
    waiting = list(targets)
    running: list[_Running] = []
    with tempfile.TemporaryDirectory(prefix="vscard-fuzz-") as scratch:
        while waiting or running:
            while waiting and len(running) < options.jobs:
                running.append(_start(waiting.pop(0), options, Path(scratch)))
            time.sleep(0.05)
            for item in [r for r in running if r.process.poll() is not None]:
                running.remove(item)
                report = _finish(item, options)
                reports.append(report)
                _say(report.line())
                for detail in report.details:
                    _say("    " + detail.replace("\n", "\n    "))
    return reports


def _reproduce(target: Target, files: Sequence[Path], timeout: float) -> int:
    harness = target.harness()
    failed = 0
    for path in files:
        error = run_one(harness.fuzz_one, path.read_bytes(), timeout)
        if error is None:
            _say(f"{path}: ok")
        else:
            failed += 1
            _say(f"{path}: {type(error).__name__}")
            _say("".join(traceback.format_exception(error)))
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--runs", type=int, help=f"inputs per target (default {DEFAULT_RUNS:,})")
    parser.add_argument("--seconds", type=float, help="time per target (stops at runs or this)")
    parser.add_argument(
        "--target", action="append", choices=sorted(TARGETS), help="repeat for several"
    )
    parser.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="targets at once")
    parser.add_argument("--seed", type=int, default=0, help="random seed (reproducible runs)")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-input limit (a hang)")
    parser.add_argument("--rss-limit-mb", type=float, default=1024.0, help="memory limit")
    parser.add_argument("--artifacts", type=Path, help="where crashing inputs are written")
    parser.add_argument("--workdir", type=Path, help="keep atheris's grown corpora here")
    parser.add_argument("--reproduce", type=Path, nargs="+", metavar="FILE", help="run inputs")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    _quiet_logging()
    if options.list:
        for target in TARGETS.values():
            _say(f"{target.name:<13} {target.covers}")
        return 0
    targets = [TARGETS[name] for name in options.target or sorted(TARGETS)]
    if options.reproduce:
        if len(targets) != 1:
            _say("--reproduce needs exactly one --target")
            return 2
        return _reproduce(targets[0], options.reproduce, options.timeout)
    if options.runs is None and options.seconds is None:
        options.runs = DEFAULT_RUNS
    options.engine = _engine(options.engine)
    if options.worker:
        (target,) = targets
        if options.engine == "atheris":
            return _atheris_worker(target, options)
        return _builtin_worker(target, options)
    limits = [f"{options.runs:,} inputs" if options.runs is not None else ""]
    limits.append(f"{options.seconds:g} s" if options.seconds is not None else "")
    _say(
        f"fuzzing {len(targets)} target(s) with {options.engine}, "
        f"{' or '.join(x for x in limits if x)} each, {options.jobs} at a time"
    )
    reports = _run_all(targets, options)
    failed = [report.target for report in reports if report.failed]
    total = sum(report.inputs for report in reports)
    _say(f"{total:,} inputs in all; {'FAILED: ' + ', '.join(failed) if failed else 'no crash'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
