"""Our vscclient as a real process: console commands on its stdin, JSON log events read back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]


class VscclientProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            try:
                self.events.put_nowait(json.loads(line))
            except ValueError:
                self.events.put_nowait({"event": "text", "line": line.decode(errors="replace")})

    async def event(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """The next log event called ``name``."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.get("event") == name:
                    return event

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def wait(self, timeout: float = 30) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


@asynccontextmanager
async def running_vscclient(args: Sequence[str]) -> AsyncIterator[VscclientProcess]:
    """``vscclient --log-format json ARGS``; stdin stays an open pipe until the block ends."""
    process = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--",
        sys.executable, "-m", "daemons.vscclient", "--log-format", "json", *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    client = VscclientProcess(process)
    try:
        yield client
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        client._reader.cancel()
