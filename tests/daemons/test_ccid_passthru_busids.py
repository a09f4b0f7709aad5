"""A reader that comes back gets its bus id back: a real ``vscclient --reconnect`` loses its
connection to a running ``ccid-passthru`` (a proxy between them cuts it), a new reader arrives
meanwhile, and when vscclient reconnects its reader is exported under the bus id it had, so a
host that attached ``-b 1-1`` finds it again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import vscard
from ccid.usbip import list_devices
from tests.cacard import cards

from .passthru_process import ROOT, PassthruProcess, running_passthru
from .test_ccid_passthru_load import connect_with_card

card_dir = cards.card_dir


class Proxy:
    """TCP between vscclient and ccid-passthru that the test can cut and hold shut."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self._open = asyncio.Event()
        self._open.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def cut(self) -> None:
        """Drop every connection now; hold new ones until :meth:`reopen`."""
        self._open.clear()
        for writer in self._writers:
            writer.transport.abort()

    def reopen(self) -> None:
        self._open.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        await self._open.wait()
        host_r, host_w = await asyncio.open_connection("127.0.0.1", self._upstream)
        self._writers.add(host_w)
        pipes = [
            asyncio.create_task(self._pipe(client_r, host_w)),
            asyncio.create_task(self._pipe(host_r, client_w)),
        ]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_w, host_w):
            writer.transport.abort()
            self._writers.discard(writer)
        await asyncio.gather(*pipes, return_exceptions=True)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


async def exported(passthru: PassthruProcess, count: int) -> set[str]:
    """The bus ids listed once there are ``count``."""
    async with asyncio.timeout(20):
        while True:
            busids = {record.busid for record in await list_devices(port=passthru.usbip_port)}
            if len(busids) == count:
                return busids
            await asyncio.sleep(0.02)  # another process: its devlist is all there is to watch


@dataclass(frozen=True)
class Reconnected:
    passthru: PassthruProcess
    before: str
    """vscclient's reader's bus id before its connection was cut."""
    newcomer: str
    """The bus id of a reader that arrived while vscclient was away."""
    after: str
    """vscclient's reader's bus id once it reconnected."""


@contextlib.asynccontextmanager
async def vscclient_reconnects(card_dir: Path) -> AsyncIterator[Reconnected]:
    async with running_passthru() as passthru:
        proxy = Proxy(passthru.vscard_port)
        async with await proxy.start():
            process = await asyncio.create_subprocess_exec(
                "setpriv", "--pdeathsig", "KILL", "--",
                sys.executable, "-m", "daemons.vscclient", "--reconnect", "--card", str(card_dir),
                "--log-format", "json", "127.0.0.1", str(proxy.port),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            newcomer: vscard.Client | None = None
            try:
                (before,) = await exported(passthru, 1)
                proxy.cut()
                await exported(passthru, 0)
                # A new reader while vscclient is away: it must not take vscclient's bus id.
                newcomer = await connect_with_card(passthru.vscard_port)
                (newcomer_busid,) = await exported(passthru, 1)
                proxy.reopen()  # vscclient's retry goes through
                (after,) = await exported(passthru, 2) - {newcomer_busid}
                yield Reconnected(passthru, before, newcomer_busid, after)
            finally:
                if newcomer is not None:
                    await newcomer.close()
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 10)


async def test_a_reconnecting_vscclient_gets_its_bus_id_back_in_the_devlist(card_dir: Path) -> None:
    async with vscclient_reconnects(card_dir) as run:
        assert run.before == "1-1"
        assert run.newcomer != run.before
        assert run.after == run.before


#: Present when vhci-hcd is loaded: `usbip attach` would then plug the reader into this host.
VHCI = Path("/sys/devices/platform/vhci_hcd.0")


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("usbip") is None, reason="needs Debian's usbip tool")
@pytest.mark.skipif(VHCI.exists(), reason="vhci-hcd is loaded: attach would plug the reader in")
async def test_usbip_list_and_attach_find_the_returning_reader_under_its_old_bus_id(
    card_dir: Path,
) -> None:
    async with vscclient_reconnects(card_dir) as run:
        port = str(run.passthru.usbip_port)
        tool = await asyncio.create_subprocess_exec(
            "usbip", "--tcp-port", port, "list", "-r", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        listing = (await asyncio.wait_for(tool.communicate(), 30))[0].decode()
        assert tool.returncode == 0, listing
        assert f"{run.before}: " in listing
        # What the example unit (examples/usbip-attach@.service) runs: the import of the old
        # bus id is accepted; this host has no vhci-hcd, so the tool stops right after it.
        tool = await asyncio.create_subprocess_exec(
            "usbip", "--tcp-port", port, "attach", "-r", "127.0.0.1", "-b", run.before,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        attach = (await asyncio.wait_for(tool.communicate(), 30))[0].decode()
        assert "Device not found" not in attach
        assert "open vhci_driver" in attach
