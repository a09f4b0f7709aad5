"""A private pcscd with vsmartcard's vpcd driver: host PC/SC as a test peer.

Debian 12's pcscd 1.9.9 cannot simply be pointed at another socket: ``PCSCLITE_CSOCK_NAME`` is read
only by the client library (``libpcsclite``), while the daemon always binds the compiled-in
``/run/pcscd/pcscd.comm`` (removing whatever is there) and keeps its pid file beside it. So the
daemon runs in its own mount namespace with a private directory bind-mounted over ``/run/pcscd``;
clients reach it through the same socket file from outside, by setting ``PCSCLITE_CSOCK_NAME`` to
:attr:`Pcscd.socket_path` (:meth:`Pcscd.client_env`). A system pcscd is neither seen nor disturbed.

The only reader is vpcd, configured by our own ``reader.conf.d`` (``pcscd -c``): one entry gives
two readers, ``"<name> 00 00"`` and ``"<name> 00 01"``, whose cards connect to TCP ports ``P`` and
``P+1`` (``DEVICENAME /dev/null:P``; a host name instead of ``/dev/null`` would make vpcd dial out
instead). vpcd listens on 0.0.0.0, so by default the daemon also gets a private network namespace
with only loopback: nothing is exposed, the default port 35963 never collides, and it cannot fall
into the ephemeral-port trap (a client's own outgoing connection taking vpcd's port first).
Card-side processes join that namespace through :meth:`Pcscd.netns_argv`; in-process card code
gets a connected socket from :meth:`Pcscd.connect_card`.

Readiness is a condition polled against a deadline: the process is alive, the socket accepts a
connection, and both vpcd ports listen (read from ``/proc/<pid>/net/tcp`` of the daemon's own
namespace, so nothing connects to vpcd, which would take such a probe for a card).

Every child gets ``setpriv --pdeathsig KILL``: if the test process dies, so do its peers. The
signal follows the thread that started the child, so start peers from a long-lived thread (pytest
fixtures run in the main thread).

Limitation: pcscd still enumerates the host's USB readers through libudev, so a real reader plugged
into the host shows up here too (and may be claimed by whichever pcscd opens it first).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

#: Debian packages the host PC/SC peer needs: the daemon and vpcd, the namespace tools, what
#: ``pip install --no-build-isolation pyscard`` compiles against, and OpenSC for its test.
HOST_PACKAGES: Final[tuple[str, ...]] = (
    "pcscd",
    "vsmartcard-vpcd",
    "util-linux",
    "iproute2",
    "libpcsclite-dev",
    "swig",
    "opensc",
)

PCSCD: Final = "/usr/sbin/pcscd"
VPCD_DRIVER: Final = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
#: vpcd's compiled-in port for slot 0 (slot 1 is the next port).
VPCD_DEFAULT_PORT: Final = 35963
VPCD_SLOTS: Final = 2
#: The only socket path pcscd 1.9.9 binds, whatever the environment says.
PCSCD_RUN_DIR: Final = Path("/run/pcscd")
SOCKET_NAME: Final = "pcscd.comm"
#: The environment variable libpcsclite (hence pyscard and OpenSC) reads for the socket path.
CSOCK_ENV: Final = "PCSCLITE_CSOCK_NAME"

#: Prefix for every child: killed when the thread that started it goes away.
PDEATHSIG: Final[tuple[str, ...]] = ("setpriv", "--pdeathsig", "KILL", "--")

_POLL_INTERVAL: Final = 0.01
_TCP_LISTEN: Final = "0A"
_CLONE_NEWNET: Final = 0x40000000
# Ports we pick ourselves stay below Linux's ephemeral range (32768-60999).
_LOW_PORTS: Final = range(20000, 32000, 2)

# Run in the daemon's namespaces before exec: loopback up, our directory over /run/pcscd.
_NAMESPACE_SETUP: Final = """set -e
if [ "$VSCARD_PRIVATE_NET" = 1 ]; then ip link set lo up; fi
mkdir -p /run/pcscd
mount --bind "$VSCARD_RUN_DIR" /run/pcscd
exec "$@"
"""

_T = TypeVar("_T")


class PcscdError(RuntimeError):
    """pcscd did not start, or stopped on its own; the message carries the end of its log."""


@dataclass(frozen=True)
class PcscdConfig:
    """How to run the private pcscd.

    ``workdir`` receives ``run/`` (socket and pid file), ``reader.conf.d/`` and ``pcscd.log``; keep
    its path short, a Unix socket path has at most 107 bytes. ``vpcd_port`` ``None`` means 35963 in
    a private network namespace, otherwise a free even/odd pair below 32768.
    """

    workdir: Path
    reader_name: str = "vscard vpcd"
    vpcd_port: int | None = None
    private_network: bool = True
    debug: bool = True
    start_timeout: float = 10.0
    stop_timeout: float = 5.0


class Pcscd:
    """One pcscd process in its own mount (and, by default, network) namespace."""

    def __init__(self, config: PcscdConfig) -> None:
        self.config = config
        self.run_dir = config.workdir / "run"
        self.conf_dir = config.workdir / "reader.conf.d"
        self.log_path = config.workdir / "pcscd.log"
        self.socket_path = self.run_dir / SOCKET_NAME
        self.vpcd_port = config.vpcd_port or VPCD_DEFAULT_PORT
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise PcscdError("pcscd is not running")
        return self._process.pid

    def reader_name(self, slot: int = 0) -> str:
        """The PC/SC name of vpcd's reader for ``slot`` (pcsc-lite appends index and slot)."""
        if not 0 <= slot < VPCD_SLOTS:
            raise ValueError(f"vpcd has slots 0..{VPCD_SLOTS - 1}, not {slot}")
        return f"{self.config.reader_name} 00 {slot:02X}"

    def card_port(self, slot: int = 0) -> int:
        """The TCP port on which vpcd waits for the card of ``slot``."""
        self.reader_name(slot)
        return self.vpcd_port + slot

    def client_env(self) -> dict[str, str]:
        """Environment entries that point libpcsclite (pyscard, OpenSC, pcsc_scan) at us."""
        return {CSOCK_ENV: str(self.socket_path)}

    def netns_argv(self) -> list[str]:
        """Command prefix that runs a card-side program inside our network namespace."""
        if not self.config.private_network:
            return []
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--"]

    def connect_card(self, slot: int = 0, timeout: float = 5.0) -> socket.socket:
        """A blocking TCP socket connected to vpcd's card port for ``slot``, with TCP_NODELAY.

        vpcd sends each frame's length and body separately: the card side must re-arm
        ``TCP_QUICKACK`` after every read, or each APDU waits ~44 ms for a delayed ACK.
        """
        port = self.card_port(slot)

        def connect() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock.settimeout(None)  # ``timeout`` bounds the connect only: a card waits for pcscd
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

        if not self.config.private_network:
            return connect()
        return _in_network_namespace(self.pid, connect)

    def start(self) -> None:
        if self._process is not None:
            raise PcscdError("pcscd is already running")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        if self.config.vpcd_port is None and not self.config.private_network:
            self.vpcd_port = _free_port_pair()
        (self.conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{self.config.reader_name}"\n'
            f"DEVICENAME   /dev/null:{self.vpcd_port}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    {self.vpcd_port}\n"
        )
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if self.config.private_network:
            unshare.append("--net")
        argv = [
            *PDEATHSIG,
            *unshare,
            "sh", "-c", _NAMESPACE_SETUP, "pcscd-namespace",
            PCSCD, "--foreground", "--config", str(self.conf_dir),
            *(["--debug"] if self.config.debug else []),
        ]  # fmt: skip
        env = {
            # unshare, mount and ip live in /usr/bin and /usr/sbin, whatever the caller's PATH.
            "PATH": os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin:/usr/bin:/sbin:/bin"]),
            "VSCARD_RUN_DIR": str(self.run_dir),
            "VSCARD_PRIVATE_NET": "1" if self.config.private_network else "0",
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        ports = {self.vpcd_port + slot for slot in range(VPCD_SLOTS)}
        while True:
            self.check_running()
            if _accepts(self.socket_path):
                # pcscd opens its socket only after starting the reader.conf.d readers, so a
                # port that does not listen now never will ("Address already in use"?).
                if ports <= _listening_ports(self.pid):
                    return
                raise PcscdError(
                    f"pcscd is up but vpcd does not listen on {sorted(ports)}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise PcscdError(
                    f"pcscd not ready after {self.config.start_timeout} s (socket"
                    f" {self.socket_path}, vpcd ports {sorted(ports)}):\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def check_running(self) -> None:
        """Raise :class:`PcscdError` with the log if the daemon has exited."""
        if self._process is None:
            raise PcscdError("pcscd was never started")
        code = self._process.poll()
        if code is not None:
            raise PcscdError(f"pcscd exited with {code}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (pcscd removes its socket and pid file), SIGKILL after ``stop_timeout``."""
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

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Pcscd:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_pcscd(config: PcscdConfig) -> Iterator[Pcscd]:
    """Start pcscd, yield it once ready, and stop it whatever happens."""
    with Pcscd(config) as daemon:
        yield daemon


def _accepts(path: Path) -> bool:
    """Whether a Unix stream socket listens at ``path`` (pcscd shrugs off an empty connection)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state in the network namespace of process ``pid``."""
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _free_port_pair() -> int:
    """A port P below the ephemeral range with P and P+1 free on all addresses, as vpcd binds."""
    candidates = list(_LOW_PORTS)
    random.shuffle(candidates)
    for port in candidates[:200]:
        with contextlib.ExitStack() as stack:
            try:
                for offset in range(VPCD_SLOTS):
                    probe = stack.enter_context(socket.socket())
                    probe.bind(("0.0.0.0", port + offset))
            except OSError:
                continue
            return port
    raise PcscdError("no free TCP port pair below 32768 for vpcd")


def _in_network_namespace(pid: int, action: Callable[[], _T]) -> _T:
    """Run ``action`` on a short-lived thread that has joined the network namespace of ``pid``.

    setns(2) with CLONE_NEWNET changes only the calling thread; sockets it creates stay in that
    namespace for their whole life, whichever thread uses them later. (Python 3.12 has os.setns.)
    """
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns into pid {pid}: {os.strerror(error)}")
            finally:
                os.close(fd)
            outcome.append(action())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
