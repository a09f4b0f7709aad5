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
from typing import Any

ROOT = Path(__file__).parents[2]


@dataclass(frozen=True)
class PassthruProcess:
    process: asyncio.subprocess.Process
    vscard_port: int
    usbip_port: int
    log: asyncio.Queue[dict[str, Any]] | None = None
    """Its JSON log events after the ready line, with ``capture_log``."""

    async def log_event(self, name: str) -> dict[str, Any]:
        """The next log event called ``name`` (earlier others are skipped)."""
        assert self.log is not None, "start it with capture_log=True"
        while True:
            event = await self.log.get()
            if event.get("event") == name:
                return event

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
async def running_passthru(
    extra: Sequence[str] = (), *, listen: str = "127.0.0.1:0", capture_log: bool = False
) -> AsyncIterator[PassthruProcess]:
    """``ccid-passthru --listen 127.0.0.1:0 --usbip 127.0.0.1:0 EXTRA`` until the block ends."""
    process = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--",
        sys.executable, "-m", "daemons.ccid_passthru",
        "--listen", listen, "--usbip", "127.0.0.1:0", "--log-format", "json", *extra,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert process.stderr is not None
    drain: asyncio.Task[None] | None = None
    log: asyncio.Queue[dict[str, Any]] | None = asyncio.Queue() if capture_log else None
    try:
        async with asyncio.timeout(30):
            while True:
                line = await process.stderr.readline()
                if not line:
                    raise RuntimeError("ccid-passthru exited before it was ready")
                event = json.loads(line)
                if log is not None:
                    log.put_nowait(event)
                if event["event"] == "passthru.ready":
                    break
        # Keep reading its log so a full pipe never blocks it.
        drain = asyncio.create_task(_drain(process.stderr, log))
        yield PassthruProcess(process, _port(event["vscard"]), _port(event["usbip"]), log)
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


async def _drain(stream: asyncio.StreamReader, log: asyncio.Queue[dict[str, Any]] | None) -> None:
    while line := await stream.readline():
        if log is not None:
            log.put_nowait(json.loads(line))
