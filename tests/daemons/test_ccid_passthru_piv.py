"""``ccid-passthru --card DIR`` with a PIV or CAC+PIV card directory, as a USB/IP importer sees
it: a CCID reader that offers T=0 and T=1, the card's ATR (with T=1), T=1 parameters accepted,
and a PIV host's first commands in XfrBlocks; the PIN guard (``--pin-guard``) in front."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cacard import CardRequest, CardStore, generate_card
from cacard.profile import Applications
from cardfloor.iso7816.atr import parse_atr
from ccid.codec import decode_response, encode
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.messages import (
    Command,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_SetParameters,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    RDR_to_PC_Parameters,
)
from ccid.usb import SetupPacket
from ccid.usbip import USBIPClient, import_device, list_devices

from .passthru_process import running_passthru
from .piv_session import SELECT_PIV, exchange, key_9a, piv_session

#: The class descriptor of a CCID interface (CCID rev 1.1 §5.1): type 21h, dwProtocols at 6.
CCID_CLASS_DESCRIPTOR = 0x21
WRONG_PIN = b"11111111".hex()


@pytest.fixture(params=[Applications.PIV, Applications.CAC_PIV], ids=["piv", "cac+piv"])
def card(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    applications: Applications = request.param
    generate_card(
        tmp_path / "card",
        CardRequest(key_size=1024, pin_iterations=1, applications=applications),
    )
    return tmp_path / "card"


async def exchange_ccid(
    client: USBIPClient, command: Command
) -> RDR_to_PC_DataBlock | RDR_to_PC_Parameters:
    wire = encode(command)
    assert await client.transfer_out(BULK_OUT, wire) == len(wire)
    while True:
        response = decode_response(await client.transfer_in(BULK_IN, 65556))
        assert isinstance(response, RDR_to_PC_DataBlock | RDR_to_PC_Parameters)
        if not response.bStatus & 0x80:  # skip time extensions
            return response


class Importer:
    """A USB/IP importer of one exported reader: configured, its card powered."""

    def __init__(self, client: USBIPClient) -> None:
        self.client = client
        self._seq = 0

    def seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    async def transmit(self, apdu: bytes) -> bytes:
        answer = await exchange_ccid(self.client, PC_to_RDR_XfrBlock(0, self.seq(), apdu))
        assert isinstance(answer, RDR_to_PC_DataBlock)
        assert answer.bError == 0, answer
        return answer.abData


@asynccontextmanager
async def imported(card: Path, *extra: str) -> AsyncIterator[Importer]:
    """``ccid-passthru --card CARD EXTRA`` and an importer of its reader."""
    async with running_passthru(["--card", str(card), *extra]) as passthru:
        (record,) = await list_devices(port=passthru.usbip_port)
        client = await import_device(record.busid, port=passthru.usbip_port)
        try:
            await client.control(SetupPacket(0x00, 9, 1, 0, 0))  # SET_CONFIGURATION 1
            yield Importer(client)
        finally:
            await client.close()


def ccid_protocols(configuration: bytes) -> int:
    """dwProtocols of the CCID class descriptor in a configuration descriptor."""
    position = 0
    while position < len(configuration):
        length, kind = configuration[position], configuration[position + 1]
        if kind == CCID_CLASS_DESCRIPTOR:
            (protocols,) = struct.unpack_from("<I", configuration, position + 6)
            return int(protocols)
        position += length
    raise AssertionError("no CCID class descriptor")


async def test_the_reader_offers_t1_and_the_card_answers_with_it(card: Path) -> None:
    expected = CardStore(card).load_profile().atr
    async with imported(card) as importer:
        client = importer.client
        header = await client.control(SetupPacket(0x80, 6, 0x0200, 0, 9))
        (total,) = struct.unpack_from("<H", header, 2)
        configuration = await client.control(SetupPacket(0x80, 6, 0x0200, 0, total))
        assert ccid_protocols(configuration) & 0x03 == 0x03  # T=0 and T=1
        powered = await exchange_ccid(client, PC_to_RDR_IccPowerOn(0, importer.seq()))
        assert isinstance(powered, RDR_to_PC_DataBlock)
        assert powered.abData == expected
        assert parse_atr(powered.abData).transmission_protocols == (0, 1)
        # pcscd chooses T=1 when both are offered: SetParameters T=1 is taken.
        t1 = bytes.fromhex("1110004D00FE00")
        parameters = await exchange_ccid(client, PC_to_RDR_SetParameters(0, importer.seq(), 1, t1))
        assert isinstance(parameters, RDR_to_PC_Parameters)
        assert (parameters.bError, parameters.bProtocolNum) == (0, 1)
        # The PIV host's first commands, over T=1 now.
        session = await piv_session(importer.transmit, key_9a(card))
        assert (session.select_sw, session.verify_sw) == (0x9000, 0x9000)
        assert session.chuid.startswith(b"\x53")


async def test_the_pin_guard_keeps_the_last_try_of_an_in_process_card(card: Path) -> None:
    async with imported(card, "--pin-guard", "1") as importer:
        await exchange_ccid(importer.client, PC_to_RDR_IccPowerOn(0, importer.seq()))
        assert (await exchange(importer.transmit, SELECT_PIV))[1] == 0x9000
        verify = bytes.fromhex("0020008008" + WRONG_PIN)
        answers = [(await importer.transmit(verify)).hex() for _ in range(4)]
    assert answers == ["63c2", "63c1", "6983", "6983"]
    assert CardStore(card).load_state().pin.tries_remaining == 1


async def test_with_the_guard_off_the_importer_can_block_the_card(card: Path) -> None:
    async with imported(card, "--pin-guard", "0") as importer:
        await exchange_ccid(importer.client, PC_to_RDR_IccPowerOn(0, importer.seq()))
        assert (await exchange(importer.transmit, SELECT_PIV))[1] == 0x9000
        verify = bytes.fromhex("0020008008" + WRONG_PIN)
        answers = [(await importer.transmit(verify)).hex() for _ in range(4)]
    assert answers == ["63c2", "63c1", "63c0", "6983"]
    assert CardStore(card).load_state().pin.tries_remaining == 0


async def test_a_select_without_le_gets_its_data_at_once(card: Path) -> None:
    """The card runs T=1 in our reader: yubico-piv-tool's SELECT (no Le) gets 9000 and the
    application property template, not 61xx."""
    async with imported(card) as importer:
        await exchange_ccid(importer.client, PC_to_RDR_IccPowerOn(0, importer.seq()))
        answer = await importer.transmit(SELECT_PIV[:-1])
    assert answer[-2:] == b"\x90\x00"
    assert answer[0] == 0x61  # the application property template


async def test_a_t0_only_card_still_answers_61xx(tmp_path: Path) -> None:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    async with imported(tmp_path / "card") as importer:
        await exchange_ccid(importer.client, PC_to_RDR_IccPowerOn(0, importer.seq()))
        answer = await importer.transmit(bytes.fromhex("00A4040007A0000000790100"))
    assert answer[:1] == b"\x61"
    assert len(answer) == 2
