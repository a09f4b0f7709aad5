"""Raw RSA private operations of :class:`cacard.rsa.SoftwareKey` beside ``cryptography``'s own
RSA-2048 PKCS#1 v1.5 signing rate, measured in the same run.

Each row feeds ``private_operation`` the kind of block a host sends a CAC card: a PKCS#1 v1.5
signature block (type 1), a PSS-encoded block, a PKCS#1 v1.5 (type 2) and an OAEP ciphertext,
for 2048- and 3072-bit keys. The ratio divides by ``cryptography``'s ``sign`` with a key of the
same size (the issue's target: >= 0.9 for every kind and size). The pure-Python fallback
(no libcrypto) is measured once for scale.

Non-type-1 blocks go through the system's ``libcrypto`` (see :mod:`cacard.rsa`), which is not
the OpenSSL inside ``cryptography``'s wheel: each such row also names, in its note, the
system library's own sign rate for that key size (``openssl speed``), the ceiling of that path.

Run: ``taskset -c 1 python -m benchmarks.bench_rsa [--seconds 1]``: pinning to one CPU keeps
the numbers steady on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import shutil
import subprocess
from collections.abc import Callable
from unittest import mock

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import cacard.rsa
from benchmarks.report import Figure, Section, Target
from benchmarks.timing import rate
from cacard.rsa import SoftwareKey

MESSAGE = b"data to sign (max 100 bytes)\n"
TARGET = Target("at_least", 0.9)


def cryptography_sign(key: rsa.RSAPrivateKey) -> Callable[[], bytes]:
    return lambda: key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def system_sign_rates(seconds: float) -> dict[int, float]:
    """RSA-2048 and 3072 sign/s of the system's OpenSSL (``openssl speed``); {} without it."""
    if shutil.which("openssl") is None:
        return {}
    command = ["openssl", "speed", "-seconds", str(max(1, round(seconds))), "-mr"]
    output = subprocess.run(
        [*command, "rsa2048", "rsa3072"], capture_output=True, text=True, check=False
    ).stdout
    rates: dict[int, float] = {}
    for line in output.splitlines():  # "+F2:<n>:<bits>:<sign/s>:<verify/s>"
        if line.startswith("+F2:"):
            _, _, bits, signs, _ = line.split(":")
            rates[int(bits)] = float(signs)
    return rates


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


def run_rsa(seconds: float = 1.0) -> Section:
    """Raw private-operation rates for each block kind and key size, against ``cryptography``'s
    RSA-2048 sign (the ratio) and the same-size sign (in the note)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    keys = {bits: rsa.generate_private_key(65537, bits) for bits in (2048, 3072)}
    baseline = rate(cryptography_sign(keys[2048]), seconds)
    system = system_sign_rates(seconds)
    result = Section(
        "rsa",
        "raw RSA private operations of cacard's SoftwareKey against cryptography's "
        f"RSA-2048 PKCS#1 v1.5 SHA-256 sign (backend: {cacard.rsa.raw_backend()})",
    )
    for bits, key in keys.items():
        same_size = baseline if bits == 2048 else rate(cryptography_sign(key), seconds)
        card_key = SoftwareKey(key)
        for name, block in blocks(key).items():
            ops = rate(lambda: card_key.private_operation(block), seconds)  # noqa: B023
            note = ""
            if "type 1" not in name and bits in system:
                note = (
                    f"system libcrypto's own RSA-{bits} sign: {system[bits]:,.0f}/s "
                    f"(this path at {ops / system[bits]:.2f}x of it)"
                )
            result.figures.append(
                Figure(
                    f"RSA-{bits} {name}",
                    ops,
                    "ops/s",
                    same_size,
                    f"cryptography RSA-{bits} sign",
                    TARGET,
                    note=note,
                )
            )
        result.series[f"cryptography RSA-{bits} sign"] = same_size
        if bits in system:
            result.series[f"system libcrypto RSA-{bits} sign (openssl speed)"] = system[bits]

    with mock.patch.object(cacard.rsa, "_libcrypto", return_value=None):
        fallback = SoftwareKey(keys[2048])
    block = blocks(keys[2048])["OAEP (decrypt)"]
    ops = rate(lambda: fallback.private_operation(block), seconds)
    result.figures.append(
        Figure("RSA-2048 OAEP, pure-Python fallback", ops, "ops/s", baseline,
               "cryptography RSA-2048 sign", note="for scale: used only without libcrypto")
    )  # fmt: skip
    # Measured last as well, so a drift in machine load during the run shows.
    result.series["cryptography RSA-2048 sign, again"] = rate(
        cryptography_sign(keys[2048]), seconds
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    result = run_rsa(parser.parse_args().seconds)
    print(result.description)
    print(f"{'operation':40} {'ops/s':>8} {'/ same-size sign':>17} {'target':>12}")
    for figure in result.figures:
        target = figure.target.describe() if figure.target else ""
        print(f"{figure.name:40} {figure.value:8,.0f} {figure.ratio or 0:17.2f} {target:>12}")
        if figure.note:
            print(f"    {figure.note}")
    for name, value in result.series.items():
        print(f"{name}: {value:,.0f}/s")


if __name__ == "__main__":
    main()
