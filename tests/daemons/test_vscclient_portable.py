"""vscclient's main path without what only POSIX has, as on a Windows thin client: no fcntl, no
termios, no uvloop, and loops whose ``add_signal_handler`` raises NotImplementedError. msvcrt is
missing too (this is not Windows), so the card's lock is the O_EXCL pid file.

``vscclient --card DIR`` serves our VSCard host over a real socket: the reader is added, the
card inserted, an APDU answered, the card held against a second server; then each stop path
(the ``exit`` command, Ctrl-C, SIGTERM) takes card and reader off the host and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TypeVar

import pytest

import vscard
from cacard import CardRequest, CardStore, generate_card, lockfile
from cacard.store import CardInUseError
from tests.interop.our_vscclient import ROOT, VscclientProcess
from vscard import CardInserted, CardRemoved, ReaderAdded, ReaderRemoved, Session

WITHOUT_POSIX = """\
import asyncio, runpy, sys
for name in ("fcntl", "termios", "tty", "pty", "msvcrt", "uvloop"):
    sys.modules[name] = None  # import raises ImportError
for method in ("add_signal_handler", "remove_signal_handler"):  # Windows' loops inherit these
    setattr(asyncio.SelectorEventLoop, method, getattr(asyncio.AbstractEventLoop, method))
runpy.run_module("daemons.vscclient", run_name="__main__", alter_sys=True)
"""

_Event = TypeVar("_Event")

SELECT_CAC = bytes.fromhex("00A4040007A0000000790100")


@pytest.fixture
def card(tmp_path: Path) -> Path:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    return tmp_path / "card"


def refusal_while_served(card: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """What a second server on a platform like the client's is told."""
    with monkeypatch.context() as platform:
        platform.setitem(sys.modules, "fcntl", None)
        platform.setitem(sys.modules, "msvcrt", None)
        assert lockfile.mechanism() == "pidfile"
        with pytest.raises(CardInUseError) as refused, CardStore(card).lock():
            pass
    return str(refused.value)


@pytest.mark.parametrize("stop", ["exit command", "SIGINT", "SIGTERM"])
async def test_without_posix_calls_vscclient_serves_a_card_and_stops_cleanly(
    card: Path, stop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: asyncio.Queue[object] = asyncio.Queue()
    sessions: asyncio.Queue[Session] = asyncio.Queue()

    async def handle(session: Session) -> None:
        await sessions.put(session)
        async for event in session.events():
            await events.put(event)

    async def next_of(kind: type[_Event]) -> _Event:
        while True:
            event = await asyncio.wait_for(events.get(), 60)
            if isinstance(event, kind):
                return event

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WITHOUT_POSIX, "--log-format", "json",
            "--card", str(card), "127.0.0.1", str(server.port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        client = VscclientProcess(process)
        try:
            added = await next_of(ReaderAdded)
            assert await next_of(CardInserted) == CardInserted(
                added.reader_id, CardStore(card).load_profile().atr
            )
            session = await asyncio.wait_for(sessions.get(), 10)
            answer = await session.transmit(added.reader_id, SELECT_CAC)
            assert answer[-2:] == b"\x90\x00" or answer[-2:-1] == b"\x61"

            assert (card / ".lock.pid").read_text().split()[0] == str(process.pid)
            refusal = refusal_while_served(card, monkeypatch)
            assert str(card) in refusal
            assert f"process {process.pid}" in refusal

            if stop == "exit command":
                await client.command("exit")
            else:
                process.send_signal(getattr(signal, stop))
            assert await next_of(CardRemoved) == CardRemoved(added.reader_id)
            assert await next_of(ReaderRemoved) == ReaderRemoved(added.reader_id)
            assert await client.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await asyncio.wait_for(client._reader, 10)
    assert not (card / ".lock.pid").exists()
    texts = []
    while not client.events.empty():
        event = client.events.get_nowait()
        if event["event"] == "text":
            texts.append(event["line"])
    assert texts == []  # every line a log event: no traceback, no warning from a thread
