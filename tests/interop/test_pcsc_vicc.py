"""Host PC/SC against a real card stand-in: pyscard -> private pcscd -> vpcd -> vicc."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from smartcard.CardConnection import CardConnection
from smartcard.System import readers

from .pcsc import fixtures
from .pcsc.fixtures import wait_for_card
from .pcsc.pcscd import Pcscd
from .pcsc.vicc import ISO7816_ATR, Vicc, ViccConfig, running_vicc

pcscd = fixtures.pcscd
vicc = fixtures.vicc

pytestmark = pytest.mark.interop

SELECT_MF = bytes.fromhex("00A4000C023F00")  # P2=0C: no FCI wanted (P2=00 breaks vicc)
SELECT_MF_WITH_FCI = bytes.fromhex("00A40000023F00")
GET_CHALLENGE_8 = bytes.fromhex("0084000008")
VERIFY_PIN_1234 = bytes.fromhex("002000010431323334")  # vicc's iso7816 card: PIN 1234
VERIFY_PIN_9999 = bytes.fromhex("002000010439393939")


def transmit(connection: CardConnection, apdu: bytes) -> tuple[bytes, int]:
    data, sw1, sw2 = connection.transmit(list(apdu))
    return bytes(data), sw1 << 8 | sw2


def connect(reader_name: str) -> CardConnection:
    """A connected pyscard connection; as a context manager it disconnects and releases."""
    (reader,) = [reader for reader in readers() if str(reader) == reader_name]
    connection: CardConnection = reader.createConnection()
    connection.connect()
    return connection


def test_pyscard_reaches_the_private_pcscd_and_its_vpcd_readers(pcscd: Pcscd) -> None:
    names = [str(reader) for reader in readers()]
    assert pcscd.reader_name(0) in names
    assert pcscd.reader_name(1) in names
    # The packaged reader.conf.d names vpcd "Virtual PCD": seeing it would mean a system pcscd.
    assert not [name for name in names if name.startswith("Virtual PCD")]


def test_vicc_card_answers_apdus_through_pcscd(vicc: Vicc) -> None:
    with connect(vicc.reader_name) as connection:
        assert bytes(connection.getATR()) == ISO7816_ATR
        assert transmit(connection, SELECT_MF) == (b"", 0x9000)
        challenge, sw = transmit(connection, GET_CHALLENGE_8)
        assert (len(challenge), sw) == (8, 0x9000)
        assert transmit(connection, VERIFY_PIN_9999) == (b"", 0x6300)  # vicc gives no count
        assert transmit(connection, VERIFY_PIN_1234) == (b"", 0x9000)


def test_a_vicc_crash_is_answered_6f00_and_the_card_stays_usable(vicc: Vicc) -> None:
    with connect(vicc.reader_name) as connection:
        assert transmit(connection, SELECT_MF_WITH_FCI) == (b"", 0x6F00)
        assert transmit(connection, SELECT_MF) == (b"", 0x9000)
    vicc.check_running()


def round_trips(reader_name: str, count: int) -> list[float]:
    with connect(reader_name) as connection:
        transmit(connection, SELECT_MF)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            transmit(connection, SELECT_MF)
            times.append(time.perf_counter() - start)
        return times


def test_quickack_keeps_an_apdu_round_trip_far_below_the_delayed_ack(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    # Without TCP_QUICKACK on the card socket each round trip takes ~44 ms (delayed ACK).
    with running_vicc(pcscd, ViccConfig(quickack=True), tmp_path / "vicc.log") as card:
        wait_for_card(card.reader_name, present=True)
        median = statistics.median(round_trips(card.reader_name, 50))
    wait_for_card(card.reader_name, present=False)
    assert median < 0.010


@pytest.mark.skipif(shutil.which("opensc-tool") is None, reason="OpenSC is not installed")
def test_opensc_reads_the_atr_through_the_private_socket(pcscd: Pcscd, vicc: Vicc) -> None:
    result = subprocess.run(
        ["opensc-tool", "--reader", vicc.reader_name, "--atr"],
        env={**os.environ, **pcscd.client_env()},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ISO7816_ATR.hex(":") in result.stdout


class MinimalVpcdCard:
    """A card speaking vpcd's framing (2-byte length, then 1-byte control or an APDU)."""

    GET_ATR = b"\x04"

    def __init__(self, sock: socket.socket, atr: bytes) -> None:
        self.sock, self.atr = sock, atr
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        with contextlib.suppress(OSError):  # the test shut the socket down
            while header := self.sock.recv(2, socket.MSG_WAITALL):
                body = self.sock.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                if body == self.GET_ATR:
                    self.sock.sendall(len(self.atr).to_bytes(2, "big") + self.atr)
                elif len(body) > 1:  # an APDU: "instruction not supported"
                    self.sock.sendall(b"\x00\x02\x6d\x00")

    def __enter__(self) -> MinimalVpcdCard:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.sock.close()


def test_in_process_card_code_reaches_vpcd_in_the_private_namespace(pcscd: Pcscd) -> None:
    atr = bytes.fromhex("3b021450")
    reader_name = pcscd.reader_name(1)
    with MinimalVpcdCard(pcscd.connect_card(slot=1), atr):
        wait_for_card(reader_name, present=True)
        with connect(reader_name) as connection:
            assert bytes(connection.getATR()) == atr
            assert transmit(connection, bytes.fromhex("00CA000000")) == (b"", 0x6D00)
    wait_for_card(reader_name, present=False)
