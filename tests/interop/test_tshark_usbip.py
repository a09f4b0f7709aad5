"""tshark (Debian 12's Wireshark 4.0) decodes a capture of a whole session with our reader.

The session runs on loopback, our USB/IP client against our server exporting a
:class:`ccid.CCIDDevice` with a :class:`ccid.MemoryCard`: OP_REQ_DEVLIST, OP_REQ_IMPORT, the
kernel's enumeration after ``usbip attach`` (GET_DESCRIPTOR at the wLengths hub.c and message.c
use, SET_CONFIGURATION), pcscd/libccid's open (strings, GetSlotStatus twice, the Gemalto Escape,
a parked interrupt IN), a card insertion, IccPowerOn, XfrBlocks (responses of 1,024 and 65,282
bytes, one APDU slow enough for a time extension), one command and one response split over
16 KiB transfers as libusb splits them when the host controller has no scatter-gather, and
IccPowerOff and pcscd's exit (the interrupt URB unlinked). ``tshark -i lo`` records it all.

What tshark 4.0.17 makes of it (the reasons are in Wireshark's packet-usb.c, packet-usbip.c
and packet-usb-ccid.c of that version):

- ``usbip`` is registered for "decode as" only, on no port (not even 3240):
  ``-d tcp.port==P,usbip``. It then frames every message, names the OP requests and replies and
  every CMD_SUBMIT, RET_SUBMIT, CMD_UNLINK and RET_UNLINK, and hands each URB to ``usb``, which
  decodes the enumeration fully: device and configuration descriptors (with our 54-byte CCID
  class descriptor, through ``usbccid``), strings, SET_CONFIGURATION.
- ``usbccid`` is reached through the interface class with no option, because our reader lists
  its interrupt endpoint first (as QEMU's does): the usb dissector stores one transfer type per
  interface, from the *last* endpoint descriptor, and looks the payload dissector up by it;
  with the interrupt endpoint last, bulk payloads were looked up in the interrupt table, where
  usbccid is not registered (``-d usb.product==0x08e64433,usbccid`` was then needed).
- ``usbccid`` does not reassemble a message spread over several transfers: the first piece
  shows the header (its dwLength longer than the piece), each later piece is read as a message
  of its own (our zero-filled data: ``Unknown (0x00)``). With the payload left to the data
  dissector that is no error. ``-d usbccid.subdissector,iso7816`` names the APDUs (ATR, Select
  file, Read binary, Update binary, Response APDU), but flags the first piece of the split
  response as malformed (the split command's first piece passes).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from ccid import CCIDDevice, MemoryCard, ReaderConfiguration
from ccid.card import TEST_ATR
from ccid.codec import decode_response, encode
from ccid.constants import ICCStatus
from ccid.control import RequestType, StandardRequest
from ccid.descriptors import (
    BULK_IN,
    BULK_OUT,
    INTERRUPT_IN,
    LANGID_EN_US,
    DescriptorType,
    StringIndex,
)
from ccid.messages import (
    Command,
    PC_to_RDR_Escape,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    Response,
)
from ccid.usb import SetupPacket
from ccid.usbip import URB, USBIPClient, import_device, list_devices, serve_usbip

#: Debian packages this module needs on the host (wireshark-common asks, at high priority,
#: whether non-root users may capture; DEBIAN_FRONTEND=noninteractive takes the default, no).
HOST_PACKAGES: Final[tuple[str, ...]] = ("tshark",)

TSHARK: Final = shutil.which("tshark") or "/usr/bin/tshark"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not Path(TSHARK).exists(), reason="tshark missing (apt-get install tshark)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root"),
]

#: What libusb does with a bulk transfer when the host controller has no scatter-gather
#: (MAX_BULK_BUFFER_LENGTH in libusb's linux_usbfs.c): URBs of 16 KiB, all submitted at once.
LIBUSB_URB_SIZE: Final = 16384
#: libccid's bulk IN buffer for XfrBlock: 10 + 65,546.
XFR_BUFFER: Final = 65556
OK: Final = b"\x90\x00"
FILE_SIZE: Final = 65280

SELECT = bytes.fromhex("00A4040C07A0000000790100")
READ_1024 = bytes.fromhex("00B00000000400")  # extended Le: 1,024 bytes
READ_ALL = bytes.fromhex("00B00000000000")  # extended Le 0000: the whole file
SIGN = bytes.fromhex("002A9E9A000100") + bytes(256) + b"\x00\x00"  # the card thinks first
UPDATE_40000 = bytes.fromhex("00D60000009C40") + bytes(40000)


async def answer(thought: asyncio.Future[bytes], apdu: bytes) -> bytes:
    """The card: READ BINARY gives zeros, PSO waits for ``thought``, the rest is 9000."""
    match apdu[1]:
        case 0xB0:
            return bytes(int.from_bytes(apdu[5:7], "big") or FILE_SIZE) + OK
        case 0x2A:
            return await thought
    return OK


@dataclass
class Session:
    """What the session put on the wire, counted the way tshark names it."""

    port: int = 0
    ops: list[str] = field(default_factory=list)
    urbs: collections.Counter[str] = field(default_factory=collections.Counter)
    ccid: collections.Counter[str] = field(default_factory=collections.Counter)
    descriptors: list[tuple[int, int, int]] = field(default_factory=list)
    """(bDescriptorType, index, wLength) of each GET_DESCRIPTOR, in order."""
    split_seqnums: set[int] = field(default_factory=set)
    """URBs that carry a piece of a CCID message split over several transfers."""


def get_descriptor(kind: DescriptorType, index: int, length: int, langid: int = 0) -> SetupPacket:
    request = StandardRequest.GET_DESCRIPTOR
    return SetupPacket(RequestType.STANDARD_DEVICE_IN, request, kind << 8 | index, langid, length)


def get_string(index: int, langid: int = LANGID_EN_US) -> SetupPacket:
    return get_descriptor(DescriptorType.STRING, index, 255, langid)


class Host:
    """The kernel, libusb and libccid over our USB/IP client; counts what goes on the wire."""

    def __init__(self, client: USBIPClient, session: Session) -> None:
        self.client = client
        self.session = session

    async def control(self, setup: SetupPacket) -> bytes:
        self.session.urbs.update(["OP_CMD_SUBMIT", "OP_RET_SUBMIT"])
        if setup.bRequest == StandardRequest.GET_DESCRIPTOR:
            self.session.descriptors.append((setup.wValue >> 8, setup.wValue & 0xFF, setup.wLength))
        return await self.client.control(setup)

    def submit_out(self, data: bytes) -> URB:
        self.session.urbs["OP_CMD_SUBMIT"] += 1
        return self.client.submit_out(BULK_OUT, data)

    def submit_in(self, endpoint: int, length: int) -> URB:
        self.session.urbs["OP_CMD_SUBMIT"] += 1
        return self.client.submit_in(endpoint, length)

    async def result(self, urb: URB) -> bytes:
        ret = await urb.result()
        assert ret.status == 0, ret
        self.session.urbs["OP_RET_SUBMIT"] += 1
        return ret.data

    async def unlink(self, urb: URB) -> None:
        self.session.urbs.update(["OP_CMD_UNLINK", "OP_RET_UNLINK"])
        assert await self.client.unlink(urb) == -104

    async def send(self, command: Command) -> None:
        self.session.ccid[type(command).__name__] += 1
        await self.result(self.submit_out(encode(command)))

    async def receive(self, length: int = XFR_BUFFER) -> Response:
        response = decode_response(await self.result(self.submit_in(BULK_IN, length)))
        self.session.ccid[type(response).__name__] += 1
        return response

    async def exchange(self, command: Command, length: int = XFR_BUFFER) -> Response:
        await self.send(command)
        return await self.receive(length)

    async def send_split(self, command: Command) -> None:
        """One bulk OUT transfer as libusb submits it without scatter-gather."""
        wire = encode(command)
        urbs = [
            self.submit_out(wire[start : start + LIBUSB_URB_SIZE])
            for start in range(0, len(wire), LIBUSB_URB_SIZE)
        ]
        self.session.split_seqnums.update(urb.seqnum for urb in urbs)
        for urb in urbs:
            await self.result(urb)
        self.session.ccid[type(command).__name__] += 1
        self.session.ccid["Unknown"] += len(urbs) - 1  # later pieces start with a zero byte

    async def receive_split(self) -> Response:
        """One bulk IN transfer of libccid's buffer as libusb submits it without
        scatter-gather; the URBs after a short one are unlinked."""
        sizes = [LIBUSB_URB_SIZE] * (XFR_BUFFER // LIBUSB_URB_SIZE)
        sizes.append(XFR_BUFFER - sum(sizes))
        urbs = [self.submit_in(BULK_IN, size) for size in sizes]
        self.session.split_seqnums.update(urb.seqnum for urb in urbs)
        pieces = []
        for urb, size in zip(urbs, sizes, strict=True):
            pieces.append(await self.result(urb))
            if len(pieces[-1]) < size:
                break
        for urb in urbs[len(pieces) :]:
            await self.unlink(urb)
        response = decode_response(b"".join(pieces))
        self.session.ccid[type(response).__name__] += 1
        self.session.ccid["Unknown"] += len(pieces) - 1  # later pieces start with a zero byte
        return response


async def enumerate_like_linux(host: Host) -> None:
    """hub.c and message.c after attach, then pcscd/libccid's reads through usbfs."""
    await host.control(get_descriptor(DescriptorType.DEVICE, 0, 64))  # bMaxPacketSize0 first
    await host.control(get_descriptor(DescriptorType.DEVICE, 0, 18))
    config = await host.control(get_descriptor(DescriptorType.CONFIGURATION, 0, 9))
    total = int.from_bytes(config[2:4], "little")
    await host.control(get_descriptor(DescriptorType.CONFIGURATION, 0, total))
    await host.control(get_string(0, langid=0))  # the LANGID list
    for index in (StringIndex.PRODUCT, StringIndex.MANUFACTURER, StringIndex.SERIAL_NUMBER):
        await host.control(get_string(index))
    await host.control(
        SetupPacket(RequestType.STANDARD_DEVICE_OUT, StandardRequest.SET_CONFIGURATION, 1, 0, 0)
    )
    await host.control(get_string(StringIndex.INTERFACE))
    await host.control(get_string(0, langid=0))  # pcscd and libccid: LANGIDs, serial, vendor
    for index in (StringIndex.SERIAL_NUMBER, StringIndex.MANUFACTURER):
        await host.control(get_string(index))


