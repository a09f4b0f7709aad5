"""vsmartcard's ``vicc`` as a stand-in real card behind our private pcscd's vpcd reader.

Debian 12's ``python3-virtualsmartcard`` (vicc 0.8) cannot be run as packaged for this purpose
(see the fixes below). This file is both the host-side controller (:class:`Vicc`) and, run as a
script by Debian's ``/usr/bin/python3``, a launcher that imports vicc's own classes and fixes:

1. the package lives in ``/usr/lib/python3/site-packages/virtualsmartcard``, which is on no
   ``sys.path``: the launcher adds it;
2. vicc imports PyCrypto-style ``Crypto``; Debian ships PyCryptodome only as ``Cryptodome``
   (``python3-pycryptodome``): the launcher aliases ``Crypto.*`` to ``Cryptodome.*`` unless a real
   ``Crypto`` is importable;
3. vpcd writes each frame's 2-byte length and its body in two sends, so without quick ACKs every
   APDU and every ATR poll waits ~44 ms for a delayed ACK: the card socket gets TCP_NODELAY and
   re-arms TCP_QUICKACK after every read (it is not sticky on Linux). Reads also wait for the whole
   frame (MSG_WAITALL): vicc assumes one ``recv`` returns it;
4. an exception in vicc's card code (``-t iso7816`` raises TypeError on SELECT with P2=00) ends
   the process; the launcher answers 6F00 (no precise diagnosis) instead, as a card would, and
   logs the traceback. Tests should still SELECT with P2=0C: P2=00 gets no FCI from this card.

The launcher also offers a card type of ours, :attr:`ViccType.PIN_COUNTER`: vicc's ISO card
(its parser, class handling and file system) whose VERIFY, CHANGE REFERENCE DATA and RESET
RETRY COUNTER keep retry counters as real cards do (vicc's own VERIFY answers ``6300`` without a
count, and spends a try on VERIFY without data). Its counters are written to a JSON file after
every change, for the test to read.

The launcher prints :data:`READY_LINE` once connected to vpcd; the controller waits for it.
Whether pcscd has noticed the card (it polls about every 0.4 s) is a PC/SC question, answered by
``fixtures.wait_for_card``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.util
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .pcscd import Pcscd

#: Debian packages this module needs on the host.
HOST_PACKAGES: Final[tuple[str, ...]] = ("python3-virtualsmartcard", "python3-pycryptodome")

#: Debian's interpreter: it sees ``python3-pycryptodome``; the project venv does not.
VICC_PYTHON: Final = Path("/usr/bin/python3")
VICC_PACKAGE_ROOT: Final = Path("/usr/lib/python3/site-packages/virtualsmartcard")
READY_LINE: Final = b"vicc connected\n"
#: ATR of vicc's ``iso7816`` card.
ISO7816_ATR: Final = bytes.fromhex("3b951381018073ff01000b")
#: SW1 SW2 a card answers when it has no better diagnosis.
SW_NO_PRECISE_DIAGNOSIS: Final = b"\x6f\x00"

# Same prefix as pcscd.PDEATHSIG (repeated: the launcher half must import nothing of ours).
_PDEATHSIG: Final[tuple[str, ...]] = ("setpriv", "--pdeathsig", "KILL", "--")


class ViccType(StrEnum):
    """vicc card types that work from Debian 12's packages.

    Not listed: ``cryptoflex`` (its ATR is a str: TypeError on the first ATR poll), ``ePass``
    (needs PIL, ``python3-pil``) and ``nPA`` (needs OpenPACE's Python bindings, not packaged).
    """

    ISO7816 = "iso7816"
    #: Ours: vicc's ISO card with PIV-like PIN (80 or 00) and PUK (81) retry counters.
    PIN_COUNTER = "pin-counter"


#: The PIN-counting card's PIN and PUK (PIV's usual defaults) and their tries.
PIN_COUNTER_PIN: Final = b"123456"
PIN_COUNTER_PUK: Final = b"12345678"
PIN_COUNTER_TRIES: Final = 3


class ViccError(RuntimeError):
    """vicc did not connect, or exited; the message carries the end of its log."""


@dataclass(frozen=True)
class ViccConfig:
    card_type: ViccType = ViccType.ISO7816
    slot: int = 0
    quickack: bool = True
    verbose: bool = False
    start_timeout: float = 10.0
    stop_timeout: float = 5.0
    #: Where :attr:`ViccType.PIN_COUNTER` writes its counters (``{"pin": n, "puk": n}``).
    state_path: Path | None = None


class Vicc:
    """One vicc process connected to vpcd slot ``config.slot`` of a running :class:`Pcscd`."""

    def __init__(self, pcscd: Pcscd, config: ViccConfig, log_path: Path) -> None:
        self.pcscd = pcscd
        self.config = config
        self.log_path = log_path
        self.reader_name = pcscd.reader_name(config.slot)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._process is not None:
            raise ViccError("vicc is already running")
        argv = [
            *_PDEATHSIG,
            *self.pcscd.netns_argv(),
            str(VICC_PYTHON), "-I", str(Path(__file__).resolve()),
            "--type", self.config.card_type.value,
            "--host", "127.0.0.1",
            "--port", str(self.pcscd.card_port(self.config.slot)),
            "--quickack" if self.config.quickack else "--no-quickack",
            *(["--verbose"] if self.config.verbose else []),
            *(["--state", str(self.config.state_path)] if self.config.state_path else []),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
            )
        self._process = process
        try:
            self._wait_ready(process)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        """Read vicc's stdout until :data:`READY_LINE`, EOF (it exited) or the deadline."""
        stdout = process.stdout
        if stdout is None:
            raise ViccError("vicc's stdout is not a pipe")
        received = b""
        deadline = time.monotonic() + self.config.start_timeout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not received.endswith(READY_LINE):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ViccError(f"vicc did not connect to vpcd:\n{self.log_tail()}")
                if selector.select(remaining):
                    chunk = os.read(stdout.fileno(), 4096)
                    if not chunk:
                        code = process.wait(self.config.stop_timeout)
                        raise ViccError(f"vicc exited with {code}:\n{self.log_tail()}")
                    received += chunk

    def check_running(self) -> None:
        if self._process is None:
            raise ViccError("vicc was never started")
        code = self._process.poll()
        if code is not None:
            raise ViccError(f"vicc exited with {code}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; vpcd sees the card go."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.config.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.config.stop_timeout)
        if process.stdout is not None:
            process.stdout.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Vicc:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_vicc(pcscd: Pcscd, config: ViccConfig, log_path: Path) -> Iterator[Vicc]:
    """Start vicc, yield it once connected to vpcd, and stop it whatever happens."""
    with Vicc(pcscd, config, log_path) as card:
        yield card


# --- launcher: runs under Debian's python3, in pcscd's network namespace --------------------------


class _CryptoAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``Crypto[.X]`` as the already importable ``Cryptodome[.X]`` module."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "Crypto" or fullname.startswith("Crypto."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module("Cryptodome" + spec.name.removeprefix("Crypto"))

    def exec_module(self, module: ModuleType) -> None:
        """The module came fully initialised from ``create_module``."""


class _QuickAckSocket(socket.socket):
    """Re-arms TCP_QUICKACK after every read and reads whole frames."""

    quickack = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags | socket.MSG_WAITALL)
        if self.quickack:
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


