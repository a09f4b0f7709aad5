"""The reader exported by our USB/IP server and driven through our USB/IP client on loopback,
the way libccid drives it: what the kernel and pcscd would see, without vhci-hcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from ccid import CCIDDevice, MemoryCard, ReaderConfiguration
from ccid.card import TEST_ATR
from ccid.codec import decode_response, encode
from ccid.constants import CommandStatus, ICCStatus
from ccid.descriptors import BULK_IN, BULK_OUT, INTERRUPT_IN
from ccid.messages import (
    Command,
    PC_to_RDR_Escape,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    RDR_to_PC_Escape,
    RDR_to_PC_SlotStatus,
    Response,
)
from ccid.usb import SetupPacket
from ccid.usbip import USBIPClient, USBIPServer, import_device, list_devices, serve_usbip

ACTIVE = ICCStatus.PRESENT_ACTIVE
OK = b"\x90\x00"


@pytest.fixture
async def exported() -> AsyncIterator[tuple[CCIDDevice, USBIPServer]]:
    device = CCIDDevice(ReaderConfiguration(serial="LOOP", time_extension_interval=0.05))
    server = await serve_usbip([device], port=0)
    yield device, server
    server.close()
    await server.wait_closed()
    await device.aclose()


async def exchange(client: USBIPClient, command: Command, length: int = 65556) -> Response:
    wire = encode(command)
    assert await client.transfer_out(BULK_OUT, wire) == len(wire)
    return decode_response(await client.transfer_in(BULK_IN, length))


async def attach(server: USBIPServer) -> USBIPClient:
    """What the kernel does after ``usbip attach``, then libccid's open."""
    client = await import_device("1-1", port=server.port)
    device = await client.control(SetupPacket(0x80, 6, 0x0100, 0, 64))
    assert device[:2] == b"\x12\x01"
    config = await client.control(SetupPacket(0x80, 6, 0x0200, 0, 9))
    total = int.from_bytes(config[2:4], "little")
    assert len(await client.control(SetupPacket(0x80, 6, 0x0200, 0, total))) == 93
    await client.control(SetupPacket(0x00, 9, 1, 0, 0))
    return client


