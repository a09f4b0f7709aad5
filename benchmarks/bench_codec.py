"""VSCard codec throughput beside a bare ``struct`` floor measured in the same run.

An APDU frame of QEMU's usual shape (12-byte header + 261-byte payload: a short APDU with
Lc=255, Le) is encoded and decoded; the floor does only the header ``struct`` work plus the
payload copy that any decoder must make. The ratio (ours / floor) is what to watch: absolute
rates move with the machine.

Run: ``python -m benchmarks.bench_codec [--seconds 0.5]``.
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable

import vscard

HEADER = struct.Struct(">III")
PAYLOAD = bytes(range(256)) + bytes(5)  # 261 bytes
MESSAGE = vscard.APDU(0, PAYLOAD)
FRAME = vscard.encode(MESSAGE)
BATCH = 1000
STREAM = FRAME * BATCH


def rate(step: Callable[[], object], frames_per_call: int, seconds: float) -> float:
    """Best of five runs, in frames per second."""
    best = 0.0
    calls = 1
    while True:  # size the loop so one run lasts about seconds / 5
        start = time.perf_counter()
        for _ in range(calls):
            step()
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 5:
            break
        calls *= 2
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        elapsed = time.perf_counter() - start
        best = max(best, calls * frames_per_call / elapsed)
    return best


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    seconds = parser.parse_args().seconds

    decoder = vscard.Decoder()
    rows = [
        ("encode APDU frame", rate(lambda: vscard.encode(MESSAGE), 1, seconds),
         rate(floor_encode, 1, seconds)),
        ("decode, one frame per feed", rate(lambda: decoder.feed(FRAME), 1, seconds),
         rate(floor_decode, 1, seconds)),
        (f"decode, {BATCH} frames per feed", rate(lambda: decoder.feed(STREAM), BATCH, seconds),
         rate(floor_decode_batch, BATCH, seconds)),
    ]  # fmt: skip
    print(f"APDU frame: {len(FRAME)} bytes (12-byte header + {len(PAYLOAD)}-byte payload)")
    print(f"{'operation':32} {'vscard frames/s':>16} {'struct floor':>14} {'ratio':>7}")
    for name, ours, floor in rows:
        print(f"{name:32} {ours:16,.0f} {floor:14,.0f} {ours / floor:7.2f}")


if __name__ == "__main__":
    main()
