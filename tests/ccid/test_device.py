"""The asyncio device, driven the way the USB/IP server drives it: IN transfers parked until
data exists and never answered with more than asked, OUT transfers accepted whole, cancelled
IN transfers losing nothing, the card's work started inline (a task once it waits) with time
extensions."""

from __future__ import annotations

import asyncio

import pytest

from ccid import CCIDDevice, CCIDLocalProtocolError, MemoryCard, ReaderConfiguration, SlotState
from ccid.card import TEST_ATR
from ccid.codec import decode_response, encode
from ccid.constants import CommandStatus, ICCStatus, SlotError
from ccid.descriptors import BULK_IN, BULK_OUT, INTERRUPT_IN
from ccid.messages import (
    Command,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    RDR_to_PC_SlotStatus,
    Response,
)
from ccid.usb import SetupPacket, Speed, Stall, UsbDevice

SELECT = bytes.fromhex("00A4040000")
OK = b"\x90\x00"
ACTIVE = ICCStatus.PRESENT_ACTIVE


def make_device(**options: float) -> CCIDDevice:
    return CCIDDevice(ReaderConfiguration(serial="TEST", **options))  # type: ignore[arg-type]


async def send(device: CCIDDevice, command: Command) -> None:
    wire = encode(command)
    assert await device.transfer_out(BULK_OUT, wire) == len(wire)


async def receive(device: CCIDDevice, length: int = 65556) -> Response:
    return decode_response(await device.transfer_in(BULK_IN, length))


async def run_ready_tasks() -> None:
    """Let every task that can run, run (a scheduling step, not a wait for time)."""
    for _ in range(5):
        await asyncio.sleep(0)


class GatedCard(MemoryCard):
    """A card that answers only when the test opens the gate, and notes cancellation."""

    def __init__(self) -> None:
        super().__init__(respond=self._answer)
        self.gate: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.cancelled = False

    async def _answer(self, apdu: bytes) -> bytes:
        try:
            return await self.gate
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def powered(device: CCIDDevice, card: MemoryCard | None = None) -> MemoryCard:
    card = card if card is not None else MemoryCard()
    device.insert_card(card)
    await device.transfer_in(INTERRUPT_IN, 8)
    await send(device, PC_to_RDR_IccPowerOn(0, 0))
    await receive(device, 43)
    return card


def test_the_device_is_what_the_usbip_server_exports() -> None:
    device: UsbDevice = make_device()
    summary = device.summary
    assert (summary.idVendor, summary.idProduct, summary.speed) == (0x08E6, 0x4433, Speed.FULL)
    assert [i.bInterfaceClass for i in summary.interfaces] == [0x0B]


async def test_ep0_answers_through_the_control_pipe_and_stalls_device_qualifier() -> None:
    device = make_device()
    setup = SetupPacket(0x80, 6, 0x0100, 0, 64)
    assert await device.control(setup, b"") == device.descriptors.device_bytes()
    with pytest.raises(Stall):
        await device.control(SetupPacket(0x80, 6, 0x0600, 0, 10), b"")
    assert await device.control(SetupPacket(0x00, 9, 1, 0, 0), b"") == b""


async def test_an_insert_completes_the_parked_interrupt_transfer_once() -> None:
    device = make_device()
    first = asyncio.create_task(device.transfer_in(INTERRUPT_IN, 8))
    await run_ready_tasks()
    assert not first.done()
    device.insert_card(MemoryCard())
    assert await first == bytes.fromhex("50 03")
    second = asyncio.create_task(device.transfer_in(INTERRUPT_IN, 8))
    await run_ready_tasks()
    assert not second.done()  # no change, no completion: pcscd would poll for nothing
    device.remove_card()
    assert await second == bytes.fromhex("50 02")


async def test_an_apdu_goes_to_the_card_and_its_answer_comes_back() -> None:
    device = make_device()
    card = await powered(device, MemoryCard(respond=lambda apdu: b"\x01\x02" + OK))
    assert device.slot_state is SlotState.PRESENT_ACTIVE
    await send(device, PC_to_RDR_XfrBlock(0, 7, SELECT))
    assert await receive(device) == RDR_to_PC_DataBlock(0, 7, ACTIVE, abData=b"\x01\x02" + OK)
    assert list(card.apdus) == [SELECT]


async def test_power_on_hands_out_the_atr_in_libccids_43_byte_read() -> None:
    device = make_device()
    device.insert_card(MemoryCard())
    await send(device, PC_to_RDR_IccPowerOn(0, 1))
    assert (
        await device.transfer_in(BULK_IN, 43)
        == bytes.fromhex("80 07000000 00 01 00 00 00") + TEST_ATR
    )


async def test_bulk_in_waits_for_a_slow_card() -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    reading = asyncio.create_task(receive(device))
    await run_ready_tasks()
    assert not reading.done()
    card.gate.set_result(OK)
    assert await reading == RDR_to_PC_DataBlock(0, 1, ACTIVE, abData=OK)