def _connect_to_vpcd(host: str, port: int) -> socket.socket:
    sock = _QuickAckSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect((host, port))
    if sock.quickack:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return sock


def _answer_errors_with_6f00(card_os: Any) -> None:
    execute = card_os.execute

    def guarded(apdu: bytes) -> bytes:
        try:
            answer: bytes = execute(apdu)
        except Exception:
            logging.exception("vicc failed on APDU %s; answering 6F00", apdu.hex())
            return SW_NO_PRECISE_DIAGNOSIS
        return answer

    card_os.execute = guarded


class _PinCounter:
    """VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER with retry counters, in vicc's
    handler convention (``handler(p1, p2, data) -> (sw, data)``). References follow PIV: the
    PIN is 80 (or 00), the PUK 81; RESET RETRY COUNTER of 80 takes the PUK. A try is spent
    and saved before the comparison."""

    _PIN_REFERENCES = frozenset({0x00, 0x80})
    _PUK_REFERENCE = 0x81

    def __init__(self, state_path: Path | None) -> None:
        self.secrets = {"pin": PIN_COUNTER_PIN, "puk": PIN_COUNTER_PUK}
        self.tries = {"pin": PIN_COUNTER_TRIES, "puk": PIN_COUNTER_TRIES}
        self.verified = False
        self.state_path = state_path
        self._save()

    def _save(self) -> None:
        if self.state_path is not None:
            temporary = self.state_path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.tries))
            temporary.replace(self.state_path)

    def _counter(self, p2: int) -> str | None:
        if p2 in self._PIN_REFERENCES:
            return "pin"
        return "puk" if p2 == self._PUK_REFERENCE else None

    def _compare(self, name: str, candidate: bytes) -> int:
        if not self.tries[name]:
            return 0x6983
        self.tries[name] -= 1
        self._save()
        if candidate.rstrip(b"\xff") != self.secrets[name]:
            self.verified = self.verified and name != "pin"
            return 0x63C0 | self.tries[name]
        self.tries[name] = PIN_COUNTER_TRIES
        self._save()
        return 0x9000

    def verify(self, p1: int, p2: int, data: bytes) -> tuple[int, bytes]:
        if p2 not in self._PIN_REFERENCES:
            return 0x6A88, b""  # as PIV: the PUK has no VERIFY
        if p1 == 0xFF and not data:
            self.verified = False
            return 0x9000, b""
        if p1 != 0x00:
            return 0x6A86, b""
        if not data:
            if not self.tries["pin"]:
                return 0x6983, b""
            return (0x9000 if self.verified else 0x63C0 | self.tries["pin"]), b""
        sw = self._compare("pin", data)
        self.verified = sw == 0x9000
        return sw, b""

    def change_reference_data(self, p1: int, p2: int, data: bytes) -> tuple[int, bytes]:
        name = self._counter(p2)
        if name is None:
            return 0x6A88, b""
        if p1 != 0x00 or len(data) != 16:
            return 0x6A80, b""
        sw = self._compare(name, data[:8])
        if sw == 0x9000:
            self.secrets[name] = data[8:].rstrip(b"\xff")
        return sw, b""

    def reset_retry_counter(self, p1: int, p2: int, data: bytes) -> tuple[int, bytes]:
        if p2 not in self._PIN_REFERENCES:
            return 0x6A88, b""
        if p1 != 0x00 or len(data) != 16:
            return 0x6A80, b""
        sw = self._compare("puk", data[:8])
        if sw == 0x9000:
            self.secrets["pin"] = data[8:].rstrip(b"\xff")
            self.tries["pin"] = PIN_COUNTER_TRIES
            self._save()
        return sw, b""


