"""ccid-passthru under load and abuse: many clients, killed clients, connection churn."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys

import pytest

import vscard
from ccid.codec import decode_response, encode
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.messages import PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock, RDR_to_PC_DataBlock
from ccid.usb import SetupPacket
from ccid.usbip import USBIPClient, USBIPConnectionClosedError, import_device, list_devices

from .passthru_process import ROOT, PassthruProcess, running_passthru

ATR = bytes.fromhex("3B8081 31FE458B".replace(" ", ""))


async def echo_card(apdu: bytes) -> bytes:
    return apdu[:2] + b"\x90\x00"


async def connect_with_card(port: int) -> vscard.Client:
    client = await vscard.connect("127.0.0.1", port)
    reader = await client.add_reader("load", transmit=echo_card)
    await reader.insert(ATR)
    return client


async def devices(passthru: PassthruProcess, count: int) -> None:
    """Wait until the USB/IP side lists ``count`` devices (each ReaderAdd lands in order)."""
    # Another process: there is nothing to await on but its answers.
    while len(await list_devices(port=passthru.usbip_port)) != count:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def settled_fds(passthru: PassthruProcess) -> int:
    """The process's open descriptors once three samples in a row agree."""
    samples = [passthru.open_fds()]
    while len(samples) < 3 or len(set(samples[-3:])) > 1:
        await asyncio.sleep(0.05)
        samples.append(passthru.open_fds())
    return samples[-1]


async def attach_and_power(busid: str, port: int) -> USBIPClient:
    client = await import_device(busid, port=port)
    await client.control(SetupPacket(0x00, 9, 1, 0, 0))
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_IccPowerOn(0, 0)))
    await client.transfer_in(BULK_IN, 65556)
    return client


async def xfr(client: USBIPClient, seq: int, apdu: bytes) -> bytes:
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_XfrBlock(0, seq, apdu)))
    while True:
        answer = decode_response(await client.transfer_in(BULK_IN, 65556))
        assert isinstance(answer, RDR_to_PC_DataBlock)
        if not answer.bStatus & 0x80:
            return answer.abData


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("usbip") is None, reason="needs Debian's usbip tool")
async def test_a_hundred_clients_each_get_a_device_usbip_lists() -> None:
    async with running_passthru(["--max-clients-per-source", "128"]) as passthru:
        clients = await asyncio.gather(
            *(connect_with_card(passthru.vscard_port) for _ in range(100))
        )
        await asyncio.wait_for(devices(passthru, 100), 30)
        tool = await asyncio.create_subprocess_exec(
            "usbip", "--tcp-port", str(passthru.usbip_port), "list", "-r", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(tool.communicate(), 30)
        assert tool.returncode == 0, output
        assert output.decode().count("(08e6:4433)") == 100
        await asyncio.gather(*(client.close() for client in clients))
        await asyncio.wait_for(devices(passthru, 0), 30)


STUCK_CLIENT = """
import asyncio, logging, sys, structlog, vscard
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
async def stuck(apdu):
    print("apdu", flush=True)
    await asyncio.Event().wait()
async def main():
    client = await vscard.connect("127.0.0.1", int(sys.argv[1]))
    reader = await client.add_reader("doomed", transmit=stuck)
    await reader.insert(bytes.fromhex(sys.argv[2]))
    print("ready", flush=True)
    await client.wait_closed()
asyncio.run(main())
"""


async def test_clients_killed_mid_apdu_free_their_devices_and_spare_the_others() -> None:
    async with running_passthru() as passthru:
        survivor = await connect_with_card(passthru.vscard_port)
        await devices(passthru, 1)
        (kept,) = [d.busid for d in await list_devices(port=passthru.usbip_port)]
        doomed = []
        for _ in range(3):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", STUCK_CLIENT, str(passthru.vscard_port), ATR.hex(),
                stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 20) == b"ready\n"
            doomed.append(process)
        await asyncio.wait_for(devices(passthru, 4), 20)
        busids = [d.busid for d in await list_devices(port=passthru.usbip_port)]
        importers = [await attach_and_power(b, passthru.usbip_port) for b in busids if b != kept]
        # Each doomed card is now working on an APDU that will never be answered.
        pending = [asyncio.create_task(xfr(c, 1, b"\x00\xb0\x00\x00\x00")) for c in importers]
        for process in doomed:
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 20) == b"apdu\n"
            process.send_signal(signal.SIGKILL)
            await process.wait()
        # Their devices are unplugged: the importers are cut off, the device list shrinks.
        for task in pending:
            with pytest.raises((USBIPConnectionClosedError, AssertionError)):
                await asyncio.wait_for(task, 20)
        await asyncio.wait_for(devices(passthru, 1), 20)
        # The survivor's reader still works end to end.
        client = await attach_and_power(kept, passthru.usbip_port)
        assert await xfr(client, 1, b"\x00\xca\x00\x00") == b"\x00\xca\x90\x00"
        await client.close()
        await survivor.close()


async def test_a_thousand_connect_disconnect_cycles_leave_fds_and_memory_flat() -> None:
    async with running_passthru() as passthru:

        async def cycle() -> None:
            client = await connect_with_card(passthru.vscard_port)
            await client.close()

        for _ in range(100):  # warm up: caches, allocator arenas
            await cycle()
        await devices(passthru, 0)
        fds, rss = await settled_fds(passthru), passthru.rss_kib()
        for _ in range(1000):
            await cycle()
        await devices(passthru, 0)
        # Sockets of the last cycles (and of our own probes) close a moment after the client.
        async with asyncio.timeout(10):
            while passthru.open_fds() > fds:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)
        growth = passthru.rss_kib() - rss
        assert growth < 4096, f"RSS grew {growth} KiB over 1000 connections"
