"""Sign and decrypt operations per second through :meth:`cacard.card.Card.transmit`, beside
``cryptography``'s own RSA-2048 PKCS#1 v1.5 signing rate measured in the same run.

One operation is the APDUs OpenSC's CAC driver sends for it, in T=1 form: INS 42 with P1=80 and
240 bytes, then P1=00 with the other 16 and Le=00; the 256-byte result comes back in one
response. The T=0 form (no Le, then GET RESPONSE) is measured for the PKCS#1 signature too, and
a SELECT + READ BUFFER pair shows the card layer's own cost. Blocks are built with
``cryptography``'s padding: PKCS#1 v1.5 signature (type 1), PSS-encoded, PKCS#1 v1.5 ciphertext,
OAEP ciphertext. The ratio column divides by ``cryptography``'s RSA-2048 ``sign``.

Run: ``taskset -c 1 python -m benchmarks.bench_card [--seconds 1]``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
from collections.abc import Callable

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from benchmarks.report import Figure, Section, Target
from benchmarks.timing import rate
from cacard.card import Card
from cacard.keys import Credential
from cacard.pin import PinState
from cacard.profile import CardProfile, new_card
from cacard.rsa import SoftwareKey

MESSAGE = b"data to sign (max 100 bytes)\n"
PIN = "77777777"
CHUNK = 240


def self_signed(key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    """A certificate for ``key``, signed by itself, valid for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def make_card(key: rsa.RSAPrivateKey) -> Card:
    profile = CardProfile((Credential(self_signed(key), SoftwareKey(key)),), bytes(14))
    card = new_card(profile, PinState.create(PIN, iterations=1))
    for apdu in ("00A4040C07A0000000790100", "0020000008" + PIN.encode().hex()):
        assert card.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00"
    return card


def blocks(key: rsa.RSAPrivateKey) -> dict[str, bytes]:
    """One block of each kind a host sends, padded by ``cryptography``."""
    public = key.public_key()
    numbers = public.public_numbers()
    size = key.key_size // 8

    def unsign(signature: bytes) -> bytes:  # the encoded block inside a signature
        value = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n)
        return value.to_bytes(size, "big")

    pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    return {
        "sign PKCS#1 v1.5": unsign(key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())),
        "sign PSS": unsign(key.sign(MESSAGE, pss, hashes.SHA256())),
        "decrypt PKCS#1 v1.5": public.encrypt(MESSAGE, padding.PKCS1v15()),
        "decrypt OAEP": public.encrypt(MESSAGE, oaep),
    }


def t1_operation(card: Card, block: bytes) -> Callable[[], bytes]:
    head = bytes.fromhex("00428000") + bytes((CHUNK,)) + block[:CHUNK]
    rest = block[CHUNK:]
    tail = bytes.fromhex("00420000") + bytes((len(rest),)) + rest + b"\x00"

    def run() -> bytes:
        card.transmit(head)
        answer = card.transmit(tail)
        assert answer[-2:] == b"\x90\x00", answer[-2:].hex()
        return answer

    return run


def t0_operation(card: Card, block: bytes) -> Callable[[], bytes]:
    head = bytes.fromhex("00428000") + bytes((CHUNK,)) + block[:CHUNK]
    rest = block[CHUNK:]
    tail = bytes.fromhex("00420000") + bytes((len(rest),)) + rest
    get_response = bytes.fromhex("00C0000000")

    def run() -> bytes:
        card.transmit(head)
        assert card.transmit(tail) == b"\x61\x00"
        return card.transmit(get_response)

    return run


def run_card(seconds: float = 1.0) -> Section:
    """Operations per second through ``Card.transmit`` against ``cryptography``'s sign."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    key = rsa.generate_private_key(65537, 2048)
    card = make_card(key)
    baseline = rate(lambda: key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256()), seconds)
    rows: list[tuple[str, float]] = []
    for name, block in blocks(key).items():
        rows.append((f"transmit: {name}", rate(t1_operation(card, block), seconds)))
    type1 = blocks(key)["sign PKCS#1 v1.5"]
    rows.append(("transmit: sign PKCS#1 v1.5, T=0 form", rate(t0_operation(card, type1), seconds)))
    select = bytes.fromhex("00A4040C07A000000116DB00")
    read = bytes.fromhex("8052000002010200")
    rows.append(
        (
            "transmit: SELECT + READ BUFFER (no crypto)",
            rate(lambda: (card.transmit(select), card.transmit(read)), seconds),
        )
    )
    return Section(
        "card",
        "RSA-2048 operations through cacard's Card.transmit (the APDUs OpenSC sends) against "
        "cryptography's RSA-2048 PKCS#1 v1.5 sign",
        [
            Figure(
                name,
                value,
                "ops/s",
                baseline,
                "cryptography RSA-2048 sign",
                Target("at_least", 0.9) if "crypto)" not in name else None,
            )
            for name, value in rows
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    result = run_card(parser.parse_args().seconds)
    baseline = result.figures[0].baseline or 0
    print(f"{'operation':46} {'ops/s':>10} {'ratio':>7}")
    print(f"{'cryptography RSA-2048 sign (baseline)':46} {baseline:10.0f} {1:7.2f}")
    for figure in result.figures:
        print(f"{figure.name:46} {figure.value:10.0f} {figure.ratio or 0:7.2f}")


if __name__ == "__main__":
    main()
