"""pytest fixtures for guest tests.

Load them in a test module with ``pytest_plugins = ("tests.interop.guest.fixtures",)``.

* ``guest_image`` (session): the built image; skips when QEMU or a host package is missing.
* ``reference_nssdb`` (session): the NSS DB behind QEMU's reference card (cert1..cert3).
* ``card_dir`` (module): a cacard card directory like the reference card (RSA-2048, PIN
  77777777).
* ``run_guest``: ``await run_guest(setup, checks, timeout=...)`` -> :class:`GuestResult`.
* ``start_guest``: ``async with start_guest(setup, checks) as guest: ...`` for tests that must act
  between QEMU's start and the guest's run (connect a VSCard client to ``guest.passthru_port``).

Every run's timing is listed in a "guest runs" section at the end of the pytest session.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from cacard import CardRequest, generate_card

from . import runner
from .checks import Check
from .image import GuestImage, MissingHostPackageError, build_image
from .nssdb import NssDb, make_nssdb
from .runner import Action, Controller, Guest, GuestResult, Setup


@dataclass(frozen=True)
class GuestRun:
    test: str
    setup: str
    seconds: float
    boot_seconds: float | None
    passed: bool
    checks: int


_RUNS = pytest.StashKey[list[GuestRun]]()


def _runs(config: pytest.Config) -> list[GuestRun]:
    return config.stash.setdefault(_RUNS, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    runs = _runs(config)
    if not runs:
        return
    terminalreporter.write_sep("-", "guest runs")
    for run in runs:
        boot = "-" if run.boot_seconds is None else f"{run.boot_seconds:.1f} s"
        verdict = "passed" if run.passed else "FAILED"
        terminalreporter.write_line(
            f"{run.seconds:6.1f} s (boot {boot}, {run.checks} checks, {verdict}) "
            f"{run.setup:12} {run.test}"
        )
    total = sum(run.seconds for run in runs)
    terminalreporter.write_line(f"{total:6.1f} s in {len(runs)} guest runs (the rig's total)")


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The guest image, built (or found in the cache) once per session."""
    if shutil.which(runner.QEMU) is None:
        pytest.skip(f"{runner.QEMU} is not installed")
    try:
        return build_image()
    except MissingHostPackageError as error:
        pytest.skip(f"guest image: {error}")


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cacard card directory with RSA-2048 keys and PIN 77777777, like the reference card."""
    directory = tmp_path_factory.mktemp("cards") / "card"
    generate_card(directory, CardRequest())
    return directory


@pytest.fixture(scope="session")
def reference_nssdb() -> Iterator[NssDb]:
    """Three self-signed RSA-2048 certificates with keys, for ``EmulatedSetup``."""
    if shutil.which("certutil") is None:
        pytest.skip("certutil is not installed (libnss3-tools)")
    # A short path: QEMU formats it into a 200-byte buffer.
    directory = Path(tempfile.mkdtemp(prefix="vsc-nss-"))
    try:
        yield make_nssdb(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class RunGuest(Protocol):
    async def __call__(
        self,
        setup: Setup,
        checks: Sequence[Check],
        *,
        timeout: float = ...,
        actions: dict[str, Action] | None = ...,
        controller: Controller = ...,
        logs: bool | None = ...,
    ) -> GuestResult: ...


class StartGuest(Protocol):
    def __call__(
        self,
        setup: Setup,
        checks: Sequence[Check],
        *,
        timeout: float = ...,
        actions: dict[str, Action] | None = ...,
        controller: Controller = ...,
        logs: bool | None = ...,
    ) -> AbstractAsyncContextManager[Guest]: ...


def _recorder(request: pytest.FixtureRequest) -> Callable[[GuestResult], None]:
    def record(result: GuestResult) -> None:
        _runs(request.config).append(
            GuestRun(
                test=request.node.nodeid,
                setup=result.setup,
                seconds=result.seconds,
                boot_seconds=result.boot_seconds,
                passed=result.passed,
                checks=len(result.checks),
            )
        )

    return record


@pytest.fixture
def start_guest(guest_image: GuestImage, request: pytest.FixtureRequest) -> StartGuest:
    """``async with start_guest(setup, checks) as guest`` (QEMU paused until ``guest.wait()``)."""
    record = _recorder(request)

    @contextlib.asynccontextmanager
    async def start(
        setup: Setup,
        checks: Sequence[Check],
        *,
        timeout: float = 120.0,
        actions: dict[str, Action] | None = None,
        controller: Controller = "uhci",
        logs: bool | None = None,
    ) -> AsyncIterator[Guest]:
        async with runner.start_guest(
            guest_image,
            setup,
            checks,
            timeout=timeout,
            actions=actions,
            controller=controller,
            logs=logs,
            on_result=record,
        ) as guest:
            yield guest

    return start


@pytest.fixture
def run_guest(start_guest: StartGuest) -> RunGuest:
    """``await run_guest(setup, checks)``: boot, run the checks, return the result."""

    async def run(
        setup: Setup,
        checks: Sequence[Check],
        *,
        timeout: float = 120.0,
        actions: dict[str, Action] | None = None,
        controller: Controller = "uhci",
        logs: bool | None = None,
    ) -> GuestResult:
        async with start_guest(
            setup, checks, timeout=timeout, actions=actions, controller=controller, logs=logs
        ) as guest:
            return await guest.wait()

    return run