def data(response: Response) -> bytes:
    assert isinstance(response, RDR_to_PC_DataBlock), response
    return response.abData


async def libccid_session(host: Host, device: CCIDDevice) -> None:
    """pcscd with libccid: open, a card inserted, APDUs, power off, exit."""
    assert (await host.exchange(PC_to_RDR_GetSlotStatus(0, 0), 10)).bmICCStatus == 2
    assert (await host.exchange(PC_to_RDR_GetSlotStatus(0, 1), 10)).bmICCStatus == 2
    await host.exchange(PC_to_RDR_Escape(0, 2, b"\x6a"), 10 + 256)  # Gemalto: firmware features
    notification = host.submit_in(INTERRUPT_IN, 8)
    thought: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    device.insert_card(MemoryCard(respond=functools.partial(answer, thought)))
    assert await host.result(notification) == b"\x50\x03"
    host.session.ccid["RDR_to_PC_NotifySlotChange"] += 1
    parked = host.submit_in(INTERRUPT_IN, 8)
    assert (await host.exchange(PC_to_RDR_GetSlotStatus(0, 3), 10)).bmICCStatus == 1
    atr = await host.exchange(PC_to_RDR_IccPowerOn(0, 4), 43)
    assert atr == RDR_to_PC_DataBlock(0, 4, ICCStatus.PRESENT_ACTIVE, abData=TEST_ATR)
    assert data(await host.exchange(PC_to_RDR_XfrBlock(0, 5, SELECT))) == OK
    assert len(data(await host.exchange(PC_to_RDR_XfrBlock(0, 6, READ_1024)))) == 1026
    await host.send(PC_to_RDR_XfrBlock(0, 7, SIGN))
    assert (await host.receive()).bStatus == 0x80  # a time extension while the card thinks
    thought.set_result(bytes(256) + OK)
    while (signature := await host.receive()).bStatus & 0x80:
        pass
    assert len(data(signature)) == 258
    await host.send_split(PC_to_RDR_XfrBlock(0, 8, UPDATE_40000))
    assert data(await host.receive()) == OK
    await host.send(PC_to_RDR_XfrBlock(0, 9, READ_ALL))
    assert len(data(await host.receive_split())) == FILE_SIZE + 2
    assert len(data(await host.exchange(PC_to_RDR_XfrBlock(0, 10, READ_ALL)))) == FILE_SIZE + 2
    await host.exchange(PC_to_RDR_IccPowerOff(0, 11), 10)
    await host.unlink(parked)  # pcscd exits: InterruptStop


