"""A daemon whose log reader goes away (journald restarting, ``vscclient ... 2>&1 | head``)
loses log lines, and nothing else: it keeps serving and keeps its exit status."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

import vscard
from cacard import CardRequest, generate_card

ROOT = Path(__file__).parents[2]
SELECT_CCC = bytes.fromhex("00A4040007A000000116DB00")


@pytest.fixture
def card(tmp_path: Path) -> Path:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    return tmp_path / "card"


def _gone_reader_pipe() -> int:
    """The write end of a pipe whose reader has already closed."""
    read, write = os.pipe()
    os.close(read)
    return write


async def _stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 30)


async def test_vscclient_serves_its_card_with_its_log_reader_gone(card: Path) -> None:
    answered: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, vscard.CardInserted):
                await answered.put(await session.transmit(event.reader_id, SELECT_CCC))

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        stderr = _gone_reader_pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                "setpriv", "--pdeathsig", "KILL", "--",
                sys.executable, "-m", "daemons.vscclient", "-d", "1", "--card", str(card),
                "127.0.0.1", str(server.port),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
        finally:
            os.close(stderr)
        try:
            response = await asyncio.wait_for(answered.get(), 60)
            assert response[-2] in (0x90, 0x61)  # 61xx: the FCI waits for GET RESPONSE
        finally:
            assert await _stop(process) == 0


async def test_ccid_passthru_takes_clients_after_its_log_reader_went_away() -> None:
    process = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--",
        sys.executable, "-m", "daemons.ccid_passthru", "--listen", "127.0.0.1:0",
        "--usbip", "127.0.0.1:0", "--log-format", "json",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while True:
                event = json.loads(await process.stderr.readline())
                if event["event"] == "passthru.ready":
                    break
        port = int(event["vscard"].rsplit(":", 1)[1])
        # The reader goes: every later log line meets a closed pipe.
        process._transport.get_pipe_transport(2).close()  # type: ignore[attr-defined]
        for attempt in range(3):
            async with await vscard.connect("127.0.0.1", port) as client:
                reader = await client.add_reader(f"Reader {attempt}", transmit=_echo)
                await reader.insert(bytes.fromhex("3B00"))
        assert process.returncode is None
    finally:
        assert await _stop(process) == 0


async def _echo(apdu: bytes) -> bytes:
    return b"\x90\x00"
