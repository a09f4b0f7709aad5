"""The asyncio server and client on loopback, exporting a fake device: what an importer sees,
URBs parked and unlinked, detach and re-import, limits, and hostile connections."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from ccid.usb import SetupPacket, Stall
from ccid.usbip import (
    CmdSubmit,
    Direction,
    ImportRefusedError,
    OpReqImport,
    OpStatus,
    RetSubmit,
    URBError,
    URBStatus,
    USBIPClient,
    USBIPServer,
    encode_usbip,
    import_device,
    list_devices,
    serve_usbip,
)

from .usbip_fake import BULK_IN, BULK_OUT, DEVICE_DESCRIPTOR, INTERRUPT_IN, FakeDevice

DEVID_1_1 = 0x00010001
DEVICE_QUALIFIER = SetupPacket(0x80, 6, 0x0600, 0, 10)


def get_descriptor(kind: int, length: int) -> SetupPacket:
    return SetupPacket(0x80, 6, kind << 8, 0, length)


@dataclass
class Rig:
    server: USBIPServer
    first: FakeDevice
    second: FakeDevice

    async def import_(self, busid: str = "1-1") -> USBIPClient:
        return await import_device(busid, port=self.server.port, timeout=5)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    first, second = FakeDevice(), FakeDevice(id_product=0x4434)
    async with await serve_usbip([first, second], port=0) as server:
        yield Rig(server, first, second)


async def raw_import(
    port: int, busid: str = "1-1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_usbip(OpReqImport(busid)))
    reply = await asyncio.wait_for(reader.readexactly(8 + 312), 5)
    assert reply[:8] == bytes.fromhex("0111 0003 00000000")
    return reader, writer


# --- OP phase -------------------------------------------------------------------------------


async def test_list_shows_every_device_with_its_ids_and_interface_class(rig: Rig) -> None:
    devices = await list_devices(port=rig.server.port, timeout=5)
    assert [(d.busid, d.idVendor, d.idProduct) for d in devices] == [
        ("1-1", 0x08E6, 0x4433),
        ("1-2", 0x08E6, 0x4434),
    ]
    assert [i.bInterfaceClass for i in devices[0].interfaces] == [0x0B]


async def test_import_of_an_unknown_busid_is_refused_with_status_4(rig: Rig) -> None:
    with pytest.raises(ImportRefusedError) as caught:
        await rig.import_("7-7")
    assert caught.value.status == OpStatus.NODEV


async def test_a_device_held_by_one_importer_is_busy_for_another(rig: Rig) -> None:
    async with await rig.import_() as holder:
        assert holder.device.busid == "1-1"
        with pytest.raises(ImportRefusedError) as caught:
            await rig.import_()
        assert caught.value.status == OpStatus.DEV_BUSY
        assert rig.server.exports["1-1"].importer is not None


# --- URBs -----------------------------------------------------------------------------------


async def test_descriptors_come_at_every_length_asked_and_never_longer(rig: Rig) -> None:
    async with await rig.import_() as client:
        assert await client.control(get_descriptor(1, 64)) == DEVICE_DESCRIPTOR
        assert await client.control(get_descriptor(1, 18)) == DEVICE_DESCRIPTOR
        assert await client.control(get_descriptor(1, 8)) == DEVICE_DESCRIPTOR[:8]
        config = await client.control(get_descriptor(2, 9))
        total = int.from_bytes(config[2:4], "little")
        assert len(await client.control(get_descriptor(2, total))) == total
        assert await client.control(SetupPacket(0x00, 9, 1, 0, 0)) == b""
        assert rig.first.configuration == 1


async def test_a_stalled_request_fails_with_status_minus_32_and_the_device_goes_on(
    rig: Rig,
) -> None:
    async with await rig.import_() as client:
        with pytest.raises(URBError) as caught:
            await client.control(DEVICE_QUALIFIER)
        assert caught.value.status == URBStatus.EPIPE
        assert await client.control(SetupPacket(0x80, 0, 0, 0, 2)) == b"\x00\x00"


async def test_bulk_out_reports_bytes_accepted_and_bulk_in_returns_at_most_what_was_asked(
    rig: Rig,
) -> None:
    async with await rig.import_() as client:
        assert await client.bulk_out(BULK_OUT, b"0123456789") == 10
        assert await client.bulk_in(BULK_IN, 4) == b"0123"
        # The rest waits for the next URB instead of overflowing this one.
        assert await client.bulk_in(BULK_IN, 64) == b"456789"


async def test_an_in_urb_is_parked_until_data_exists_without_blocking_other_urbs(
    rig: Rig,
) -> None:
    async with await rig.import_() as client:
        parked = client.submit_in(BULK_IN, 64)
        # A later URB is answered while the first stays pending.
        assert await client.control(get_descriptor(1, 18)) == DEVICE_DESCRIPTOR
        assert not parked.done()
        rig.first.push(BULK_IN, b"late data")
        ret = await parked.result()
        assert (ret.status, ret.data) == (0, b"late data")


async def test_interrupt_in_completes_when_the_device_notifies(rig: Rig) -> None:
    async with await rig.import_() as client:
        waiting = asyncio.create_task(client.interrupt_in(INTERRUPT_IN, 8))
        await client.control(get_descriptor(1, 18))  # the interrupt URB is in by now
        rig.first.push(INTERRUPT_IN, b"\x50\x03")
        assert await waiting == b"\x50\x03"


# --- unlink ---------------------------------------------------------------------------------


async def test_unlinking_a_parked_urb_answers_minus_104_and_loses_no_data(rig: Rig) -> None:
    async with await rig.import_() as client:
        victim = client.submit_in(BULK_IN, 64)
        assert await client.unlink(victim) == URBStatus.ECONNRESET
        with pytest.raises(URBError) as caught:
            await victim.result()
        assert caught.value.status == URBStatus.ECONNRESET
        rig.first.push(BULK_IN, b"for the next URB")
        assert await client.bulk_in(BULK_IN, 64) == b"for the next URB"
        # No RET_SUBMIT came for the victim: the client would have closed on it, as vhci does.
        assert client.error is None
        assert not client.closed


async def test_unlinking_an_answered_urb_answers_zero(rig: Rig) -> None:
    async with await rig.import_() as client:
        urb = client.submit_in(BULK_IN, 64)
        rig.first.push(BULK_IN, b"data")
        assert (await urb.result()).data == b"data"
        assert await client.unlink(urb) == 0


async def test_a_transfer_that_times_out_unlinks_its_urb(rig: Rig) -> None:
    async with await rig.import_() as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await client.bulk_in(BULK_IN, 64)
        # The unlink went out before this request, so the server has cancelled the URB.
        await client.control(get_descriptor(1, 18))
        rig.first.push(BULK_IN, b"kept")
        assert await client.bulk_in(BULK_IN, 64) == b"kept"
        assert client.error is None


async def test_unlinking_an_out_urb_in_progress_cancels_it(rig: Rig) -> None:
    rig.first.out_gate.clear()
    async with await rig.import_() as client:
        victim = client.submit_out(BULK_OUT, b"held")
        assert await client.unlink(victim) == URBStatus.ECONNRESET
        rig.first.out_gate.set()
        assert await client.bulk_out(BULK_OUT, b"next") == 4
        assert rig.first.received == [(BULK_OUT, b"next")]


# --- detach, removal, limits ------------------------------------------------------------------


async def test_tcp_close_cancels_urbs_resets_the_device_and_allows_a_new_import(
    rig: Rig,
) -> None:
    export = rig.server.exports["1-1"]
    client = await rig.import_()
    client.submit_in(BULK_IN, 64)
    client.submit_in(INTERRUPT_IN, 8)
    await client.control(SetupPacket(0x00, 9, 1, 0, 0))
    await client.close()
    await export.wait_released()
    assert rig.first.resets == 1
    assert rig.first.configuration == 0
    async with await rig.import_() as again:
        rig.first.push(BULK_IN, b"fresh")
        assert await again.bulk_in(BULK_IN, 64) == b"fresh"
    assert export.imports == 2


async def test_removing_a_device_disconnects_its_importer(rig: Rig) -> None:
    client = await rig.import_("1-2")
    parked = client.submit_in(BULK_IN, 64)
    await rig.server.remove_device("1-2")
    await client.wait_closed()
    assert rig.second.resets == 1
    with pytest.raises(Exception, match="closed"):
        await parked.result()
    assert [d.busid for d in await list_devices(port=rig.server.port)] == ["1-1"]
    with pytest.raises(ImportRefusedError):
        await rig.import_("1-2")


async def test_devices_added_later_are_listed_and_importable(rig: Rig) -> None:
    third = FakeDevice(id_product=0x4435)
    export = rig.server.add_device(third, busid="3-1")
    assert export.record.devid == 0x00010003
    async with await rig.import_("3-1") as client:
        assert client.device.idProduct == 0x4435
    with pytest.raises(ValueError, match="already exported"):
        rig.server.add_device(FakeDevice(), busid="3-1")


async def test_many_devices_and_connections_work_at_once(rig: Rig) -> None:
    async def echo(client: USBIPClient, rounds: int) -> None:
        for index in range(rounds):
            payload = f"{client.device.busid}:{index}".encode()
            assert await client.bulk_out(BULK_OUT, payload) == len(payload)
            assert await client.bulk_in(BULK_IN, 64) == payload

    async with await rig.import_("1-1") as one, await rig.import_("1-2") as two:
        listing = list_devices(port=rig.server.port)
        *_, devices = await asyncio.gather(echo(one, 50), echo(two, 50), listing)
        assert len(devices) == 2
    assert rig.server.connections <= 2


async def test_urbs_past_the_pending_limit_fail_with_enomem() -> None:
    device = FakeDevice()
    async with await serve_usbip([device], port=0, max_pending_urbs=2) as server:
        client = await import_device("1-1", port=server.port)
        client.submit_in(BULK_IN, 8)
        client.submit_in(INTERRUPT_IN, 8)
        with pytest.raises(URBError) as caught:
            await client.control(get_descriptor(1, 18))
        assert caught.value.status == URBStatus.ENOMEM
        await client.close()


async def test_an_in_urb_asking_2_gib_gets_at_most_max_transfer_length_bytes() -> None:
    device = FakeDevice()
    async with await serve_usbip([device], port=0, max_transfer_length=16) as server:
        client = await import_device("1-1", port=server.port)
        device.push(BULK_IN, bytes(range(40)))
        assert await client.bulk_in(BULK_IN, 0x7FFFFFFF) == bytes(range(16))
        assert await client.bulk_in(BULK_IN, 0x7FFFFFFF) == bytes(range(16, 32))
        await client.close()


async def test_connections_past_the_limit_are_closed_at_once() -> None:
    async with await serve_usbip([FakeDevice()], port=0, max_connections=1) as server:
        holder = await import_device("1-1", port=server.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await holder.close()


async def test_a_connection_that_never_asks_is_closed_after_the_op_timeout() -> None:
    async with await serve_usbip([FakeDevice()], port=0, op_timeout=0.05) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_sockets_have_nagle_off_and_the_server_probes_idle_importers(rig: Rig) -> None:
    async with await rig.import_() as client:
        assert client._writer.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        (session,) = rig.server._sessions
        sock = session._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)


async def test_closing_the_server_detaches_every_device(rig: Rig) -> None:
    client = await rig.import_()
    rig.server.close()
    await rig.server.wait_closed()
    await client.wait_closed()
    assert rig.first.resets == 1


# --- usbip-win2 and device faults -----------------------------------------------------------


async def test_usbip_win2_port_reset_and_number_of_packets_minus_one(rig: Rig) -> None:
    reader, writer = await raw_import(rig.server.port)
    # Bulk IN with number_of_packets 0xFFFFFFFF, parked; then the 0x23 port reset.
    writer.write(encode_usbip(CmdSubmit(2, DEVID_1_1, Direction.IN, 2, 0, 64, 0, -1)))
    reset = SetupPacket(0x23, 3, 4, 1, 0).to_bytes()
    writer.write(encode_usbip(CmdSubmit(4, DEVID_1_1, Direction.OUT, 0, 0, 0, 0, -1, setup=reset)))
    flushed = await asyncio.wait_for(reader.readexactly(48), 5)
    answered = await asyncio.wait_for(reader.readexactly(48), 5)
    assert flushed == encode_usbip(RetSubmit(2, URBStatus.ESHUTDOWN))
    assert answered == encode_usbip(RetSubmit(4, 0))
    assert rig.first.resets == 1
    writer.close()


class FaultyDevice(FakeDevice):
    """Breaks the UsbDevice contract: too many IN bytes, exceptions, bad OUT counts."""

    async def transfer_in(self, endpoint: int, length: int) -> bytes:
        return bytes(length + 100)

    async def transfer_out(self, endpoint: int, data: bytes) -> int:
        return len(data) + 1

    async def control(self, setup: SetupPacket, data: bytes) -> bytes:
        if setup.bRequest == 0xEE:
            raise RuntimeError("device bug")
        if setup.bRequest == 0xEF:
            raise Stall
        return bytes(setup.wLength + 1)


async def test_a_faulty_device_never_makes_the_server_break_the_protocol() -> None:
    async with await serve_usbip([FaultyDevice()], port=0) as server:
        client = await import_device("1-1", port=server.port)
        assert await client.bulk_in(BULK_IN, 10) == bytes(10)
        assert await client.control(SetupPacket(0xC0, 1, 0, 0, 4)) == bytes(4)
        with pytest.raises(URBError) as caught:
            await client.control(SetupPacket(0xC0, 0xEE, 0, 0, 4))
        assert caught.value.status == URBStatus.EPROTO
        with pytest.raises(URBError) as caught:
            await client.bulk_out(BULK_OUT, b"abc")
        assert caught.value.status == URBStatus.EPROTO
        assert client.error is None
        await client.close()


class ImpatientDevice(FakeDevice):
    """A device that times its IN transfers out with asyncio.timeout (no start_inline)."""

    async def transfer_in(self, endpoint: int, length: int) -> bytes:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return b"late"
        raise AssertionError("unreachable")


async def test_a_device_may_use_asyncio_timeout_in_its_transfers() -> None:
    # Without start_inline every URB is a task of its own: the device's timeout cancels that
    # task, never the connection's (which would drop the importer).
    async with await serve_usbip([ImpatientDevice()], port=0) as server:
        client = await import_device("1-1", port=server.port)
        assert await client.bulk_in(BULK_IN, 10) == b"late"
        assert await client.bulk_in(BULK_IN, 10) == b"late"
        assert client.error is None
        await client.close()


# --- hostile peers --------------------------------------------------------------------------

URB_BASIC = "00000001 00000009 00010001"


@pytest.mark.parametrize(
    ("urb_phase", "payload"),
    [
        (False, bytes(range(256))),
        (False, bytes.fromhex("0111 8003 00000000") + b"z" * 32),
        (True, bytes.fromhex(URB_BASIC + "00000000 00000003 00000000 7FFFFFFF") + bytes(20)),
        (True, bytes.fromhex(URB_BASIC + "00000001 00000002 00000000 FFFFFFFF") + bytes(20)),
        (True, bytes.fromhex("00000001 00000009 00020002 00000001 00000002") + bytes(28)),
        (True, encode_usbip(RetSubmit(1, 0))),
        (True, bytes.fromhex("000000FF") + bytes(44)),
    ],
    ids=[
        "garbage",
        "busid-without-nul",
        "out-urb-of-2GiB",
        "in-urb-of-4GiB",
        "another-devid",
        "ret-submit-from-client",
        "unknown-command",
    ],
)
async def test_a_hostile_connection_is_dropped_while_another_keeps_working(
    rig: Rig, urb_phase: bool, payload: bytes
) -> None:
    async with await rig.import_("1-2") as good:
        parked = good.submit_in(BULK_IN, 64)
        if urb_phase:
            reader, writer = await raw_import(rig.server.port)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
        writer.write(payload)
        # Dropped at once, without a reply, and without the 2 GiB of data ever being sent.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        if urb_phase:
            await rig.server.exports["1-1"].wait_released()
            assert rig.first.resets == 1
        rig.second.push(BULK_IN, b"still here")
        assert (await parked.result()).data == b"still here"
        assert await good.bulk_out(BULK_OUT, b"ping") == 4
        assert await good.bulk_in(BULK_IN, 64) == b"ping"