@asynccontextmanager
async def capture(path: Path, tcp_port: int) -> AsyncIterator[None]:
    """``tshark -i lo`` on ``tcp_port`` into ``path``, from before the block to after it.

    Ready when tshark logs "Capture started.": dumpcap has opened lo, set the filter and
    created the file ("Capturing on ..." comes earlier, before dumpcap even starts). At
    the end a UDP datagram to our own socket marks the last packet: once tshark has printed
    it, everything before it is in the file; then SIGINT stops tshark.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
        marker.bind(("127.0.0.1", 0))
        marker_port = marker.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            TSHARK,
            *("-i", "lo", "-f", f"tcp port {tcp_port} or udp port {marker_port}"),
            *("-w", str(path)),
            *("-P", "-l", "-T", "fields", "-e", "udp.dstport"),  # print while saving
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            said: list[str] = []
            async with asyncio.timeout(60):
                while "Capture started." not in (
                    line := (await process.stderr.readline()).decode()
                ):
                    if not line:
                        raise AssertionError(f"tshark did not start: {''.join(said)}")
                    said.append(line)
            yield
            marker.sendto(b"vscard: end of capture", ("127.0.0.1", marker_port))
            async with asyncio.timeout(60):
                while (line := (await process.stdout.readline()).decode()).strip() != str(
                    marker_port
                ):
                    assert line, "tshark ended before the end marker"
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(60):
                _, err = await process.communicate()
            assert process.returncode == 0, err.decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def record(path: Path) -> Session:
    """Run the whole session against a fresh reader while tshark captures it."""
    session = Session()
    device = CCIDDevice(ReaderConfiguration(serial="TSHARK", time_extension_interval=0.05))
    async with await serve_usbip([device], port=0) as server:
        session.port = server.port
        async with capture(path, server.port):
            await list_devices(port=server.port)
            session.ops += ["OP_REQ_DEVLIST", "OP_REP_DEVLIST"]
            client = await import_device("1-1", port=server.port)
            session.ops += ["OP_REQ_IMPORT", "OP_REP_IMPORT"]
            host = Host(client, session)
            await enumerate_like_linux(host)
            await libccid_session(host, device)
            await client.close()
            server.close()
            await server.wait_closed()  # every socket closed: the FINs are on the wire
    await device.aclose()
    return session


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Session]:
    path = tmp_path_factory.mktemp("tshark") / "session.pcapng"
    return path, asyncio.run(record(path))


def tshark(recorded: tuple[Path, Session], *args: str) -> str:
    """Decode the capture: USB/IP on the server's port; CCID is found by interface class."""
    path, session = recorded
    decode_as = ["-d", f"tcp.port=={session.port},usbip"]
    command = [TSHARK, "-r", str(path), *decode_as, *args]
    return subprocess.run(command, capture_output=True, check=True, text=True, timeout=120).stdout


