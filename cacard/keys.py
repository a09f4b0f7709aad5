"""The contract between the card and whatever holds its private keys.

A PKI applet (and the PIV application's RSA keys) gets an already padded block from the host
(PKCS#1 type 1 or 2, PSS, OAEP...) and needs the raw RSA private operation on it: a
:class:`CardKey`. The PIV application's EC keys sign a hash the host made and agree on a
secret with the host's point: an :class:`ECCardKey`. Where a key lives (in memory, an NSS
database, a PKCS#11 token) is the implementation's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "AnyCardKey",
    "CardKey",
    "Credential",
    "ECCardKey",
    "KeyOperationError",
    "key_description",
]


class KeyOperationError(Exception):
    """The private-key operation failed (bad block, token error); the card answers 6F00/6A80."""


class CardKey(Protocol):
    """An RSA private key the card can use but never sees."""

    @property
    def key_size(self) -> int:
        """Modulus size in bits."""
        ...

    @property
    def public_key(self) -> rsa.RSAPublicKey: ...

    def private_operation(self, block: bytes) -> bytes:
        """Return ``block ** d mod n`` as ``key_size // 8`` bytes, blinded against timing.

        ``block`` is exactly ``key_size // 8`` bytes and, read big-endian, below the modulus;
        otherwise raise :class:`KeyOperationError`.
        """
        ...


@runtime_checkable
class ECCardKey(Protocol):
    """An elliptic-curve private key (P-256 or P-384) the card can use but never sees."""

    @property
    def curve(self) -> ec.EllipticCurve: ...

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign_digest(self, digest: bytes) -> bytes:
        """An ECDSA signature (DER ``SEQUENCE { r, s }``) of ``digest``, a hash the host made.

        ``digest`` is as long as the curve's order (32 bytes for P-256, 48 for P-384);
        otherwise raise :class:`KeyOperationError`.
        """
        ...

    def exchange(self, peer_point: bytes) -> bytes:
        """ECDH with the host's uncompressed point (``04 || X || Y``): the shared X coordinate.

        Raise :class:`KeyOperationError` for a point that is not on the key's curve.
        """
        ...


#: Any key a card holds; ``isinstance(key, ECCardKey)`` tells the two apart.
AnyCardKey = CardKey | ECCardKey


def key_description(key: AnyCardKey) -> str:
    """``RSA-2048``, ``P-256``...: the key's kind as people name it."""
    if isinstance(key, ECCardKey):
        return {"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name, key.curve.name)
    return f"RSA-{key.key_size}"


@dataclass(frozen=True)
class Credential:
    """One certificate with its private key: what one PKI applet or PIV key slot holds.

    CAC's PKI applets hold RSA keys only (OpenSC's CAC driver is RSA-only); EC keys live in
    the PIV application.
    """

    certificate: x509.Certificate
    key: AnyCardKey
    label: str = ""