async def test_a_cancelled_in_transfer_loses_no_data() -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    parked = asyncio.create_task(device.transfer_in(BULK_IN, 65556))
    await run_ready_tasks()
    card.gate.set_result(OK)
    await asyncio.sleep(0)  # the card's task queues the answer and wakes the transfer...
    assert device.reader.bulk_in_pending
    parked.cancel()  # ...which is unlinked before it runs
    with pytest.raises(asyncio.CancelledError):
        await parked
    assert await receive(device) == RDR_to_PC_DataBlock(0, 1, ACTIVE, abData=OK)


async def test_parked_in_transfers_complete_in_the_order_they_were_submitted() -> None:
    device = make_device()
    first = asyncio.create_task(device.transfer_in(BULK_IN, 64))
    second = asyncio.create_task(device.transfer_in(BULK_IN, 64))
    await run_ready_tasks()
    await send(device, PC_to_RDR_GetSlotStatus(0, 1))
    assert decode_response(await first) == RDR_to_PC_SlotStatus(0, 1, ICCStatus.NOT_PRESENT)
    await run_ready_tasks()
    assert not second.done()
    second.cancel()


async def test_a_long_answer_is_read_in_64_byte_transfers_without_a_zero_length_one() -> None:
    device = make_device()
    await powered(device, MemoryCard(respond=lambda apdu: bytes(100) + OK))
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    await run_ready_tasks()
    pieces = [await device.transfer_in(BULK_IN, 64), await device.transfer_in(BULK_IN, 64)]
    assert [len(p) for p in pieces] == [64, 48]
    assert decode_response(b"".join(pieces)) == RDR_to_PC_DataBlock(
        0, 1, ACTIVE, abData=bytes(100) + OK
    )


async def test_a_message_that_fills_a_read_exactly_is_not_followed_by_a_zero_length_one() -> None:
    device = make_device()
    await powered(device, MemoryCard(respond=lambda apdu: bytes(52) + OK))  # 10 + 54 = 64
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    await run_ready_tasks()
    assert len(await device.transfer_in(BULK_IN, 64)) == 64
    stray = asyncio.create_task(device.transfer_in(BULK_IN, 64))
    await run_ready_tasks()
    assert not stray.done()  # parked for the next answer, not completed empty
    await send(device, PC_to_RDR_GetSlotStatus(0, 2))
    assert decode_response(await stray) == RDR_to_PC_SlotStatus(0, 2, ACTIVE)


async def test_time_extensions_reach_the_host_while_the_card_is_slow() -> None:
    device = make_device(time_extension_interval=0.01)
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 4, SELECT))
    extension = RDR_to_PC_DataBlock(0, 4, ACTIVE, CommandStatus.TIME_EXTENSION, 1)
    assert await receive(device) == extension
    assert await receive(device) == extension
    card.gate.set_result(OK)
    assert await receive(device) == RDR_to_PC_DataBlock(0, 4, ACTIVE, abData=OK)


async def test_card_removed_mid_apdu_answers_the_parked_read_and_stops_the_card() -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 5, SELECT))
    reading = asyncio.create_task(device.transfer_in(BULK_IN, 65556))
    await run_ready_tasks()
    device.remove_card()
    assert await reading == bytes.fromhex("80 00000000 00 05 42 FE 00")
    await run_ready_tasks()
    assert card.cancelled
    assert device.card is None
    assert await device.transfer_in(INTERRUPT_IN, 8) == bytes.fromhex("50 02")


async def test_a_card_that_raises_is_reported_mute() -> None:
    def broken(apdu: bytes) -> bytes:
        raise RuntimeError("card fell over")

    device = make_device()
    await powered(device, MemoryCard(respond=broken))
    await send(device, PC_to_RDR_XfrBlock(0, 6, SELECT))
    assert await receive(device) == RDR_to_PC_DataBlock(
        0, 6, ACTIVE, CommandStatus.FAILED, SlotError.ICC_MUTE
    )


async def test_power_cycles_reset_the_card() -> None:
    device = make_device()
    card = await powered(device)
    assert card.resets == 1
    await send(device, PC_to_RDR_IccPowerOff(0, 1))
    await receive(device, 10)
    assert card.resets == 2


async def test_an_oversized_message_stalls_its_transfer_and_the_next_one_works() -> None:
    device = make_device()
    with pytest.raises(Stall, match="dwLength"):
        await device.transfer_out(BULK_OUT, bytes.fromhex("6F FFFFFFFF 00 01 000000"))
    await send(device, PC_to_RDR_GetSlotStatus(0, 2))
    assert await receive(device, 10) == RDR_to_PC_SlotStatus(0, 2, ICCStatus.NOT_PRESENT)


async def test_an_apdu_before_an_oversized_header_reaches_the_card_though_the_transfer_stalls() -> (
    None
):
    device = make_device()
    card = await powered(device)
    wire = encode(PC_to_RDR_XfrBlock(0, 1, SELECT)) + bytes.fromhex("6F FFFFFFFF 00 02 000000")
    with pytest.raises(Stall, match="dwLength"):
        await device.transfer_out(BULK_OUT, wire)
    assert await receive(device) == RDR_to_PC_DataBlock(0, 1, ACTIVE, abData=OK)
    assert list(card.apdus) == [SELECT]


