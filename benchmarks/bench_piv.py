"""PIV signatures per second through :meth:`cacard.card.Card.transmit`, beside ``cryptography``'s
own signing rate for the same key, measured in the same run.

One operation is one GENERAL AUTHENTICATE of key 9A, ``7C { 82 00, 81 <input> }``, after the
card's PIV application was selected and VERIFY ``80`` succeeded once (9A keeps the PIN's
verified state; 9C would need VERIFY before each signature). ECDSA P-256 and P-384 sign the
hash (SHA-256, SHA-384) and answer in one short response; the ratio divides by
``cryptography``'s ``sign(hash, ECDSA(Prehashed(...)))`` with the same key (target >= 0.9).
RSA-2048 takes the PKCS#1 v1.5 block in one extended APDU and answers in one extended response;
its ratio divides by ``cryptography``'s RSA-2048 PKCS#1 v1.5 SHA-256 sign, for context. The
card key's own rate (:meth:`cacard.ec.SoftwareECKey.sign_digest`, no card) shows how much of
the gap is the card layer's. A row's rates are measured in turn, in bursts of about 0.5 ms, for
the whole measurement time, each from its median burst: on a shared machine whose speed drifts,
each meets the same load, and a burst another process interrupted does not count.

Run: ``taskset -c 1 python -m benchmarks.bench_piv [--seconds 1]``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import time
from collections.abc import Callable

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from benchmarks.bench_card import self_signed
from benchmarks.report import Figure, Section, Target
from cacard.card import Card
from cacard.ec import SoftwareECKey
from cacard.keys import AnyCardKey, Credential, KeyOperationError
from cacard.pin import PinState
from cacard.piv.ber import encode
from cacard.piv.objects import PIV_AID
from cacard.profile import Applications, CardProfile, new_card
from cacard.software import software_key
from cardfloor.iso7816.apdu import CommandAPDU

MESSAGE = b"data to sign (max 100 bytes)\n"
PIN = "123456"
TARGET = Target("at_least", 0.9)
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
#: PIV algorithm identifiers (SP 800-78-4 Table 6-2).
ALGORITHMS = {"secp256r1": 0x11, "secp384r1": 0x14, 2048: 0x07}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class FixedSignatureKey:
    """An EC card key that answers every hash with the same signature: a card built on it
    spends its time in the card layer only (APDU, applet, BER-TLV), which is what it
    measures, directly rather than as the difference of two noisy rates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, signature: bytes) -> None:
        self.curve = key.curve
        self.public_key = key.public_key()
        self._signature = signature

    def sign_digest(self, digest: bytes) -> bytes:
        return self._signature

    def exchange(self, peer_point: bytes) -> bytes:
        raise KeyOperationError("a benchmark key does no ECDH")


def make_card(key: PrivateKey, card_key: AnyCardKey | None = None) -> Card:
    """A ``piv`` card with ``key`` in 9A (``card_key`` in its place, when given), PIV selected
    and the PIN verified."""
    profile = CardProfile(
        (Credential(self_signed(key), card_key or software_key(key)),),
        bytes(14),
        atr=Applications.PIV.default_atr,
        applications=Applications.PIV,
    )
    card = new_card(profile, PinState.create(PIN, iterations=1))
    select = CommandAPDU(0x00, 0xA4, 0x04, 0x00, PIV_AID, 256)
    verify = CommandAPDU(0x00, 0x20, 0x00, 0x80, PIN.encode().ljust(8, b"\xff"))
    for command in (select, verify):
        assert card.transmit(command.to_bytes())[-2:] == b"\x90\x00"
    return card


def sign_command(algorithm: int, data: bytes) -> bytes:
    """GENERAL AUTHENTICATE of 9A: short when it fits, extended otherwise."""
    template = encode([(0x7C, encode([(0x82, b""), (0x81, data)]))])
    extended = len(template) > 255
    le = 65536 if extended else 256
    return CommandAPDU(0x00, 0x87, algorithm, 0x9A, template, le, extended).to_bytes()


def card_operation(card: Card, command: bytes) -> Callable[[], bytes]:
    def run() -> bytes:
        answer = card.transmit(command)
        assert answer[-2:] == b"\x90\x00", answer[-2:].hex()
        return answer

    return run


#: How long one burst of calls lasts: short enough that most escape other processes' time slices.
BURST_SECONDS = 0.0005


