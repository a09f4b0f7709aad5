"""The contract between the card and whatever holds its private keys.

A PKI applet gets an already padded block from the host (PKCS#1 type 1 or 2, PSS, OAEP...) and
needs the raw RSA private operation on it. Where the key lives (in memory, an NSS database, a
PKCS#11 token) is the :class:`CardKey` implementation's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa


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


@dataclass(frozen=True)
class Credential:
    """One certificate with its private key: what one PKI applet holds."""

    certificate: x509.Certificate
    key: CardKey
    label: str = ""