@pytest.mark.parametrize(
    "setup",
    [SetupPacket(0x21, 1, 0x0200, 0, 0), SetupPacket(0x00, 9, 1, 0, 0)],
    ids=["abort", "set-configuration"],
)
async def test_ep0_requests_that_end_the_apdu_stop_the_card(setup: SetupPacket) -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    await run_ready_tasks()
    assert await device.control(setup, b"") == b""
    await run_ready_tasks()
    assert card.cancelled


async def test_endpoints_the_reader_lacks_and_impossible_lengths_stall() -> None:
    device = make_device()
    with pytest.raises(Stall):
        await device.transfer_in(0x83, 64)
    with pytest.raises(Stall):
        await device.transfer_out(0x02, b"x")
    with pytest.raises(Stall):
        await device.transfer_in(INTERRUPT_IN, 1)
    assert await device.transfer_in(BULK_IN, 0) == b""


async def test_a_bad_atr_is_refused_and_the_slot_stays_empty() -> None:
    device = make_device()
    with pytest.raises(CCIDLocalProtocolError, match=r"ATR\.TS=0x00"):
        device.insert_card(MemoryCard(atr=b"\x00\x00"))
    assert device.card is None
    assert device.slot_state is SlotState.ABSENT


async def test_usb_reset_stops_the_card_and_drops_what_the_host_did_not_read() -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    await run_ready_tasks()
    device.reset()
    await run_ready_tasks()
    assert card.cancelled
    assert device.slot_state is SlotState.PRESENT_INACTIVE
    await send(device, PC_to_RDR_GetSlotStatus(0, 2))
    assert await receive(device, 10) == RDR_to_PC_SlotStatus(0, 2, ICCStatus.PRESENT_INACTIVE)


async def test_aclose_stops_the_card_work() -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    await run_ready_tasks()
    await device.aclose()
    assert card.cancelled


async def test_a_card_that_answers_at_once_has_its_answer_queued_before_the_out_returns() -> None:
    device = make_device()
    card = await powered(device, MemoryCard(respond=lambda apdu: b"\x01" + OK))
    await send(device, PC_to_RDR_XfrBlock(0, 2, SELECT))
    # No task and no loop turn between the XfrBlock and its answer.
    assert device.reader.bulk_in_pending
    assert list(card.apdus) == [SELECT]
    assert await receive(device) == RDR_to_PC_DataBlock(0, 2, ACTIVE, abData=b"\x01" + OK)


class TaskBoundCard(MemoryCard):
    """A card whose transmit needs a task of its own from the start (asyncio.timeout)."""

    start_inline = False

    def __init__(self) -> None:
        super().__init__(respond=self._answer)
        self.in_a_task = False

    async def _answer(self, apdu: bytes) -> bytes:
        async with asyncio.timeout(10):  # needs asyncio.current_task()
            self.in_a_task = asyncio.current_task() is not None
            await asyncio.sleep(0)
            return OK


async def test_a_card_that_says_it_needs_a_task_gets_one() -> None:
    device = make_device()
    card = await powered(device, TaskBoundCard())
    assert isinstance(card, TaskBoundCard)
    await send(device, PC_to_RDR_XfrBlock(0, 3, SELECT))
    assert not card.apdus  # not started inline
    assert await receive(device) == RDR_to_PC_DataBlock(0, 3, ACTIVE, abData=OK)
    assert card.in_a_task


class SteppingCard(MemoryCard):
    """A card that waits on several futures and a bare yield before it answers."""

    def __init__(self) -> None:
        super().__init__(respond=self._answer)
        self.gates: list[asyncio.Future[bytes]] = []

    async def _answer(self, apdu: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        parts = []
        for _ in range(2):
            gate: asyncio.Future[bytes] = loop.create_future()
            self.gates.append(gate)
            parts.append(await gate)
            await asyncio.sleep(0)
        return b"".join(parts) + OK


async def test_a_card_that_waits_several_times_is_resumed_each_time() -> None:
    device = make_device()
    card = await powered(device, SteppingCard())
    assert isinstance(card, SteppingCard)
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    reading = asyncio.create_task(receive(device))
    card.gates[0].set_result(b"\x01")  # the first wait began inline, in the bulk OUT
    await run_ready_tasks()
    card.gates[1].set_result(b"\x02")
    assert await reading == RDR_to_PC_DataBlock(0, 1, ACTIVE, abData=b"\x01\x02" + OK)


async def test_a_card_removed_once_it_has_answered_but_before_it_resumed_is_cancelled() -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 5, SELECT))
    card.gate.set_result(OK)
    device.remove_card()  # in the same loop turn: the card's resumption is due, not run
    assert await device.transfer_in(BULK_IN, 65556) == bytes.fromhex("80 00000000 00 05 42 FE 00")
    await run_ready_tasks()
    assert card.cancelled


async def test_aclose_waits_for_the_card_it_stops() -> None:
    device = make_device()
    card = await powered(device, GatedCard())
    assert isinstance(card, GatedCard)
    await send(device, PC_to_RDR_XfrBlock(0, 1, SELECT))
    await device.aclose()
    assert card.cancelled
