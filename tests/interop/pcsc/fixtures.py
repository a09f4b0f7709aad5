"""pytest fixtures for host PC/SC tests: a private pcscd with vpcd, and vicc as the card in it.

Use them from a conftest, or bind them in a test module (``pcscd = fixtures.pcscd``; importing
them by name makes ruff see each test argument as a redefinition). ``pcscd`` is one daemon per
process (:func:`shared_pcscd`): libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once and keeps the
path, so every pyscard call in this process talks to the first socket it saw; the fixture sets
the variable and leaves it set. ``vicc`` is per test: each test gets a freshly powered card, and
the reader is empty again when the fixture returns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smartcard import scard

from .pcscd import PCSCD, VPCD_DRIVER, Pcscd, PcscdConfig
from .vicc import VICC_PACKAGE_ROOT, VICC_PYTHON, Vicc, ViccConfig, running_vicc

#: Where Debian's python3 finds ``python3-pycryptodome`` (vicc's crypto library).
DEBIAN_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")


def missing_host_prerequisites() -> list[str]:
    """What this host lacks to run the PC/SC fixtures (empty when all is there)."""
    missing = [str(path) for path in (PCSCD, VPCD_DRIVER, VICC_PYTHON, VICC_PACKAGE_ROOT)]
    missing = [path for path in missing if not Path(path).exists()]
    if not any((DEBIAN_DIST_PACKAGES / name).is_dir() for name in ("Cryptodome", "Crypto")):
        missing.append("python3-pycryptodome")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin:/usr/bin:/sbin:/bin"])
    tools = ("unshare", "nsenter", "setpriv", "mount", "ip")
    missing += [tool for tool in tools if not shutil.which(tool, path=path)]
    if os.geteuid() != 0:
        missing.append("root (pcscd runs in its own mount and network namespace)")
    return missing


def wait_for_card(reader: str, *, present: bool, timeout: float = 10.0) -> None:
    """Block until PC/SC reports a card in ``reader`` (or none), or raise TimeoutError.

    Uses SCardGetStatusChange, so it wakes on pcscd's own event rather than polling.
    """
    wanted = scard.SCARD_STATE_PRESENT if present else scard.SCARD_STATE_EMPTY
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        raise ConnectionError(f"SCardEstablishContext: {scard.SCardGetErrorMessage(result)}")
    try:
        deadline = time.monotonic() + timeout
        states = [(reader, scard.SCARD_STATE_UNAWARE)]
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise TimeoutError(f"{reader}: card {'present' if present else 'absent'}?")
            result, states = scard.SCardGetStatusChange(context, remaining_ms, states)
            if result == scard.SCARD_E_TIMEOUT:
                continue
            if result != scard.SCARD_S_SUCCESS:
                raise ConnectionError(f"{reader}: {scard.SCardGetErrorMessage(result)}")
            ((name, event_state, _atr),) = states
            if event_state & wanted:
                return
            states = [(name, event_state & ~scard.SCARD_STATE_CHANGED)]
    finally:
        scard.SCardReleaseContext(context)


_shared: Pcscd | None = None
_users = 0


@contextlib.contextmanager
def shared_pcscd(workdir: Path) -> Iterator[Pcscd]:
    """The process-wide private pcscd, started by the first user and stopped by the last.

    One per process because libpcsclite keeps the first socket path it reads, and ``workdir``
    should be the same on every call for the same reason. Each test module that imports the
    ``pcscd`` fixture gets its own session fixture instance; they all share this daemon.
    """
    global _shared, _users
    if _shared is None:
        daemon = Pcscd(PcscdConfig(workdir=workdir))
        daemon.start()
        _shared = daemon
        os.environ.update(daemon.client_env())
    _users += 1
    try:
        _shared.check_running()
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _shared.stop()
            _shared = None


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """A private pcscd whose only readers are vpcd's two slots; pyscard in this process uses it."""
    missing = missing_host_prerequisites()
    if missing:
        pytest.skip(f"host PC/SC peer needs: {', '.join(missing)}")
    with shared_pcscd(tmp_path_factory.getbasetemp() / "pcscd") as daemon:
        yield daemon


@pytest.fixture
def vicc(pcscd: Pcscd, tmp_path: Path) -> Iterator[Vicc]:
    """vicc's ISO 7816 card in vpcd slot 0, present to PC/SC when the test starts."""
    with running_vicc(pcscd, ViccConfig(), tmp_path / "vicc.log") as card:
        wait_for_card(card.reader_name, present=True)
        yield card
    wait_for_card(card.reader_name, present=False)
