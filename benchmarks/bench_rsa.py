"""Raw RSA private operations of :class:`cacard.rsa.SoftwareKey` beside ``cryptography``'s own
RSA-2048 PKCS#1 v1.5 signing rate, measured in the same run.

Each row feeds ``private_operation`` the kind of block a host sends a CAC card: a PKCS#1 v1.5
signature block (type 1), a PSS-encoded block, a PKCS#1 v1.5 (type 2) and an OAEP ciphertext,
for 2048- and 3072-bit keys. The ratio column divides by the RSA-2048 ``sign`` rate (the
issue's targets: type 1 >= 0.9, the others >= 0.5); the last column divides by ``sign`` with a
key of the same size. The pure-Python fallback (no libcrypto) is measured once for scale.

Run: ``taskset -c 1 python -m benchmarks.bench_rsa [--seconds 1]``: pinning to one CPU keeps
the numbers steady on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import time
from collections.abc import Callable
from unittest import mock

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import cacard.rsa
from cacard.rsa import SoftwareKey

MESSAGE = b"data to sign (max 100 bytes)\n"


def rate(step: Callable[[], object], seconds: float) -> float:
    """Best of five runs, in operations per second."""
    calls = 1
    while True:  # size the loop so one run lasts about seconds / 5
        start = time.perf_counter()
        for _ in range(calls):
            step()
        if time.perf_counter() - start > seconds / 5:
            break
        calls *= 2
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        best = max(best, calls / (time.perf_counter() - start))
    return best


def cryptography_sign(key: rsa.RSAPrivateKey) -> Callable[[], bytes]:
    return lambda: key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def blocks(key: rsa.RSAPrivateKey) -> dict[str, bytes]:
    """One block of each kind a host sends, built with cryptography's own padding."""
    public = key.public_key()
    numbers = public.public_numbers()
    size = key.key_size // 8

    def encoded(signature: bytes) -> bytes:  # the padded block a signature was made from
        return pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(size, "big")

    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    return {
        "PKCS#1 v1.5 type 1 (sign)": encoded(
            key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        ),
        "PSS-encoded (sign)": encoded(key.sign(MESSAGE, pss, hashes.SHA256())),
        "PKCS#1 v1.5 type 2 (decrypt)": public.encrypt(secrets.token_bytes(32), padding.PKCS1v15()),
        "OAEP (decrypt)": public.encrypt(secrets.token_bytes(32), oaep),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    seconds = parser.parse_args().seconds
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    keys = {bits: rsa.generate_private_key(65537, bits) for bits in (2048, 3072)}
    baseline = rate(cryptography_sign(keys[2048]), seconds)
    print(f"raw RSA backend: {cacard.rsa.raw_backend()}")
    print(f"baseline: cryptography RSA-2048 PKCS#1 v1.5 SHA-256 sign {baseline:,.0f}/s")
    print(f"{'bits':>4} {'block':30} {'ops/s':>8} {'/ 2048 sign':>12} {'/ same-size sign':>17}")
    for bits, key in keys.items():
        same_size = baseline if bits == 2048 else rate(cryptography_sign(key), seconds)
        card_key = SoftwareKey(key)
        for name, block in blocks(key).items():
            ops = rate(lambda: card_key.private_operation(block), seconds)  # noqa: B023
            print(f"{bits:>4} {name:30} {ops:8,.0f} {ops / baseline:12.2f} {ops / same_size:17.2f}")
        print(f"{bits:>4} {'cryptography sign (reference)':30} {same_size:8,.0f}")

    with mock.patch.object(cacard.rsa, "_libcrypto", return_value=None):
        fallback = SoftwareKey(keys[2048])
    block = blocks(keys[2048])["OAEP (decrypt)"]
    ops = rate(lambda: fallback.private_operation(block), seconds)
    print(f"2048 {'OAEP, pure-Python fallback':30} {ops:8,.0f} {ops / baseline:12.2f}")
    # Measured last as well, so a drift in machine load during the run shows.
    print(f"baseline again: {rate(cryptography_sign(keys[2048]), seconds):,.0f}/s")


if __name__ == "__main__":
    main()
