"""APDU round trips through host PC/SC to a card served by the vpcd bridge: pyscard ->
pcscd -> vpcd -> :func:`cacard.vpcd.serve_vpcd` -> :class:`cacard.card.Card` and back.

Prints p50/p90/p99 of a SELECT round trip and the rate of whole RSA-2048 signatures (the two
INS 42 APDUs OpenSC sends) with TCP_QUICKACK re-armed after every read, as the bridge does,
and with ``--no-quickack`` to show the delayed-ACK trap it avoids (about 44 ms per APDU).

Needs root and Debian's ``pcscd`` and ``vsmartcard-vpcd``: it starts a private pcscd in its own
namespaces (``tests/interop/pcsc``) and the pyscard extra.
Run: ``python -m benchmarks.bench_vpcd [--count 2000] [--no-quickack]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

import cacard.vpcd
from benchmarks.bench_card import CHUNK, PIN, blocks, make_card
from cacard.card import Card
from tests.interop.pcsc.pcscd import Pcscd, PcscdConfig

SELECT = bytes.fromhex("00A4040C07A000000116DB00")


def serve_in_thread(card: Card, pcscd: Pcscd) -> threading.Thread:
    """The bridge on its own event loop, connected to vpcd slot 0 in pcscd's namespace."""
    sock = pcscd.connect_card(0)
    thread = threading.Thread(
        target=lambda: asyncio.run(cacard.vpcd.serve_vpcd(card, sock=sock)), daemon=True
    )
    thread.start()
    return thread


def percentile(values: list[float], fraction: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="round trips to time")
    parser.add_argument("--no-quickack", action="store_true", help="leave delayed ACKs on")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.no_quickack:
        cacard.vpcd._quickack = lambda sock: None

    with tempfile.TemporaryDirectory(prefix="bench-vpcd-") as workdir:
        pcscd = Pcscd(PcscdConfig(workdir=Path(workdir), debug=False))
        pcscd.start()
        try:
            os.environ.update(pcscd.client_env())
            # pyscard's libpcsclite reads the socket path once: import it only now.
            from smartcard.System import readers

            from tests.interop.pcsc.fixtures import wait_for_card

            key = rsa.generate_private_key(65537, 2048)
            card = make_card(key)
            serve_in_thread(card, pcscd)
            wait_for_card(pcscd.reader_name(0), present=True)
            (reader,) = [r for r in readers() if str(r) == pcscd.reader_name(0)]
            connection = reader.createConnection()
            connection.connect()
            times = []
            for _ in range(args.count):
                start = time.perf_counter()
                connection.transmit(list(SELECT))
                times.append(time.perf_counter() - start)
            print(
                f"SELECT round trip ({'no ' if args.no_quickack else ''}quickack, "
                f"{args.count}x): p50 {percentile(times, 0.5) * 1e6:.0f} us, "
                f"p90 {percentile(times, 0.9) * 1e6:.0f} us, "
                f"p99 {percentile(times, 0.99) * 1e6:.0f} us"
            )
            connection.transmit(list(bytes.fromhex("00A4040C07A0000000790100")))
            connection.transmit(list(bytes.fromhex("0020000008") + PIN.encode()))
            block = blocks(key)["sign PKCS#1 v1.5"]
            head = list(bytes.fromhex("00428000") + bytes((CHUNK,)) + block[:CHUNK])
            tail_data = block[CHUNK:]
            tail = list(bytes.fromhex("00420000") + bytes((len(tail_data),)) + tail_data)
            signs = max(10, args.count // 10)
            start = time.perf_counter()
            for _ in range(signs):
                connection.transmit(head)
                _, sw1, _ = connection.transmit(tail)  # T=0: 61 00, then GET RESPONSE
                connection.transmit([0x00, 0xC0, 0x00, 0x00, 0x00])
                assert sw1 == 0x61
            elapsed = time.perf_counter() - start
            print(f"RSA-2048 signatures through PC/SC: {signs / elapsed:.0f}/s ({signs}x)")
            connection.disconnect()
            connection.release()  # before pcscd goes away, or pyscard complains at exit
        finally:
            pcscd.stop()


if __name__ == "__main__":
    main()
