"""A USB/IP importer that floods URBs past the pending limit is refused a few times, then cut
off; a well-behaved one never comes near the budget; no call handles more than a batch."""

from __future__ import annotations

import asyncio
import struct

import pytest

from ccid.usb import SetupPacket
from ccid.usbip import (
    CmdSubmit,
    CmdUnlink,
    Direction,
    OpReqImport,
    UnlinkRequested,
    URBRefused,
    URBStatus,
    URBSubmitted,
    USBIPRemoteProtocolError,
    USBIPServerConnection,
    USBIPServerState,
    encode_usbip,
    import_device,
    serve_usbip,
)
from ccid.usbip.connection import DEFAULT_MAX_REFUSED_URBS, DEFAULT_MAX_REQUESTS

from .usbip_fake import BULK_IN, BULK_OUT, INTERRUPT_IN, FakeDevice
from .usbip_fake import EXPORTED as DEVICE

GET_DEVICE_DESCRIPTOR = SetupPacket(0x80, 6, 0x0100, 0, 18)
RET_SUBMIT = struct.Struct(">IIIIIi")  # command, seqnum, devid, direction, ep, status


def imported(**limits: int) -> USBIPServerConnection:
    conn = USBIPServerConnection(**limits)
    conn.receive_data(encode_usbip(OpReqImport("1-1")))
    conn.accept_import(DEVICE)
    conn.data_to_send()
    return conn


def bulk_in(seqnum: int, devid: int = DEVICE.devid) -> CmdSubmit:
    return CmdSubmit(seqnum, devid, Direction.IN, BULK_IN & 0x0F, transfer_buffer_length=64)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes."""
    received = bytearray()
    while chunk := await reader.read(65536):
        received += chunk
    return bytes(received)


def statuses(wire: bytes) -> list[int]:
    """The status of each bare RET_SUBMIT in ``wire``."""
    return [RET_SUBMIT.unpack_from(wire, at)[5] for at in range(0, len(wire), 48)]


def test_a_flooder_gets_enomem_until_its_budget_is_spent_then_a_protocol_error() -> None:
    conn = imported(max_pending_urbs=2, max_refused_urbs=3)
    conn.receive_data(encode_usbip(bulk_in(1)) + encode_usbip(bulk_in(2)))
    refused = conn.receive_data(b"".join(encode_usbip(bulk_in(seqnum)) for seqnum in (3, 4, 5)))
    assert [type(event) for event in refused] == [URBRefused] * 3
    assert statuses(conn.data_to_send()) == [URBStatus.ENOMEM] * 3
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        conn.receive_data(encode_usbip(bulk_in(6)))
    assert (caught.value.field, caught.value.value) == ("CMD_SUBMIT.seqnum", 6)
    assert "max_pending_urbs=2" in str(caught.value)
    assert "max_refused_urbs=3" in str(caught.value)
    assert conn.state is USBIPServerState.CLOSED
    assert conn.data_to_send() == b""


def test_libccids_traffic_with_unlink_races_never_touches_the_budget() -> None:
    """libccid's pattern through vhci: the interrupt IN parked, bulk OUT, bulk IN, ep0 now and
    then, and unlinks that lose the race to the answer (legal: Linux answers them 0)."""
    conn = imported(max_pending_urbs=4, max_refused_urbs=0)
    seqnum = 1
    conn.receive_data(
        encode_usbip(CmdSubmit(seqnum, DEVICE.devid, Direction.IN, INTERRUPT_IN & 0x0F))
    )
    for _ in range(2000):
        xfr_block = b"\x6f" + bytes(9)
        out = CmdSubmit(
            seqnum + 1, DEVICE.devid, Direction.OUT, BULK_OUT, transfer_buffer_length=10,
            data=xfr_block,
        )  # fmt: skip
        control = CmdSubmit(
            seqnum + 3, DEVICE.devid, Direction.IN, 0, transfer_buffer_length=18,
            setup=GET_DEVICE_DESCRIPTOR.to_bytes(),
        )  # fmt: skip
        conn.receive_data(
            encode_usbip(out) + encode_usbip(bulk_in(seqnum + 2)) + encode_usbip(control)
        )
        conn.complete(seqnum + 1)
        conn.complete(seqnum + 2, data=b"\x80" + bytes(9))
        conn.complete(seqnum + 3, data=bytes(18))
        late = conn.receive_data(encode_usbip(CmdUnlink(seqnum + 4, DEVICE.devid, seqnum + 2)))
        assert late == [UnlinkRequested(seqnum + 4, seqnum + 2, cancelled=False)]
        conn.data_to_send()
        seqnum += 4
    assert conn.refused == 0
    assert conn.state is USBIPServerState.URB


def test_one_call_handles_one_batch_and_keeps_the_rest_buffered() -> None:
    conn = imported(max_pending_urbs=4096)
    wire = b"".join(encode_usbip(bulk_in(seqnum)) for seqnum in range(1, 1366))  # one 64 KiB read
    batches = [conn.receive_data(wire)]
    while conn.pending:
        batches.append(conn.receive_data(b""))
    assert max(len(batch) for batch in batches) == DEFAULT_MAX_REQUESTS
    assert len(batches) == -(-1365 // DEFAULT_MAX_REQUESTS)
    submitted = [event for batch in batches for event in batch]
    assert all(isinstance(event, URBSubmitted) for event in submitted)
    assert [event.submit.seqnum for event in submitted if isinstance(event, URBSubmitted)] == list(
        range(1, 1366)
    )
    assert conn.buffered == 0


async def test_the_server_cuts_a_flooder_off_after_its_budget_and_serves_the_others() -> None:
    flooded, spared = FakeDevice(), FakeDevice(id_product=0x4434)
    async with (
        await serve_usbip([flooded, spared], port=0, max_pending_urbs=8) as server,
        await import_device("1-2", port=server.port) as good,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode_usbip(OpReqImport("1-1")))
        await reader.readexactly(8 + 312)
        # The pending limit, the budget of refusals, and one more: all in one write.
        flood = (encode_usbip(bulk_in(seqnum, 0x00010001)) for seqnum in range(1, 8 + 16 + 2))
        writer.write(b"".join(flood))
        replies = await asyncio.wait_for(read_until_closed(reader), 10)
        writer.close()
        # The refused ones were answered -12, the one past the budget closed the connection.
        assert statuses(replies) == [URBStatus.ENOMEM] * DEFAULT_MAX_REFUSED_URBS
        await server.exports["1-1"].wait_released()
        assert flooded.resets == 1
        assert await good.bulk_out(BULK_OUT, b"ping") == 4
        assert await good.bulk_in(BULK_IN, 64) == b"ping"
