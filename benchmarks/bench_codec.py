"""Codec throughput beside a bare ``struct`` floor measured in the same run: VSCard, CCID and
USB/IP.

VSCard: an APDU frame of QEMU's usual shape (12-byte header + 261-byte payload: a short APDU
with Lc=255, Le) is encoded and decoded. CCID: the same APDU in a PC_to_RDR_XfrBlock (10-byte
header). USB/IP: that XfrBlock in a CMD_SUBMIT bulk OUT (48-byte header), decoded by the
server's :class:`~ccid.usbip.codec.RequestDecoder`. Each floor does only the header ``struct``
work plus the payload copy that any decoder must make. The ratio (ours / floor) is what to
watch (target >= 0.5): absolute rates move with the machine.

Each decode row also shows, for information only, a second baseline: the floor plus building
the same message with its public constructor (``APDU(...)``, ``PC_to_RDR_XfrBlock(...)``,
``CmdSubmit(...)``), i.e. what a decoder costs that does no more than the floor but builds its
result the ordinary way. The gap between the two baselines is what constructing a frozen
dataclass costs; our decoders build their hot messages without the generated ``__init__``
(see the codecs), so they can beat this second baseline.

Run: ``python -m benchmarks.bench_codec [--seconds 0.5]``.
"""

from __future__ import annotations

import argparse
import struct
from collections.abc import Callable
from dataclasses import dataclass

import vscard
from benchmarks.report import Figure, Section, Target
from benchmarks.timing import rate
from ccid.codec import decode_command
from ccid.codec import encode as encode_ccid
from ccid.messages import PC_to_RDR_XfrBlock
from ccid.usbip import CmdSubmit, Direction, encode_usbip
from ccid.usbip.codec import RequestDecoder

HEADER = struct.Struct(">III")
PAYLOAD = bytes(range(256)) + bytes(5)  # 261 bytes
MESSAGE = vscard.APDU(0, PAYLOAD)
FRAME = vscard.encode(MESSAGE)
BATCH = 1000
STREAM = FRAME * BATCH

CCID_HEADER = struct.Struct("<BIBBBBB")
XFR_BLOCK = PC_to_RDR_XfrBlock(0, 1, PAYLOAD)
CCID_FRAME = encode_ccid(XFR_BLOCK)

USBIP_HEADER = struct.Struct(">IIIIIIiiii8s")
CMD_SUBMIT = CmdSubmit(1, 0x10001, Direction.OUT, 2, 0, len(CCID_FRAME), data=CCID_FRAME)
USBIP_FRAME = encode_usbip(CMD_SUBMIT)
TARGET = Target("at_least", 0.5)


def floor_encode() -> bytes:
    return HEADER.pack(7, 0, len(PAYLOAD)) + PAYLOAD


def floor_decode() -> tuple[int, int, int, bytes]:
    msg_type, reader_id, length = HEADER.unpack_from(FRAME)
    return msg_type, reader_id, length, FRAME[12 : 12 + length]


def floor_decode_batch() -> int:
    view = memoryview(STREAM)
    offset = 0
    for _ in range(BATCH):
        _, _, length = HEADER.unpack_from(view, offset)
        bytes(view[offset + 12 : offset + 12 + length])
        offset += 12 + length
    return offset


def floor_build_decode() -> vscard.APDU:
    _, reader_id, length = HEADER.unpack_from(FRAME)
    return vscard.APDU(reader_id, FRAME[12 : 12 + length])


def floor_build_decode_batch() -> int:
    view = memoryview(STREAM)
    offset = 0
    for _ in range(BATCH):
        _, reader_id, length = HEADER.unpack_from(view, offset)
        vscard.APDU(reader_id, bytes(view[offset + 12 : offset + 12 + length]))
        offset += 12 + length
    return offset


def ccid_floor_encode() -> bytes:
    return CCID_HEADER.pack(0x6F, len(PAYLOAD), 0, 1, 0, 0, 0) + PAYLOAD


def ccid_floor_decode() -> tuple[int, int, bytes]:
    kind, length, *_ = CCID_HEADER.unpack_from(CCID_FRAME)
    return kind, length, CCID_FRAME[10 : 10 + length]


def ccid_floor_build_decode() -> PC_to_RDR_XfrBlock:
    _, length, slot, seq, bwi, level_low, level_high = CCID_HEADER.unpack_from(CCID_FRAME)
    return PC_to_RDR_XfrBlock(
        slot, seq, CCID_FRAME[10 : 10 + length], bwi, level_low | level_high << 8
    )


