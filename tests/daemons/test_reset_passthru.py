"""A reset reaches the card: an importer that powers the card off and on through a running
ccid-passthru and a running ``vscclient --card`` finds the PIN unverified, and the card runs
the protocol the importer's reader runs (our CardReset extension). A client that does not
announce the extension (as libcacard's) gets nothing new: its card keeps its state, as under
QEMU."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import vscard
from cacard import CardRequest, generate_card
from cacard.atr import CAC_ATR, CAC_ATR_T1
from cacard.profile import Applications
from ccid.codec import decode_response, encode
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.messages import (
    Command,
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_SetParameters,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    RDR_to_PC_Parameters,
    RDR_to_PC_SlotStatus,
    Response,
)
from ccid.usb import SetupPacket
from ccid.usbip import USBIPClient, import_device
from daemons.card_guard import CardGuard
from daemons.ccid_passthru import GuardedCard
from daemons.emulated_cards import open_card_directory

from ..interop.our_vscclient import running_vscclient
from .passthru_process import PassthruProcess, running_passthru
from .piv_session import PIN, SELECT_PIV, exchange

VERIFY_80_STATUS = bytes.fromhex("00200080")
VERIFY_80 = bytes.fromhex("0020008008") + PIN
#: yubico-piv-tool's SELECT: the PIV AID without its version, and no Le (case 3).
SELECT_PIV_NO_LE = bytes.fromhex("00A4040005A000000308")
#: A T=1 abProtocolDataStructure (CCID rev 1.1 §6.1.7): Fi/Di, TCCKS, guard, BWI/CWI,
#: clock stop, IFSC, NAD.
T1_PARAMETERS = bytes.fromhex("11 10 00 4D 00 FE 00")


def make_card(directory: Path, atr: bytes) -> Path:
    generate_card(
        directory,
        CardRequest(key_size=1024, pin_iterations=1, applications=Applications.CAC_PIV, atr=atr),
    )
    return directory


class Importer:
    """A USB/IP importer driving the CCID reader as libccid would, one command at a time."""

    def __init__(self, client: USBIPClient) -> None:
        self.client = client
        self._seq = 0

    async def command(self, command: Command) -> Response:
        wire = encode(command)
        assert await self.client.transfer_out(BULK_OUT, wire) == len(wire)
        while True:
            response = decode_response(await self.client.transfer_in(BULK_IN, 65556))
            if not response.bStatus & 0x80:  # skip time extensions
                return response

    def _next(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    async def power_on(self) -> bytes:
        response = await self.command(PC_to_RDR_IccPowerOn(0, self._next()))
        assert isinstance(response, RDR_to_PC_DataBlock)
        assert not response.bStatus & 0x40, response
        return response.abData

    async def power_off(self) -> None:
        response = await self.command(PC_to_RDR_IccPowerOff(0, self._next()))
        assert isinstance(response, RDR_to_PC_SlotStatus)

    async def set_t1(self) -> None:
        response = await self.command(PC_to_RDR_SetParameters(0, self._next(), 1, T1_PARAMETERS))
        assert isinstance(response, RDR_to_PC_Parameters)
        assert response.bProtocolNum == 1

    async def transmit(self, apdu: bytes) -> bytes:
        response = await self.command(PC_to_RDR_XfrBlock(0, self._next(), apdu))
        assert isinstance(response, RDR_to_PC_DataBlock)
        assert not response.bStatus & 0x40, response
        return response.abData


@asynccontextmanager
async def imported(passthru: PassthruProcess) -> AsyncIterator[Importer]:
    """Attach the reader whose card arrived next, as ``usbip attach`` does."""
    inserted = await asyncio.wait_for(passthru.log_event("passthru.card_inserted"), 60)
    client = await import_device(inserted["busid"], port=passthru.usbip_port)
    await client.control(SetupPacket(0x00, 9, 1, 0, 0))  # SET_CONFIGURATION 1
    try:
        yield Importer(client)
    finally:
        await client.close()


async def verify_status(importer: Importer) -> int:
    _, sw = await exchange(importer.transmit, SELECT_PIV)
    assert sw == 0x9000
    return int.from_bytes(await importer.transmit(VERIFY_80_STATUS), "big")


async def log_in(importer: Importer) -> None:
    assert await verify_status(importer) & 0xFFF0 == 0x63C0  # not verified yet
    assert await importer.transmit(VERIFY_80) == b"\x90\x00"
    assert await importer.transmit(VERIFY_80_STATUS) == b"\x90\x00"


async def test_a_power_cycle_through_passthru_and_vscclient_leaves_the_pin_unverified(
    tmp_path: Path,
) -> None:
    card = make_card(tmp_path / "card", CAC_ATR_T1)
    async with (
        running_passthru(capture_log=True) as passthru,
        running_vscclient(["--card", str(card), "127.0.0.1", str(passthru.vscard_port)]) as client,
        imported(passthru) as importer,
    ):
        assert await importer.power_on() == CAC_ATR_T1
        await log_in(importer)
        # A guest reboot, SCardDisconnect(SCARD_RESET_CARD), pcscd's power management.
        await importer.power_off()
        await importer.power_on()
        assert (await client.event("vscclient.card_reset"))["protocol"] == 1
        assert await verify_status(importer) == 0x63C3
        # A warm reset (IccPowerOn of a powered card) too.
        await log_in(importer)
        await importer.power_on()
        assert await verify_status(importer) == 0x63C3


async def test_select_without_le_answers_9000_once_the_reader_runs_t1(tmp_path: Path) -> None:
    """yubico-piv-tool's SELECT has no Le and takes only 9000 as success: the client's card
    must run T=1, which it learns from ccid-passthru."""
    t0_card = make_card(tmp_path / "t0", CAC_ATR)
    t1_card = make_card(tmp_path / "t1", CAC_ATR_T1)
    async with running_passthru(capture_log=True) as passthru:
        argv = ["--card", str(t0_card), "127.0.0.1", str(passthru.vscard_port)]
        async with running_vscclient(argv), imported(passthru) as importer:
            assert await importer.power_on() == CAC_ATR
            # T=0 (the ATR's only protocol): the data waits behind 61xx.
            assert (await importer.transmit(SELECT_PIV_NO_LE))[-2] == 0x61
            # The importer's reader negotiates T=1 (a Windows host does, with SetParameters).
            await importer.set_t1()
            assert (await importer.transmit(SELECT_PIV_NO_LE))[-2:] == b"\x90\x00"
        argv = ["--card", str(t1_card), "127.0.0.1", str(passthru.vscard_port)]
        async with running_vscclient(argv), imported(passthru) as importer:
            # An ATR that offers T=1 runs T=1 at once, as ``ccid-passthru --card`` does.
            assert await importer.power_on() == CAC_ATR_T1
            assert (await importer.transmit(SELECT_PIV_NO_LE))[-2:] == b"\x90\x00"


async def test_a_client_without_the_extension_keeps_its_card_as_under_qemu(
    tmp_path: Path,
) -> None:
    """libcacard's vscclient announces nothing: it is sent nothing new, so its card keeps a
    verified PIN across the importer's power cycle (QEMU's behaviour, unchanged)."""
    resets: list[int] = []

    async def reset(protocol: int) -> None:
        resets.append(protocol)

    card_dir = make_card(tmp_path / "card", CAC_ATR_T1)
    with ExitStack() as stack:
        card = open_card_directory(str(card_dir), stack)
        async with running_passthru(capture_log=True) as passthru:
            client = await vscard.connect("127.0.0.1", passthru.vscard_port, card_reset=False)
            async with client:
                reader = await client.add_reader("r", transmit=card.transmit, reset=reset)
                await reader.insert(card.atr)
                async with imported(passthru) as importer:
                    await importer.power_on()
                    await log_in(importer)
                    await importer.power_off()
                    await importer.power_on()
                    assert await verify_status(importer) == 0x9000
                assert not client.card_reset
    assert resets == []


def test_a_power_cycle_of_an_in_process_card_makes_its_pin_guard_start_over(
    tmp_path: Path,
) -> None:
    forgotten: list[object] = []

    class RecordingGuard(CardGuard):
        def forget(self, card: object) -> None:
            forgotten.append(card)

    with ExitStack() as stack:
        card = open_card_directory(str(make_card(tmp_path / "card", CAC_ATR_T1)), stack)
        GuardedCard(card, RecordingGuard()).reset()
        assert forgotten == [card]