async def test_usbip_list_shows_a_smart_card_reader_libccid_knows(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    _, server = exported
    (record,) = await list_devices(port=server.port)
    assert (record.idVendor, record.idProduct) == (0x08E6, 0x4433)
    assert [i.bInterfaceClass for i in record.interfaces] == [0x0B]


async def test_a_libccid_session_passes_responses_far_over_374_bytes(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    device, server = exported
    client = await attach(server)
    assert await exchange(client, PC_to_RDR_GetSlotStatus(0, 0), 10) == RDR_to_PC_SlotStatus(
        0, 0, ICCStatus.NOT_PRESENT
    )
    assert await exchange(client, PC_to_RDR_Escape(0, 1, b"\x6a")) == RDR_to_PC_Escape(
        0, 1, ICCStatus.NOT_PRESENT, CommandStatus.FAILED, 0
    )
    notification = asyncio.create_task(client.transfer_in(INTERRUPT_IN, 8))
    device.insert_card(MemoryCard(respond=lambda apdu: bytes(apdu[4]) * 256 + OK))
    assert await notification == b"\x50\x03"
    atr = await exchange(client, PC_to_RDR_IccPowerOn(0, 2), 43)
    assert atr == RDR_to_PC_DataBlock(0, 2, ACTIVE, abData=TEST_ATR)
    for size in (1, 2, 255):  # responses of 256, 512 and 65,280 bytes, each in one message
        apdu = b"\x00\xb0\x00\x00" + bytes([size])
        response = await exchange(client, PC_to_RDR_XfrBlock(0, 3, apdu))
        assert response == RDR_to_PC_DataBlock(0, 3, ACTIVE, abData=bytes(size) * 256 + OK)
    await client.close()


async def test_time_extensions_cross_usbip_while_the_card_thinks(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    device, server = exported
    gate: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def slow(apdu: bytes) -> bytes:
        return await gate

    client = await attach(server)
    device.insert_card(MemoryCard(respond=slow))
    await exchange(client, PC_to_RDR_IccPowerOn(0, 1), 43)
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_XfrBlock(0, 2, b"\x00\x2a\x9e\x9a")))
    extension = decode_response(await client.transfer_in(BULK_IN, 65556))
    assert (extension.bStatus, extension.bError, extension.bSeq) == (0x80, 1, 2)
    gate.set_result(OK)
    while (answer := decode_response(await client.transfer_in(BULK_IN, 65556))).bStatus & 0x80:
        pass
    assert answer == RDR_to_PC_DataBlock(0, 2, ACTIVE, abData=OK)
    await client.close()


async def test_an_unlinked_bulk_in_urb_loses_no_answer(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    _, server = exported
    client = await attach(server)
    parked = client.submit_in(BULK_IN, 65556)
    assert await client.unlink(parked) == -104
    assert await exchange(client, PC_to_RDR_GetSlotStatus(0, 7), 10) == RDR_to_PC_SlotStatus(
        0, 7, ICCStatus.NOT_PRESENT
    )
    await client.close()


async def test_a_new_import_finds_no_answer_left_from_the_last_one(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    _, server = exported
    first = await attach(server)
    await first.transfer_out(BULK_OUT, encode(PC_to_RDR_GetSlotStatus(0, 1)))  # never read
    await first.close()
    await server.exports["1-1"].wait_released()
    second = await attach(server)
    assert await exchange(second, PC_to_RDR_GetSlotStatus(0, 2), 10) == RDR_to_PC_SlotStatus(
        0, 2, ICCStatus.NOT_PRESENT
    )
    await second.close()


async def test_the_out_urb_completes_before_the_parked_in_urb_that_gets_its_answer(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    # The card answers inside the bulk OUT (its transmit starts inline), yet the host must see
    # the OUT complete first, as from a real reader.
    device, server = exported
    client = await attach(server)
    device.insert_card(MemoryCard(respond=lambda apdu: b"\x2a" + OK))
    await exchange(client, PC_to_RDR_IccPowerOn(0, 1), 43)
    order: list[str] = []
    parked = client.submit_in(BULK_IN, 65556)
    out = client.submit_out(BULK_OUT, encode(PC_to_RDR_XfrBlock(0, 2, b"\x00\xb0\x00\x00\x01")))
    waits = []
    for name, urb in (("in", parked), ("out", out)):
        wait = asyncio.create_task(urb.result())
        wait.add_done_callback(lambda _, name=name: order.append(name))  # type: ignore[misc]
        waits.append(wait)
    ret_in, _ = await asyncio.gather(*waits)
    assert order == ["out", "in"]
    assert decode_response(ret_in.data) == RDR_to_PC_DataBlock(0, 2, ACTIVE, abData=b"\x2a" + OK)
    await client.close()


async def test_parked_in_urbs_get_a_long_answer_in_order_as_it_is_split(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    device, server = exported
    gate: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def slow(apdu: bytes) -> bytes:
        return await gate

    client = await attach(server)
    device.insert_card(MemoryCard(respond=slow))
    await exchange(client, PC_to_RDR_IccPowerOn(0, 1), 43)
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_XfrBlock(0, 2, b"\x00\xb0\x00\x00\x64")))
    # Three transfers wait for the answer; the first two get a piece each, the third waits on.
    first, second, third = (client.submit_in(BULK_IN, 64) for _ in range(3))
    unlinked = client.submit_in(BULK_IN, 64)
    assert await client.unlink(unlinked) == -104  # forgotten by the device: takes nothing
    answer = bytes(range(100)) + OK
    gate.set_result(answer)
    pieces = [(await first.result()).data, (await second.result()).data]
    assert [len(piece) for piece in pieces] == [64, 48]
    assert decode_response(b"".join(pieces)) == RDR_to_PC_DataBlock(0, 2, ACTIVE, abData=answer)
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_GetSlotStatus(0, 3)))
    assert decode_response((await third.result()).data) == RDR_to_PC_SlotStatus(0, 3, ACTIVE)
    await client.close()


async def test_a_parked_interrupt_urb_gets_the_slot_change_of_a_card_inserted_later(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    device, server = exported
    client = await attach(server)
    assert await exchange(client, PC_to_RDR_GetSlotStatus(0, 0), 10) == RDR_to_PC_SlotStatus(
        0, 0, ICCStatus.NOT_PRESENT
    )
    notification = client.submit_in(INTERRUPT_IN, 8)
    await exchange(client, PC_to_RDR_GetSlotStatus(0, 1), 10)  # the URB is parked by now
    device.insert_card(MemoryCard(respond=lambda apdu: OK))
    assert (await notification.result()).data == b"\x50\x03"
    await client.close()


class CallbackCard:
    """A card that answers through ``transmit_soon`` when the test says so."""

    atr = TEST_ATR

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, Callable[[bytes | Exception], None]]] = []
        self.cancelled = 0

    async def transmit(self, apdu: bytes) -> bytes:
        raise AssertionError("the device uses transmit_soon")

    def transmit_soon(
        self, apdu: bytes, answered: Callable[[bytes | Exception], None]
    ) -> Callable[[], None]:
        self.calls.append((apdu, answered))
        return self.cancel

    def cancel(self) -> None:
        self.cancelled += 1

    def reset(self) -> None:
        pass


async def test_a_card_that_answers_by_callback_reaches_a_parked_in_urb(
    exported: tuple[CCIDDevice, USBIPServer],
) -> None:
    device, server = exported
    card = CallbackCard()
    client = await attach(server)
    device.insert_card(card)
    await exchange(client, PC_to_RDR_IccPowerOn(0, 1), 43)
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_XfrBlock(0, 2, b"\x00\xb0\x00\x00")))
    parked = client.submit_in(BULK_IN, 65556)
    await client.transfer_out(BULK_OUT, b"")  # a round trip: the IN URB is parked by now
    ((apdu, answered),) = card.calls
    assert apdu == b"\x00\xb0\x00\x00"
    answered(b"\x2a" + OK)
    assert decode_response((await parked.result()).data) == RDR_to_PC_DataBlock(
        0, 2, ACTIVE, abData=b"\x2a" + OK
    )
    # A failure is the card mute, as from transmit; an answer after the removal is dropped.
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_XfrBlock(0, 3, b"\x00\xb0\x00\x00")))
    card.calls[-1][1](OSError("reader unplugged"))
    failed = decode_response(await client.transfer_in(BULK_IN, 65556))
    assert (failed.bSeq, failed.bStatus & 0x40) == (3, 0x40)
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_XfrBlock(0, 4, b"\x00\xb0\x00\x00")))
    device.remove_card()
    assert card.cancelled == 1
    card.calls[-1][1](b"\x2b" + OK)  # too late: nobody waits for it
    removed = decode_response(await client.transfer_in(BULK_IN, 65556))
    assert (removed.bSeq, removed.bStatus & 0x40) == (4, 0x40)
    await client.close()
