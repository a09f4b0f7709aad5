"""Boot the test guest under QEMU (TCG), run checks in it, and collect one verdict per check.

The setups, (a) passthru, (b) emulated and (c) usbip, are in :mod:`.setups`.
The guest's script arrives through fw_cfg; its result lines come back on the serial console
(:mod:`.console`). QEMU starts paused (``-S``) with QMP on a socketpair, so by the time
:func:`start_guest` yields, every device is realized and the passthru port listens, with nobody
ever connecting to it to find out. :meth:`Guest.wait` starts the guest and returns a
:class:`GuestResult`; a guest that overruns its timeout is killed and reported, never waited for.

Command line: ``python -m tests.interop.guest.runner --setup emulated`` (see ``--help``), and
``--shell`` for an interactive busybox shell on the guest's console.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from . import checks as ck
from .checks import Check, guest_script
from .console import (
    Begin,
    CheckLine,
    ConsoleEvent,
    ConsoleParser,
    End,
    LogLine,
    WaitLine,
    go_line,
    nogo_line,
)
from .image import GuestImage
from .qmp import Qmp, QmpError
from .result import CheckResult, GuestResult
from .setups import (
    CARD_ID,
    CONTROLLERS,
    QEMU,
    READER_ID,
    USBIP_PORT,
    Controller,
    EmulatedSetup,
    PassthruSetup,
    Setup,
    UsbipExportSetup,
    UsbipSetup,
    qemu_args,
    setup_checks,
)

__all__ = [
    "QEMU",
    "Action",
    "CheckResult",
    "Controller",
    "EmulatedSetup",
    "Guest",
    "GuestResult",
    "GuestStartError",
    "PassthruSetup",
    "Setup",
    "UsbipExportSetup",
    "UsbipSetup",
    "default_actions",
    "run_guest",
    "start_guest",
]

#: How long QEMU may take to show its QMP greeting and answer, paused, before the guest runs.
START_SECONDS = 30.0
#: After ``@@END@@`` the guest powers off; if QEMU is still there after this, it is told to quit.
POWEROFF_SECONDS = 15.0


class GuestStartError(RuntimeError):
    """QEMU did not come up (bad arguments, missing device model, ...)."""


# --- running ----------------------------------------------------------------------------------

Action = Callable[["Guest"], Awaitable[None]]
"""Host side of a ``vs_wait <token>``: do it, return; raising makes the guest's check fail."""


