"""A program that uses the library without configuring logging prints nothing; one that
configures the standard library's logging gets every event, with its fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A host and a client with a card: connection events, APDUs and a warning (an unknown reader).
PROGRAM = """
import asyncio, logging, sys
import vscard
from cacard.atr import CAC_ATR

if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(message)s")

async def card(apdu):
    return b"\\x90\\x00"

async def main():
    done = asyncio.Event()

    async def handler(session):
        async for event in session.events():
            if isinstance(event, vscard.CardInserted):
                await session.transmit(event.reader_id, bytes.fromhex("00A4040000"))
                done.set()

    async with await vscard.serve(handler, "127.0.0.1", 0) as server:
        client = await vscard.connect("127.0.0.1", server.port)
        reader = await client.add_reader("r", transmit=card)
        await reader.insert(CAC_ATR)
        await asyncio.wait_for(done.wait(), 10)
        await client.close()

asyncio.run(main())
"""


def run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_without_logging_configured_nothing_is_printed() -> None:
    done = run("silent")
    assert (done.stdout, done.stderr) == ("", "")


def test_with_logging_configured_every_event_comes_with_its_fields() -> None:
    lines = run("configured").stdout.splitlines()
    assert any(line.startswith("vscard.client vscard.connected peer=127.0.0.1:") for line in lines)
    assert any("vscard.apdu" in line and "command=00a4040000" in line for line in lines)
