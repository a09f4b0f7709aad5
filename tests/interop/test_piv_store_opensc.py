"""A card directory provisioned through pcscd and vpcd keeps what it was given when the card
process restarts (#15): a P-256 key generated in 9E with the default 9B management key, the
certificate written for it with PUT DATA, a PUK try spent; after the restart OpenSC's PIV driver
reads that certificate and signs with the generated key (checked with ``cryptography``), and the
PUK unblocks with its kept counter.

The provisioning APDUs go through PC/SC (pyscard) as a card management tool sends them: OpenSC
0.23's ``piv-tool`` has the card generate the key but cannot read the public key back under
OpenSSL 3 ("gen_key unable to gen EC key"/"unable to gen RSA"), and yubico-piv-tool is the
subject of test_piv_yubico.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from smartcard.CardConnection import CardConnection
from smartcard.System import readers

from cacard.piv.ber import decode_fields, decode_one, encode
from cacard.piv.objects import PIV_AID, CertificateObject, KeyReference, ObjectTag
from cacard.store import CardStore
from tests.cacard.certificates import issue

from . import opensc
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd
from .piv_card import KEY_IDS, PIN, PivReader, make_card, verify

pcscd = fixtures.pcscd
opensc_env = opensc.opensc_env

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        opensc.missing_tools(), reason="OpenSC tools are not installed (Debian package opensc)"
    ),
]

SLOT = 0
PUK = "31415926"
MESSAGE = b"provisioned over PC/SC, kept by the card directory\n"
MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")


class Session:
    """One PC/SC connection to the card (T=1), sending short APDUs with Le and following
    ``61xx`` with GET RESPONSE."""

    def __init__(self, reader_name: str) -> None:
        (reader,) = [r for r in readers() if str(r) == reader_name]
        self.connection = reader.createConnection()
        self.connection.connect(CardConnection.T1_protocol)

    def send(self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"") -> tuple[int, bytes]:
        if len(data) > 255:  # chain, as PIV tools do for certificates
            for offset in range(0, len(data) - 255, 255):
                sw, _ = self.send(cla | 0x10, ins, p1, p2, data[offset : offset + 255])
                assert sw == 0x9000, f"{sw:04X}"
            data = data[(len(data) - 1) // 255 * 255 :]
        apdu = [cla, ins, p1, p2, *([len(data), *data] if data else []), 0x00]
        answer, sw1, sw2 = self.connection.transmit(apdu)
        collected = bytes(answer)
        while sw1 == 0x61:
            answer, sw1, sw2 = self.connection.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
            collected += bytes(answer)
        return sw1 << 8 | sw2, collected

    def close(self) -> None:
        self.connection.disconnect()


def authenticate_management(session: Session) -> None:
    """9B challenge-response with the default 3DES key (SP 800-73-4 Part 2 Appendix A.1)."""
    sw, answer = session.send(0x00, 0x87, 0x03, 0x9B, encode([(0x7C, encode([(0x81, b"")]))]))
    assert sw == 0x9000, f"{sw:04X}"
    challenge = decode_fields(decode_one(answer, 0x7C), where="witness")[0x81]
    encryptor = Cipher(TripleDES(MANAGEMENT_KEY), modes.ECB()).encryptor()
    response = encryptor.update(challenge) + encryptor.finalize()
    sw, _ = session.send(0x00, 0x87, 0x03, 0x9B, encode([(0x7C, encode([(0x82, response)]))]))
    assert sw == 0x9000, f"{sw:04X}"


def provision_9e(session: Session) -> x509.Certificate:
    """GENERATE a P-256 key in 9E, then PUT DATA a certificate a test CA issued for it."""
    sw, answer = session.send(0x00, 0x47, 0x00, 0x9E, bytes.fromhex("AC03800111"))
    assert sw == 0x9000, f"{sw:04X}"
    point = decode_fields(decode_one(answer, 0x7F49), where="generate")[0x86]
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    certificate = issue(public, "vscard 9E, generated on the card")
    content = CertificateObject(certificate.public_bytes(serialization.Encoding.DER)).to_bytes()
    tag = ObjectTag.CARD_AUTHENTICATION_CERTIFICATE.to_bytes(3, "big")
    sw, _ = session.send(0x00, 0xDB, 0x3F, 0xFF, encode([(0x5C, tag), (0x53, content)]))
    assert sw == 0x9000, f"{sw:04X}"
    return certificate


def reset_retry_counter(session: Session, puk: str) -> int:
    data = puk.encode().ljust(8, b"\xff") + PIN.encode().ljust(8, b"\xff")
    return session.send(0x00, 0x2C, 0x00, 0x80, data)[0]


def serve(pcscd: Pcscd, store: CardStore, workdir: Path) -> subprocess.Popen[bytes]:
    return opensc.serve(pcscd, [str(store.path)], workdir, SLOT, verbosity="-vv")


def test_provisioning_survives_a_restart(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path: Path
) -> None:
    store = make_card(tmp_path / "card", "piv", "--certs", "1", "--key-size", "1024", "--puk", PUK)
    reader = pcscd.reader_name(SLOT)
    process = serve(pcscd, store, tmp_path)
    try:
        session = Session(reader)
        try:
            assert session.send(0x00, 0xA4, 0x04, 0x00, PIV_AID)[0] == 0x9000
            authenticate_management(session)
            certificate = provision_9e(session)
            assert reset_retry_counter(session, "00000000") == 0x63C2
        finally:
            session.close()
    finally:
        opensc.stop(pcscd, process, SLOT)

    kept = store.load_piv()
    assert set(kept.keys) == {KeyReference.CARD_AUTHENTICATION}
    assert set(kept.objects) == {ObjectTag.CARD_AUTHENTICATION_CERTIFICATE}
    puk = store.load_puk()
    assert puk is not None
    assert puk.tries_remaining == 2

    process = serve(pcscd, store, tmp_path)
    try:
        card = PivReader(opensc_env, tmp_path, SLOT, reader)
        assert card.certificate(KEY_IDS["9e"]) == certificate
        signature = card.sign(PIN, KEY_IDS["9e"], "ECDSA-SHA256", MESSAGE)
        verify(certificate, signature, MESSAGE, "ECDSA-SHA256")
        session = Session(reader)
        try:
            assert session.send(0x00, 0xA4, 0x04, 0x00, PIV_AID)[0] == 0x9000
            assert reset_retry_counter(session, "00000000") == 0x63C1  # counting on
            assert reset_retry_counter(session, PUK) == 0x9000
        finally:
            session.close()
    finally:
        opensc.stop(pcscd, process, SLOT)
    puk = store.load_puk()
    assert puk is not None
    assert puk.tries_remaining == 3