def _burst(step: Callable[[], object]) -> int:
    start = time.perf_counter()
    for _ in range(3):
        step()
    each = (time.perf_counter() - start) / 3
    return max(1, int(BURST_SECONDS / each))


def paired(steps: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """The rate of each step, measured in turn in short bursts for ``seconds`` in all, from its
    median burst: on a shared machine a burst another process interrupts is an outlier the
    median ignores, and steps measured in turn meet the same drift in speed."""
    bursts = {name: _burst(step) for name, step in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    deadline = time.perf_counter() + seconds
    while len(times[next(iter(steps))]) < 5 or time.perf_counter() < deadline:
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(bursts[name]):
                step()
            times[name].append(time.perf_counter() - start)
    return {name: bursts[name] / statistics.median(spent) for name, spent in times.items()}


def _ec_figures(curve: ec.EllipticCurve, seconds: float) -> list[Figure]:
    key = ec.generate_private_key(curve)
    algorithm: hashes.HashAlgorithm = (
        hashes.SHA256() if isinstance(curve, ec.SECP256R1) else hashes.SHA384()
    )
    digest = hashlib.new(algorithm.name, MESSAGE).digest()
    prehashed = ec.ECDSA(utils.Prehashed(algorithm))
    card = make_card(key)
    card_key = SoftwareECKey(key)
    command = sign_command(ALGORITHMS[curve.name], digest)
    fixed = make_card(key, FixedSignatureKey(key, key.sign(digest, prehashed)))
    rates = paired(
        {
            "baseline": lambda: key.sign(digest, prehashed),
            "card": card_operation(card, command),
            "key": lambda: card_key.sign_digest(digest),
            "layer": card_operation(fixed, command),
        },
        seconds,
    )
    baseline, card_rate, key_rate = rates["baseline"], rates["card"], rates["key"]
    label = "P-256" if isinstance(curve, ec.SECP256R1) else "P-384"
    baseline_name = f"cryptography {label} sign (ECDSA, prehashed {algorithm.name.upper()})"
    return [
        Figure(f"transmit: ECDSA {label} sign (9A)", card_rate, "ops/s", baseline,
               baseline_name, TARGET),
        Figure(f"SoftwareECKey.sign_digest {label} (no card)", key_rate, "ops/s", baseline,
               baseline_name, note="the card key alone, for where the time goes"),
        Figure(f"card layer per {label} signature", 1e6 / rates["layer"], "us",
               note="transmit with a key that signs in no time: APDU, applet, BER-TLV"),
    ]  # fmt: skip


def _rsa_figure(seconds: float) -> Figure:
    key = rsa.generate_private_key(65537, 2048)
    info = SHA256_DIGEST_INFO + hashlib.sha256(MESSAGE).digest()
    block = b"\x00\x01" + b"\xff" * (256 - 3 - len(info)) + b"\x00" + info
    card = make_card(key)
    rates = paired(
        {
            "baseline": lambda: key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256()),
            "card": card_operation(card, sign_command(ALGORITHMS[2048], block)),
        },
        seconds,
    )
    baseline, card_rate = rates["baseline"], rates["card"]
    return Figure(
        "transmit: RSA-2048 sign (9A, extended APDU)",
        card_rate,
        "ops/s",
        baseline,
        "cryptography RSA-2048 PKCS#1 v1.5 SHA-256 sign",
        note="for context",
    )


def run_piv(seconds: float = 1.0) -> Section:
    """PIV signatures through ``Card.transmit`` against ``cryptography``'s own signing."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = [
        *_ec_figures(ec.SECP256R1(), seconds),
        *_ec_figures(ec.SECP384R1(), seconds),
        _rsa_figure(seconds),
    ]
    return Section(
        "piv",
        "PIV GENERAL AUTHENTICATE signatures (key 9A) through cacard's Card.transmit against "
        "cryptography's own sign with the same key",
        figures,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    result = run_piv(parser.parse_args().seconds)
    print(f"{'operation':46} {'value':>9} {'unit':>5} {'baseline':>9} {'ratio':>6} target")
    for figure in result.figures:
        target = figure.target.describe() if figure.target else ""
        print(
            f"{figure.name:46} {figure.value:9,.0f} {figure.unit:>5} {figure.baseline or 0:9,.0f} "
            f"{figure.ratio or 0:6.2f} {target}"
        )


if __name__ == "__main__":
    main()
