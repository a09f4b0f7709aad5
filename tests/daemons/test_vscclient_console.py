"""vscclient's console as a process: Ctrl-D on a terminal is a clean exit, EOF on a pipe is not."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

import vscard
from tests.cacard import cards
from vscard import CardInserted, CardRemoved, ReaderRemoved, Session

card_dir = cards.card_dir

ROOT = Path(__file__).parents[2]


async def test_ctrl_d_on_a_terminal_removes_card_and_reader_then_exits(card_dir: Path) -> None:
    events: asyncio.Queue[object] = asyncio.Queue()

    async def handle(session: Session) -> None:
        async for event in session.events():
            await events.put(event)

    async def next_of(kind: type) -> object:
        while True:
            event = await asyncio.wait_for(events.get(), 30)
            if isinstance(event, kind):
                return event

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        master, slave = pty.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemons.vscclient", "--card", str(card_dir),
                "127.0.0.1", str(server.port),
                stdin=slave, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            os.close(slave)
            await next_of(CardInserted)
            os.write(master, b"\x04")  # Ctrl-D at the prompt: the terminal's end of file
            assert await next_of(CardRemoved) == CardRemoved(0)
            assert await next_of(ReaderRemoved) == ReaderRemoved(0)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            os.close(master)


async def test_end_of_file_on_a_pipe_keeps_serving(card_dir: Path) -> None:
    inserted: asyncio.Queue[Session] = asyncio.Queue()

    async def handle(session: Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted):
                await inserted.put(session)

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemons.vscclient", "--card", str(card_dir),
            "127.0.0.1", str(server.port),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        try:
            session = await asyncio.wait_for(inserted.get(), 30)
            # stdin was /dev/null from the start: vscclient still answers APDUs.
            answer = await session.transmit(0, bytes.fromhex("00A4040007A0000000790100"))
            assert answer[-2:] in (b"\x90\x00", b"\x61\x0d")
            assert process.returncode is None
        finally:
            process.terminate()
            assert await asyncio.wait_for(process.wait(), 30) == 0