def usbip_floor_encode() -> bytes:
    header = USBIP_HEADER.pack(1, 1, 0x10001, 0, 2, 0, len(CCID_FRAME), 0, 0, 0, bytes(8))
    return header + CCID_FRAME


def usbip_decoder_step() -> Callable[[], object]:
    decoder = RequestDecoder()
    decoder.start_urb_phase()

    def step() -> object:
        decoder.feed(USBIP_FRAME)
        return decoder.next_request()

    return step


def usbip_floor_decode() -> tuple[int, bytes]:
    buffer = bytearray(USBIP_FRAME)  # what arrives from the socket
    fields = USBIP_HEADER.unpack_from(buffer)
    length = fields[6]
    return fields[1], bytes(buffer[48 : 48 + length])


def usbip_floor_build_decode() -> CmdSubmit:
    buffer = bytearray(USBIP_FRAME)  # what arrives from the socket
    _, seqnum, devid, direction, ep, flags, length, start, packets, interval, setup = (
        USBIP_HEADER.unpack_from(buffer)
    )
    data = bytes(buffer[48 : 48 + length])
    return CmdSubmit(
        seqnum,
        devid,
        Direction(direction),
        ep,
        flags,
        length,
        start,
        packets,
        interval,
        setup,
        data,
    )


@dataclass(frozen=True)
class Row:
    name: str
    ours: float
    floor: float
    #: Decode rows: the floor plus building the same message with its public constructor.
    floor_build: float | None = None


def measure(seconds: float = 0.5) -> list[Row]:
    """Encode/decode rates of the three codecs, their floors and, for decoding, floor + build."""
    decoder = vscard.Decoder()
    return [
        Row("VSCard encode APDU frame", rate(lambda: vscard.encode(MESSAGE), seconds),
            rate(floor_encode, seconds)),
        Row("VSCard decode, one frame per feed", rate(lambda: decoder.feed(FRAME), seconds),
            rate(floor_decode, seconds), rate(floor_build_decode, seconds)),
        Row(f"VSCard decode, {BATCH} frames per feed",
            rate(lambda: decoder.feed(STREAM), seconds, BATCH),
            rate(floor_decode_batch, seconds, BATCH),
            rate(floor_build_decode_batch, seconds, BATCH)),
        Row("CCID encode XfrBlock", rate(lambda: encode_ccid(XFR_BLOCK), seconds),
            rate(ccid_floor_encode, seconds)),
        Row("CCID decode XfrBlock", rate(lambda: decode_command(CCID_FRAME), seconds),
            rate(ccid_floor_decode, seconds), rate(ccid_floor_build_decode, seconds)),
        Row("USB/IP encode CMD_SUBMIT", rate(lambda: encode_usbip(CMD_SUBMIT), seconds),
            rate(usbip_floor_encode, seconds)),
        Row("USB/IP decode CMD_SUBMIT", rate(usbip_decoder_step(), seconds),
            rate(usbip_floor_decode, seconds), rate(usbip_floor_build_decode, seconds)),
    ]  # fmt: skip


def _note(row: Row) -> str | None:
    if row.floor_build is None:
        return None
    return (
        f"informative: floor + building the same message with its constructor "
        f"{row.floor_build:,.0f} frames/s ({row.floor_build / row.floor:.2f}x the floor); "
        f"ours is {row.ours / row.floor_build:.2f}x that"
    )


def run_codec(seconds: float = 0.5) -> Section:
    """Encode/decode rates of the three codecs and their floors, as figures."""
    return Section(
        "codec",
        f"frames/s of each codec beside a bare struct floor (APDU of {len(PAYLOAD)} bytes)",
        [
            Figure(
                row.name, row.ours, "frames/s", row.floor, "struct floor", TARGET, note=_note(row)
            )
            for row in measure(seconds)
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    rows = measure(parser.parse_args().seconds)
    print(f"APDU frame: {len(FRAME)} bytes (12-byte header + {len(PAYLOAD)}-byte payload)")
    print(
        f"{'operation':36} {'frames/s':>12} {'struct floor':>14} {'ratio':>7}"
        f" {'floor+build':>14} {'ratio':>7}"
    )
    for row in rows:
        line = f"{row.name:36} {row.ours:12,.0f} {row.floor:14,.0f} {row.ours / row.floor:7.2f}"
        if row.floor_build is not None:
            line += f" {row.floor_build:14,.0f} {row.ours / row.floor_build:7.2f}"
        print(line)
    print("target: ratio to the struct floor >= 0.5; floor+build is informative only")


if __name__ == "__main__":
    main()