def named(text: str, label: str) -> list[str]:
    """Every ``label: NAME (0x...)`` line of a -V decode, in order."""
    return re.findall(rf"^\s*{re.escape(label)}: (\w+) \(0x[0-9a-f]+\)$", text, re.MULTILINE)


def expert_items(summary: str) -> list[tuple[str, str, str, str]]:
    """(severity, group, protocol, summary) rows of ``-z expert``, from its fixed columns
    (``"%12d %10s %18s  %s"`` in tap-expert.c)."""
    items = []
    severity = ""
    for line in summary.splitlines():
        if heading := re.fullmatch(r"(\w+) \(\d+\)", line):
            severity = heading[1]
        elif re.match(r" {0,11}\d+ ", line):
            items.append((severity, line[13:23].strip(), line[24:42].strip(), line[44:]))
    return items


def test_tshark_reports_no_malformed_packet_and_no_expert_warning(
    recorded: tuple[Path, Session],
) -> None:
    assert "Malformed" not in tshark(recorded, "-V")
    items = expert_items(tshark(recorded, "-q", "-z", "expert,warn"))
    assert not [item for item in items if item[0] == "Errors"]
    # On a loaded host TCP itself may retransmit on loopback (tshark warns "D-SACK Sequence",
    # "Spurious retransmission"); nothing above TCP may warn.
    assert not [item for item in items if item[2] != "TCP"], items
    assert not [item for item in items if "not captured" in item[3]], items  # nothing lost