def _count_pin_tries(card_os: Any, state_path: Path | None) -> None:
    counter = _PinCounter(state_path)
    card_os.ins2handler[0x20] = counter.verify
    card_os.ins2handler[0x24] = counter.change_reference_data
    card_os.ins2handler[0x2C] = counter.reset_retry_counter


def _launch(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="vicc with the workarounds for Debian 12")
    parser.add_argument("--type", default=ViccType.ISO7816.value)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--quickack", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--state", type=Path, help="where the pin-counter card saves its counters")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(VICC_PACKAGE_ROOT))
    if importlib.util.find_spec("Crypto") is None:
        sys.meta_path.insert(0, _CryptoAlias())
    from virtualsmartcard.VirtualSmartcard import (  # type: ignore[import-not-found]
        VirtualICC,
    )

    _QuickAckSocket.quickack = args.quickack
    VirtualICC.connectToPort = staticmethod(_connect_to_vpcd)
    level = logging.INFO if args.verbose else logging.WARNING
    # vicc exits (status 0) by itself when it cannot connect.
    pin_counter = args.type == ViccType.PIN_COUNTER.value
    card_type = ViccType.ISO7816.value if pin_counter else args.type
    icc = VirtualICC(None, card_type, args.host, args.port, logginglevel=level)
    if pin_counter:
        _count_pin_tries(icc.os, args.state)
    _answer_errors_with_6f00(icc.os)
    sys.stdout.buffer.write(READY_LINE)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads stdout any more
    icc.run()  # returns only through sys.exit, when vpcd goes away
    return 0


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1:]))
