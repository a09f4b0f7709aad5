"""Real QEMU as a test peer: a ``usb-ccid`` + ``ccid-card-passthru`` on a loopback port, no guest.

Readiness comes from QMP, never from probing the VSCard port: QEMU keeps stray bytes across
reconnects, so a probe would corrupt the next client's framing (QEMU's
``hw/usb/ccid-card-passthru.c`` keeps its receive buffer in ``ccid_card_vscard_read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

QEMU = "qemu-system-x86_64"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (QEMU binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class QMP:
    """A minimal QMP client over QEMU's stdio."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout

    async def _message(self) -> dict[str, Any]:
        while True:
            line = await self._stdout.readline()
            if not line:
                raise ConnectionError("QEMU closed its QMP channel")
            message: dict[str, Any] = json.loads(line)
            if "event" not in message:
                return message

    async def greeting(self) -> dict[str, Any]:
        return await self._message()

    async def execute(self, command: str, **arguments: object) -> Any:
        request: dict[str, object] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._stdin.write(json.dumps(request).encode() + b"\n")
        await self._stdin.drain()
        reply = await self._message()
        if "error" in reply:
            raise RuntimeError(f"QMP {command} failed: {reply['error']}")
        return reply["return"]


@dataclass(frozen=True)
class QemuPassthru:
    """A running QEMU whose ccid-card-passthru listens on ``127.0.0.1:port``."""

    port: int
    qmp: QMP
    process: asyncio.subprocess.Process


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


@asynccontextmanager
async def qemu_passthru(
    extra_args: Sequence[str] = (), *, chardev_options: str = "", timeout: float = 30.0
) -> AsyncIterator[QemuPassthru]:
    """Start QEMU 7.2 paused (``-S``: devices realized, no guest code runs) and yield it."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        # QEMU ignores EOF on QMP: without this it outlives a killed test run.
        "setpriv", "--pdeathsig", "KILL", "--",
        QEMU,
        "-accel", "tcg",
        "-machine", "pc",
        "-nodefaults",
        "-display", "none",
        "-S",
        "-qmp", "stdio",
        "-usb",
        "-device", "usb-ccid,id=ccid",
        "-chardev",
        f"socket,id=vsc,server=on,wait=off,host=127.0.0.1,port={port},nodelay=on{chardev_options}",
        "-device", "ccid-card-passthru,chardev=vsc,id=card",
        *extra_args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    qmp = QMP(process)
    try:
        async with asyncio.timeout(timeout):
            await qmp.greeting()
            await qmp.execute("qmp_capabilities")
            # Answered from the main loop, so every device is realized and the port listens.
            await qmp.execute("query-status")
        yield QemuPassthru(port, qmp, process)
    except (ConnectionError, TimeoutError) as error:
        assert process.stderr is not None
        with contextlib.suppress(Exception):
            process.kill()
        stderr = await process.stderr.read()
        raise RuntimeError(f"QEMU did not start: {stderr.decode(errors='replace')}") from error
    finally:
        if process.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(qmp.execute("quit"), 5)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