def test_usbip_dissector_frames_every_op_and_urb_message(recorded: tuple[Path, Session]) -> None:
    _, session = recorded
    text = tshark(recorded, "-V")
    assert named(text, "Operation") == session.ops
    assert collections.Counter(named(text, "Command")) == session.urbs
    assert session.urbs["OP_CMD_UNLINK"] == 2
    for line in (
        "Busid: 1-1",
        "Connected Speed: Full Speed (2)",
        "idVendor: Gemalto (was Gemplus) (0x08e6)",
        "bInterfaceClass: Smart Card (0x0b)",
    ):
        assert f"    {line}\n" in text


def test_usb_dissector_decodes_the_enumeration_at_the_kernels_wlengths(
    recorded: tuple[Path, Session],
) -> None:
    _, session = recorded
    requests = tshark(
        recorded,
        *("-Y", "usb.setup.bRequest == 6", "-T", "fields"),
        *("-e", "usb.bDescriptorType", "-e", "usb.DescriptorIndex", "-e", "usb.setup.wLength"),
    )
    seen = [
        (int(kind, 16), int(index, 16), int(length))
        for kind, index, length in (line.split("\t") for line in requests.splitlines())
    ]
    assert seen == session.descriptors
    assert seen[:4] == [(1, 0, 64), (1, 0, 18), (2, 0, 9), (2, 0, 93)]
    configured = tshark(
        recorded, "-Y", "usb.setup.bRequest == 9", "-T", "fields", "-e", "usb.bConfigurationValue"
    )
    assert configured.split() == ["1"]
    text = tshark(recorded, "-V")
    for line in (
        "idProduct: GemPC433-Swap (0x4433)",
        "bInterfaceClass: Smart Card (0x0b)",
        "maximum CCID message length: 65554",
        "bString: vscard virtual CCID reader",
        "bString: TSHARK",
    ):
        assert f"    {line}\n" in text


def test_usbccid_names_every_ccid_message_sent_and_received(
    recorded: tuple[Path, Session],
) -> None:
    _, session = recorded
    seen = collections.Counter(named(tshark(recorded, "-V"), "Message Type"))
    assert seen == session.ccid
    assert seen["PC_to_RDR_XfrBlock"] == 6


def test_iso7816_names_the_apdus_and_trips_only_on_messages_split_over_transfers(
    recorded: tuple[Path, Session],
) -> None:
    _, session = recorded
    iso = ("-d", "usbccid.subdissector,iso7816")
    summary = tshark(recorded, *iso)
    for name in ("ATR", "Select file", "Read binary", "Update binary", "Response APDU"):
        assert name in summary
    tripped = tshark(
        recorded, *iso, "-Y", "_ws.malformed || _ws.expert.severity >= error",
        "-T", "fields", "-e", "usbip.sequence_no",
    )  # fmt: skip
    assert {int(seqnum) for seqnum in re.findall(r"\d+", tripped)} <= session.split_seqnums