class Guest:
    """QEMU with the guest in it, paused until :meth:`resume`. Made by :func:`start_guest`.

    Reads the console as it comes (results, ``@@WAIT@@`` requests) and answers waits from
    :attr:`actions`, one at a time, in the order the guest asked.
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        qmp: Qmp,
        setup: Setup,
        expected: Sequence[str],
        *,
        actions: Mapping[str, Action],
        timeout: float,
        on_result: Callable[[GuestResult], None] | None = None,
    ) -> None:
        self.process = process
        self.qmp = qmp
        self.setup = setup
        self.actions: dict[str, Action] = dict(actions)
        """``vs_wait`` token -> what the host does; add to it before the guest asks."""
        self.passthru_port: int | None = None
        """The TCP port ccid-card-passthru listens on (:class:`PassthruSetup` only)."""
        self.usbip_port: int | None = None
        """The host port forwarded to the guest's usbipd (:class:`UsbipExportSetup` only)."""
        self._expected = tuple(expected)
        self._timeout = timeout
        self._on_result = on_result
        self._parser = ConsoleParser()
        self._checks: list[CheckResult] = []
        self._checks_seen = asyncio.Condition()
        self._logs: list[tuple[str, str]] = []
        self._host_errors: list[str] = []
        self._waits: asyncio.Queue[str] = asyncio.Queue()
        self._started: float | None = None
        self._began: float | None = None
        self._completed = False
        self._timed_out = False
        self._console_closed = False
        self._stderr = bytearray()
        self._readers = [
            asyncio.create_task(self._read_console(), name="guest-console"),
            asyncio.create_task(self._read_stderr(), name="guest-stderr"),
        ]
        self._tasks = [asyncio.create_task(self._serve_waits(), name="guest-actions")]

    async def _ready(self) -> None:
        """Wait for QMP; find the ports. Raises :class:`GuestStartError` if QEMU fails."""
        try:
            async with asyncio.timeout(START_SECONDS):
                await self.qmp.start()
                # Answered from the main loop: every device is realized, every port listens.
                await self.qmp.execute("query-status")
                if isinstance(self.setup, PassthruSetup):
                    self.passthru_port = await _passthru_port(self.qmp)
                if isinstance(self.setup, UsbipExportSetup):
                    self.usbip_port = await _forwarded_port(self.qmp, USBIP_PORT)
        except (QmpError, TimeoutError, ConnectionError) as error:
            self.kill()
            await self.process.wait()
            await asyncio.gather(*self._readers, return_exceptions=True)
            stderr = self._stderr.decode(errors="replace").strip()
            raise GuestStartError(f"QEMU did not start ({error!r}): {stderr}") from error

    async def _read_console(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while chunk := await stdout.read(65536):
            for event in self._parser.feed(chunk):
                await self._handle(event)
        for event in self._parser.close():
            await self._handle(event)
        async with self._checks_seen:  # wake wait_for_check: nothing more will come
            self._console_closed = True
            self._checks_seen.notify_all()

    async def _read_stderr(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        while chunk := await stderr.read(65536):
            self._stderr += chunk

    async def _handle(self, event: ConsoleEvent) -> None:
        if isinstance(event, Begin):
            self._began = time.monotonic()
        elif isinstance(event, CheckLine):
            result = CheckResult(event.name, event.passed, event.output, event.guest_ms / 1000)
            async with self._checks_seen:
                self._checks.append(result)
                self._checks_seen.notify_all()
        elif isinstance(event, WaitLine):
            self._waits.put_nowait(event.token)
        elif isinstance(event, LogLine):
            self._logs.append((event.name, event.text))
        elif isinstance(event, End):
            self._completed = True
            self._tasks.append(asyncio.create_task(self._quit_if_lingering()))
        else:
            self._host_errors.append(f"malformed console line ({event.reason}): {event.line!r}")

    async def _serve_waits(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        while True:
            token = await self._waits.get()
            action = self.actions.get(token)
            answer = nogo_line(token)
            if action is None:
                self._host_errors.append(f"the guest asked for {token!r}, which has no action")
            else:
                try:  # bounded by the guest's timeout: close() cancels this task
                    await action(self)
                    answer = go_line(token)
                except Exception as error:  # reported; the guest's check fails on NOGO
                    self._host_errors.append(f"action {token!r} failed: {error!r}")
            with contextlib.suppress(ConnectionError):
                stdin.write(answer)
                await stdin.drain()

    async def _quit_if_lingering(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POWEROFF_SECONDS):
                await self.process.wait()
                return
        with contextlib.suppress(QmpError, TimeoutError):
            async with asyncio.timeout(5):
                await self.qmp.execute("quit")

    async def _watchdog(self) -> None:
        """Kill QEMU at the deadline, whoever is (or is not) waiting for it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self.process.wait()
                return
        self._timed_out = True
        self.kill()

    async def resume(self) -> None:
        """Let the guest run; its timeout counts from here. :meth:`wait` does it if you did not."""
        if self._started is None:
            await self.qmp.execute("cont")
            self._started = time.monotonic()
            self._tasks.append(asyncio.create_task(self._watchdog(), name="guest-watchdog"))

    async def wait_for_check(self, name: str) -> CheckResult | None:
        """Resume the guest and wait until check ``name`` reports; None if the guest ended first."""
        await self.resume()
        async with self._checks_seen:
            while True:
                for check in self._checks:
                    if check.name == name:
                        return check
                if self._console_closed:
                    return None
                await self._checks_seen.wait()

    async def wait(self) -> GuestResult:
        """Run the guest to its end, or kill it at the timeout; never raises for guest failures."""
        await self.resume()
        assert self._started is not None
        await self.process.wait()  # the watchdog kills it at the deadline
        ended = time.monotonic()
        # The console and stderr pipes close with QEMU; give their readers a moment to finish.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.gather(*self._readers, return_exceptions=True)
        result = GuestResult(
            setup=self.setup.name,
            expected=self._expected,
            checks=tuple(self._checks),
            logs=tuple(self._logs),
            completed=self._completed,
            timed_out=self._timed_out,
            returncode=self.process.returncode,
            seconds=ended - self._started,
            boot_seconds=None if self._began is None else self._began - self._started,
            console=self._parser.text,
            stderr=self._stderr.decode(errors="replace"),
            host_errors=tuple(self._host_errors),
        )
        if self._on_result is not None:
            self._on_result(result)
        return result

    def kill(self) -> None:
        """SIGKILL QEMU's process group, if it still runs."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def close(self) -> None:
        self.kill()
        await self.process.wait()
        for task in (*self._tasks, *self._readers):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._readers, return_exceptions=True)
        await self.qmp.close()


def default_actions(setup: Setup) -> dict[str, Action]:
    """Host actions QEMU can do by itself: for the emulated card, unplug and replug via QMP."""
    if isinstance(setup, UsbipExportSetup):
        card = setup.card
    elif isinstance(setup, EmulatedSetup):
        card = setup
    else:
        return {}

    async def remove_card(guest: Guest) -> None:
        await guest.qmp.execute("device_del", {"id": CARD_ID})
        await guest.qmp.event("DEVICE_DELETED", device=CARD_ID)

    async def insert_card(guest: Guest) -> None:
        properties = {"driver": "ccid-card-emulated", "id": CARD_ID, **card.card_properties()}
        await guest.qmp.execute("device_add", properties)

    async def remove_reader(guest: Guest) -> None:
        await guest.qmp.execute("device_del", {"id": READER_ID})
        await guest.qmp.event("DEVICE_DELETED", device=READER_ID)

    return {
        ck.REMOVE_CARD: remove_card,
        ck.INSERT_CARD: insert_card,
        ck.REMOVE_READER: remove_reader,
    }


@contextlib.asynccontextmanager
async def start_guest(
    image: GuestImage,
    setup: Setup,
    checks: Sequence[Check],
    *,
    timeout: float = 120.0,
    actions: Mapping[str, Action] | None = None,
    controller: Controller = "uhci",
    logs: bool | None = None,
    on_result: Callable[[GuestResult], None] | None = None,
) -> AsyncIterator[Guest]:
    """Start QEMU paused with the guest set up to run ``checks``; yields once QEMU is ready.

    ``timeout`` bounds the guest's run from :meth:`Guest.resume` (or :meth:`Guest.wait`) to its
    power-off. ``actions`` answer ``vs_wait`` tokens, over the setup's :func:`default_actions`.
    ``logs``: fetch pcscd's log and dmesg (None: only if a check failed). ``on_result`` sees
    each :class:`GuestResult` (the fixtures record timings with it). On leaving the block QEMU
    is killed if it still runs.
    """
    all_checks = (*setup_checks(setup), *checks)
    script = guest_script(all_checks, logs=logs)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vscard-guest-")))
        (scratch / "script.sh").write_text(script)
        ours, theirs = socket.socketpair()
        stack.callback(ours.close)
        with theirs:
            args = qemu_args(
                image,
                setup,
                script=scratch / "script.sh",
                qmp_fd=theirs.fileno(),
                controller=controller,
            )
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        guest: Guest | None = None
        try:
            qmp = await Qmp.over(ours)
            guest = Guest(
                process,
                qmp,
                setup,
                [check.name for check in all_checks],
                actions={**default_actions(setup), **(actions or {})},
                timeout=timeout,
                on_result=on_result,
            )
            await guest._ready()
            yield guest
        finally:
            if guest is not None:
                await guest.close()
            elif process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


_PORT = re.compile(r":(\d+),server")


async def _passthru_port(qmp: Qmp) -> int:
    chardevs = await qmp.execute("query-chardev")
    for chardev in chardevs:
        if chardev.get("label") == "vsc":
            match = _PORT.search(str(chardev.get("filename", "")))
            if match:
                return int(match.group(1))
    raise QmpError(f"no listening port for chardev vsc in {chardevs}")


_HOST_FORWARD = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)")


async def _forwarded_port(qmp: Qmp, guest_port: int) -> int:
    """The host port of the ``hostfwd`` to ``guest_port`` (QEMU picked it: port 0)."""
    usernet = await qmp.execute("human-monitor-command", {"command-line": "info usernet"})
    for match in _HOST_FORWARD.finditer(str(usernet)):
        if int(match.group(2)) == guest_port:
            return int(match.group(1))
    raise QmpError(f"no host forward to guest port {guest_port} in: {usernet}")


async def run_guest(
    image: GuestImage,
    setup: Setup,
    checks: Sequence[Check],
    *,
    timeout: float = 120.0,
    actions: Mapping[str, Action] | None = None,
    controller: Controller = "uhci",
    logs: bool | None = None,
) -> GuestResult:
    """Boot, run ``checks``, power off: the one-call form of :func:`start_guest`."""
    async with start_guest(
        image,
        setup,
        checks,
        timeout=timeout,
        actions=actions,
        controller=controller,
        logs=logs,
    ) as guest:
        return await guest.wait()


# --- command line -----------------------------------------------------------------------------

CHECKS_BY_NAME: Mapping[str, Callable[[argparse.Namespace], Check]] = {
    "reader": lambda o: ck.reader_listed(),
    "atr": lambda o: ck.atr(),
    "driver": lambda o: ck.card_driver(),
    "pkcs15": lambda o: ck.pkcs15_objects(),
    "pkcs11-slots": lambda o: ck.pkcs11_slots(),
    "pkcs11-objects": lambda o: ck.pkcs11_objects(),
    "sign": lambda o: ck.sign_verify(o.mechanism, pin=o.pin),
    "decrypt": lambda o: ck.decrypt(pin=o.pin),
    "reinsert": lambda o: ck.card_reinserted(),
    "reader-removed": lambda o: ck.reader_removed(),
    "usbip-list": lambda o: ck.usbip_list(o.port, o.busid),
    "usbip-detach": lambda o: ck.usbip_detach(),
}
DEFAULT_CHECKS = "reader,atr,driver,pkcs15,pkcs11-slots,pkcs11-objects,sign"


def _say(message: str) -> None:
    print(message, file=sys.stderr)  # noqa: T201 (command line)


def _human_action(token: str) -> Action:
    async def ask(guest: Guest) -> None:
        _say(f"\nthe guest waits for: {token}. Do it, then press Enter.")
        await asyncio.to_thread(sys.stdin.readline)

    return ask


def _setup_from(options: argparse.Namespace, stack: contextlib.ExitStack) -> Setup:
    if options.setup == "emulated":
        db = options.db
        if db is None:
            from .nssdb import make_nssdb

            db = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vsc-nss-")))
            make_nssdb(db)
        return EmulatedSetup(db)
    if options.setup == "passthru":
        return PassthruSetup(options.port or 0)
    if not (options.port and options.busid):
        raise ValueError("--setup usbip needs --port and --busid")
    return UsbipSetup(options.port, options.busid)


async def _interactive_shell(
    image: GuestImage, setup: Setup, checks: Sequence[Check], controller: Controller
) -> int:
    """QEMU on this terminal; after the setup and ``checks``, a shell on the guest's console."""
    with tempfile.TemporaryDirectory(prefix="vscard-guest-") as scratch:
        script = Path(scratch) / "script.sh"
        script.write_text(guest_script([*setup_checks(setup), *checks], interactive=True))
        ours, theirs = socket.socketpair()
        args = qemu_args(
            image,
            setup,
            script=script,
            qmp_fd=theirs.fileno(),
            controller=controller,
            interactive=True,
        )
        try:
            process = await asyncio.create_subprocess_exec(*args, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        qmp = await Qmp.over(ours)
        try:
            async with asyncio.timeout(START_SECONDS):
                await qmp.start()
                await qmp.execute("query-status")
                if isinstance(setup, PassthruSetup):
                    _say(f"ccid-card-passthru listens on 127.0.0.1:{await _passthru_port(qmp)}")
            _say("guest console: Ctrl-A x quits QEMU, Ctrl-A c reaches its monitor")
            await qmp.execute("cont")
            return await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await qmp.close()


async def _main(options: argparse.Namespace) -> int:
    from .image import build_image

    image = await asyncio.to_thread(build_image)
    names = (options.checks or ("" if options.shell else DEFAULT_CHECKS)).split(",")
    unknown = [name for name in names if name and name not in CHECKS_BY_NAME]
    if unknown:
        _say(f"error: unknown checks {unknown}; known: {', '.join(CHECKS_BY_NAME)}")
        return 2
    checks = [CHECKS_BY_NAME[name](options) for name in names if name]
    with contextlib.ExitStack() as stack:
        try:
            setup = await asyncio.to_thread(_setup_from, options, stack)
        except ValueError as error:
            _say(f"error: {error}")
            return 2
        if options.shell:
            return await _interactive_shell(image, setup, checks, options.controller)
        human = {t: _human_action(t) for t in (ck.REMOVE_CARD, ck.INSERT_CARD, ck.REMOVE_READER)}
        async with start_guest(
            image,
            setup,
            checks,
            timeout=options.timeout,
            actions={**human, **default_actions(setup)},
            controller=options.controller,
            logs=options.logs or None,
        ) as guest:
            if guest.passthru_port is not None:
                _say(f"ccid-card-passthru listens on 127.0.0.1:{guest.passthru_port}")
            result = await guest.wait()
    print(result.report(all_outputs=options.verbose))  # noqa: T201 (command line)
    return 0 if result.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.interop.guest.runner",
        description="Boot the vscard test guest (QEMU TCG) and run checks in it.",
    )
    parser.add_argument("--setup", choices=("emulated", "passthru", "usbip"), default="emulated")
    parser.add_argument("--shell", action="store_true", help="set up, then an interactive shell")
    parser.add_argument(
        "--checks",
        help=f"comma-separated, from: {', '.join(CHECKS_BY_NAME)} "
        f"(default: {DEFAULT_CHECKS}; none with --shell)",
    )
    parser.add_argument("--db", type=Path, help="emulated: NSS DB directory (default: a new one)")
    parser.add_argument("--port", type=int, help="passthru: port to listen on; usbip: server port")
    parser.add_argument("--busid", help="usbip: the bus id to attach")
    parser.add_argument("--mechanism", default="SHA256-RSA-PKCS", choices=ck.SIGN_MECHANISMS)
    parser.add_argument("--pin", default=ck.DEFAULT_PIN)
    parser.add_argument("--controller", choices=tuple(CONTROLLERS), default="uhci")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--logs", action="store_true", help="always fetch pcscd's log and dmesg")
    parser.add_argument("-v", "--verbose", action="store_true", help="full report even on success")
    options = parser.parse_args(argv)
    try:
        return asyncio.run(_main(options))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
