"""Debian's ``usbip`` tool against our USB/IP server on loopback.

``usbip list -r`` is a complete peer for OP_REQ_DEVLIST. ``usbip attach`` runs the whole
OP_REQ_IMPORT exchange (it checks version, code, status and the echoed busid) and only then
opens the vhci-hcd driver to hand the socket to the kernel; this host has no vhci-hcd (no kernel
modules at all), so the tool stops there with "open vhci_driver" and closes the socket. The
import is therefore asserted on our side: accepted, then detached cleanly with the device reset.

The exported device is the fake from the unit tests (08E6:4433, interface class 0x0B); the
last test exports the real CCID reader model (:class:`ccid.device.CCIDDevice`) the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

from ccid.usbip import USBIPServer, import_device, serve_usbip

from ..ccid.usbip_fake import FakeDevice

#: Debian packages this module needs on the host.
HOST_PACKAGES: Final[tuple[str, ...]] = ("usbip",)

USBIP: Final = Path("/usr/sbin/usbip")
#: Present when vhci-hcd is loaded: `usbip attach` would then plug our device into this host.
VHCI: Final = Path("/sys/devices/platform/vhci_hcd.0")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not USBIP.exists(), reason=f"{USBIP} missing (apt-get install usbip)"),
]

needs_no_vhci = pytest.mark.skipif(
    VHCI.exists(), reason="vhci-hcd is loaded: attach would plug the fake device into this host"
)


@pytest.fixture
async def server() -> AsyncIterator[tuple[USBIPServer, FakeDevice]]:
    device = FakeDevice()
    async with await serve_usbip([device, FakeDevice(id_product=0x4434)], port=0) as running:
        yield running, device


async def usbip(port: int, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(USBIP),
        "--tcp-port",
        str(port),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_usbip_list_shows_our_devices_with_vid_pid_and_class(
    server: tuple[USBIPServer, FakeDevice],
) -> None:
    running, _ = server
    rc, out, err = await usbip(running.port, "list", "-r", "127.0.0.1")
    assert rc == 0, err
    lines = [line.strip() for line in out.splitlines()]
    first = next(line for line in lines if line.startswith("1-1:"))
    assert first.endswith("(08e6:4433)")
    assert any(line.startswith("1-2:") and line.endswith("(08e6:4434)") for line in lines)
    assert ": /vscard/usb1/1-1" in lines
    # Each device's one interface, class 0x0B (`:  0 - Chip/SmartCard / ... (0b/00/00)`).
    interfaces = [line for line in lines if line.endswith("(0b/00/00)")]
    assert len(interfaces) == 2
    assert all("0 - Chip/SmartCard" in line for line in interfaces)


@needs_no_vhci
async def test_usbip_attach_completes_the_import_and_stops_only_at_vhci(
    server: tuple[USBIPServer, FakeDevice],
) -> None:
    running, device = server
    export = running.exports["1-1"]
    rc, _, err = await usbip(running.port, "attach", "-r", "127.0.0.1", "-b", "1-1")
    # The tool accepted our OP_REP_IMPORT (no "Attach Request ... failed", no
    # "recv different busid") and failed only when it looked for the vhci driver.
    assert rc == 1
    assert "usbip: error: open vhci_driver" in err
    assert "Attach Request" not in err
    assert "different busid" not in err
    await asyncio.wait_for(export.wait_imported(1), 5)
    # It closed the socket on its way out: the device is released and reset, ready again.
    await asyncio.wait_for(export.wait_released(), 5)
    assert device.resets == 1
    rc, _, err = await usbip(running.port, "attach", "-r", "127.0.0.1", "-b", "1-1")
    assert "open vhci_driver" in err
    await asyncio.wait_for(export.wait_imported(2), 5)


async def test_usbip_attach_of_an_unknown_busid_says_device_not_found(
    server: tuple[USBIPServer, FakeDevice],
) -> None:
    running, _ = server
    rc, _, err = await usbip(running.port, "attach", "-r", "127.0.0.1", "-b", "9-9")
    assert rc == 1
    assert "Attach Request for 9-9 failed - Device not found" in err


async def test_usbip_attach_of_a_device_in_use_says_device_busy(
    server: tuple[USBIPServer, FakeDevice],
) -> None:
    running, _ = server
    async with await import_device("1-1", port=running.port):
        rc, _, err = await usbip(running.port, "attach", "-r", "127.0.0.1", "-b", "1-1")
    assert rc == 1
    assert "Attach Request for 1-1 failed - Device busy (exported)" in err


async def test_usbip_lists_and_imports_the_ccid_reader_model() -> None:
    device = pytest.importorskip("ccid.device").CCIDDevice()
    async with await serve_usbip([device], port=0) as running:
        rc, out, err = await usbip(running.port, "list", "-r", "127.0.0.1")
        assert rc == 0, err
        lines = [line.strip() for line in out.splitlines()]
        assert "1-1: Gemalto (was Gemplus) : GemPC433-Swap (08e6:4433)" in lines
        assert [line for line in lines if line.endswith("(0b/00/00)")]
        if VHCI.exists():
            return  # attach would plug it into this host: the import is covered above
        rc, _, err = await usbip(running.port, "attach", "-r", "127.0.0.1", "-b", "1-1")
        assert "usbip: error: open vhci_driver" in err
        export = running.exports["1-1"]
        await asyncio.wait_for(export.wait_imported(1), 5)
        await asyncio.wait_for(export.wait_released(), 5)
