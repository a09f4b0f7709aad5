"""What a PIV host does first with a card, over whatever carries APDUs (a VSCard session, a CCID
XfrBlock): SELECT the PIV application, read the CHUID, VERIFY the application PIN and sign with
key 9A (raw RSA, GENERAL AUTHENTICATE), checked against the certificate's public key."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cacard.piv.ber import decode_fields, decode_one
from cacard.piv.objects import PIV_AID

Transmit = Callable[[bytes], Awaitable[bytes]]

PIN: Final = b"77777777"
SELECT_PIV: Final = bytes((0x00, 0xA4, 0x04, 0x00, len(PIV_AID))) + PIV_AID + b"\x00"
GET_CHUID: Final = bytes.fromhex("00CB3FFF055C035FC10200")
VERIFY_80: Final = bytes.fromhex("0020008008") + PIN
#: PIV algorithm identifiers of RSA keys by size (SP 800-78-4 Table 5).
RSA_ALGORITHMS: Final = {1024: 0x06, 2048: 0x07, 3072: 0x05, 4096: 0x16}
#: DER DigestInfo prefix of SHA-256 (RFC 8017 §9.2).
SHA256_DIGEST_INFO: Final = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True)
class PivSession:
    """The answers of one run: SELECT's status, the CHUID, VERIFY's status, the signature."""

    select_sw: int
    chuid: bytes
    verify_sw: int
    signature: bytes


async def exchange(transmit: Transmit, apdu: bytes) -> tuple[bytes, int]:
    """Send ``apdu``; follow ``61xx`` with GET RESPONSE; return the data and the last status."""
    answer = await transmit(apdu)
    data, sw = answer[:-2], answer[-2:]
    while sw[0] == 0x61:
        answer = await transmit(bytes((0x00, 0xC0, 0x00, 0x00, sw[1])))
        data, sw = data + answer[:-2], answer[-2:]
    return data, int.from_bytes(sw, "big")


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    if size < 0x100:
        return bytes((0x81, size))
    return b"\x82" + size.to_bytes(2, "big")


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _length(len(value)) + value


def pkcs1_block(message: bytes, size: int) -> bytes:
    """An EMSA-PKCS1-v1_5 block of ``size`` bytes for SHA-256(message), as a host pads it."""
    digest_info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    return b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info


async def sign_9a(transmit: Transmit, public_key: rsa.RSAPublicKey, message: bytes) -> bytes:
    """Sign ``message`` with key 9A; return the signature (the response's 82)."""
    size = public_key.key_size // 8
    block = pkcs1_block(message, size)
    template = _tlv(0x7C, b"\x82\x00" + _tlv(0x81, block))
    algorithm = RSA_ALGORITHMS[public_key.key_size]
    chunks = [template[i : i + 0xFF] for i in range(0, len(template), 0xFF)]
    data, sw = b"", 0
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        apdu = bytes((0x00 if last else 0x10, 0x87, algorithm, 0x9A, len(chunk))) + chunk
        data, sw = await exchange(transmit, apdu + (b"\x00" if last else b""))
        assert sw == 0x9000, f"GENERAL AUTHENTICATE chunk {index}: {sw:04x}"
    return decode_one(decode_one(data, 0x7C), 0x82)


async def piv_session(transmit: Transmit, public_key: rsa.RSAPublicKey) -> PivSession:
    """SELECT PIV, GET DATA CHUID, VERIFY 80, GENERAL AUTHENTICATE 9A; the signature checked."""
    _, select_sw = await exchange(transmit, SELECT_PIV)
    chuid, chuid_sw = await exchange(transmit, GET_CHUID)
    assert chuid_sw == 0x9000, f"GET DATA CHUID: {chuid_sw:04x}"
    _, verify_sw = await exchange(transmit, VERIFY_80)
    message = b"piv through the daemons"
    signature = await sign_9a(transmit, public_key, message)
    numbers = public_key.public_numbers()
    recovered = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n)
    size = public_key.key_size // 8
    assert recovered.to_bytes(size, "big") == pkcs1_block(message, size), "9A signed wrongly"
    return PivSession(select_sw, chuid, verify_sw, signature)


async def card_key_9a(transmit: Transmit) -> rsa.RSAPublicKey:
    """The public key of the certificate the card holds for 9A (SELECT, GET DATA 5FC105)."""
    _, sw = await exchange(transmit, SELECT_PIV)
    assert sw == 0x9000, f"SELECT PIV: {sw:04x}"
    data, sw = await exchange(transmit, bytes.fromhex("00CB3FFF055C035FC10500"))
    assert sw == 0x9000, f"GET DATA 5FC105: {sw:04x}"
    der = decode_fields(decode_one(data, 0x53), where="certificate object")[0x70]
    key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def key_9a(card_dir: Path) -> rsa.RSAPublicKey:
    """The public key of a card directory's first credential (PIV key 9A)."""
    certificate = x509.load_pem_x509_certificate((card_dir / "cert-1.pem").read_bytes())
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key
