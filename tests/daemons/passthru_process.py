"""ccid-passthru as a real process for tests: started, read until ready, stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]


@dataclass(frozen=True)
class PassthruProcess:
    process: asyncio.subprocess.Process
    vscard_port: int
    usbip_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@asynccontextmanager
async def running_passthru(extra: Sequence[str] = ()) -> AsyncIterator[PassthruProcess]:
    """``ccid-passthru --listen 127.0.0.1:0 --usbip 127.0.0.1:0`` until the block ends."""
    process = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--",
        sys.executable, "-m", "daemons.ccid_passthru",
        "--listen", "127.0.0.1:0", "--usbip", "127.0.0.1:0", "--log-format", "json", *extra,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert process.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            while True:
                line = await process.stderr.readline()
                if not line:
                    raise RuntimeError("ccid-passthru exited before it was ready")
                event = json.loads(line)
                if event["event"] == "passthru.ready":
                    break
        # Keep reading its log so a full pipe never blocks it.
        drain = asyncio.create_task(_drain(process.stderr))
        yield PassthruProcess(process, _port(event["vscard"]), _port(event["usbip"]))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if drain is not None:
            drain.cancel()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
