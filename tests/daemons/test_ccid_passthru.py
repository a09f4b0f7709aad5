"""ccid-passthru: VSCard readers become USB/IP devices, and cards follow them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import vscard
from cacard import CAC_ATR
from ccid.codec import decode_response, encode
from ccid.constants import ICCStatus
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.messages import Command, PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock, RDR_to_PC_DataBlock
from ccid.usb import SetupPacket
from ccid.usbip import USBIPClient, USBIPServer, import_device, list_devices, serve_usbip
from daemons.ccid_passthru import Passthru
from daemons.emulated_cards import EmulatedCard, open_card_directory
from daemons.vscclient import Daemon, Plan
from tests.cacard import cards

card_dir = cards.card_dir

SELECT_PKI = bytes.fromhex("00A4040007A0000000790100")


@pytest.fixture
async def passthru() -> AsyncIterator[tuple[Passthru, USBIPServer, vscard.Server]]:
    usbip = await serve_usbip((), "127.0.0.1", 0)
    bridge = Passthru(usbip)
    async with usbip, await vscard.serve(bridge.handle, "127.0.0.1", 0) as server:
        yield bridge, usbip, server


async def exchange(client: USBIPClient, command: Command) -> RDR_to_PC_DataBlock:
    wire = encode(command)
    assert await client.transfer_out(BULK_OUT, wire) == len(wire)
    while True:
        response = decode_response(await client.transfer_in(BULK_IN, 65556))
        assert isinstance(response, RDR_to_PC_DataBlock)
        if not response.bStatus & 0x80:  # skip time extensions
            return response


async def attach(busid: str, port: int) -> USBIPClient:
    client = await import_device(busid, port=port)
    await client.control(SetupPacket(0x00, 9, 1, 0, 0))  # SET_CONFIGURATION 1
    return client


async def test_a_vscclient_card_is_usable_over_usbip_and_leaves_with_its_client(
    passthru: tuple[Passthru, USBIPServer, vscard.Server], card_dir: Path
) -> None:
    bridge, usbip, server = passthru
    daemon = Daemon(
        Plan("127.0.0.1", server.port, None, (str(card_dir),), None, False, 10), "console", 0
    )
    run = asyncio.create_task(daemon.run(read_stdin=False))
    # The reader appears as an exported 08e6:4433 device, and the card arrives in it.
    (export,) = await asyncio.wait_for(bridge.wait_for_devices(1), 10)
    (record,) = await list_devices(port=usbip.port)
    assert (record.idVendor, record.idProduct, record.busid) == (0x08E6, 0x4433, export)
    client = await attach(export, usbip.port)
    atr = await exchange(client, PC_to_RDR_IccPowerOn(0, 1))
    assert atr.abData == CAC_ATR
    answer = await exchange(client, PC_to_RDR_XfrBlock(0, 2, SELECT_PKI))
    assert answer.bmICCStatus is ICCStatus.PRESENT_ACTIVE
    assert answer.abData[-2:] in (b"\x90\x00", b"\x61\x0d")
    # vscclient leaves: its reader is unplugged and the importer is disconnected.
    daemon.stop()
    assert await asyncio.wait_for(run, 10) == 0
    await asyncio.wait_for(client.wait_closed(), 10)
    assert await asyncio.wait_for(bridge.wait_for_devices(0), 10) == set()
    assert await list_devices(port=usbip.port) == ()


async def test_an_emulated_card_is_exported_without_any_client(
    passthru: tuple[Passthru, USBIPServer, vscard.Server], card_dir: Path, tmp_path: Path
) -> None:
    bridge, usbip, _ = passthru
    with contextlib.ExitStack() as stack:
        card: EmulatedCard = open_card_directory(str(card_dir), stack)
        exported = bridge.export(card.name)
        exported.device.insert_card(card)
        client = await attach(exported.busid, usbip.port)
        atr = await exchange(client, PC_to_RDR_IccPowerOn(0, 1))
        assert atr.abData == CAC_ATR
        await client.close()
        await bridge.unexport(exported)


async def test_the_daemon_says_when_it_is_ready_and_stops_cleanly_on_sigterm(
    card_dir: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemons.ccid_passthru",
        "--listen", "127.0.0.1:0", "--usbip", "127.0.0.1:0", "--log-format", "json",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    assert process.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = await process.stderr.readline()
            assert line, "ccid-passthru exited before it was ready"
            event = json.loads(line)
            if event["event"] == "passthru.ready":
                break
        usbip_port = int(event["usbip"].rsplit(":", 1)[1])
        vscard_port = int(event["vscard"].rsplit(":", 1)[1])
        assert vscard_port > 0
        assert await list_devices(port=usbip_port) == ()
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
