"""EC private keys held in memory: :class:`SoftwareECKey`, the :class:`~cacard.keys.ECCardKey`
of cards made from files (``cacard new --key p256``, PEM, PKCS#12, an exported NSS database)
and of keys the PIV application generates.

The PIV card edge signs a hash the host made (SP 800-73-4 Part 2 Appendix A): ``cryptography``
signs it as ``Prehashed`` with the hash of the curve's size, which is what ECDSA does with any
hash of that length, so the host may have used another hash of the same size.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .keys import KeyOperationError
from .rsa import UnsupportedKeyError

__all__ = ["CURVES", "SoftwareECKey", "curve_named"]

#: The curves a card holds (SP 800-78-4: PIV's P-256 and P-384), by ``cryptography``'s name.
CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
}
#: The hash of each curve's size: ECDSA's input length.
_DIGESTS: Final[dict[str, hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256(),
    "secp384r1": hashes.SHA384(),
}


def curve_named(name: str) -> ec.EllipticCurve:
    """The curve ``name`` (``secp256r1``, ``secp384r1``); :class:`UnsupportedKeyError` else."""
    try:
        return CURVES[name]
    except KeyError:
        raise UnsupportedKeyError(
            f"curve {name} is not supported (a card holds {', '.join(CURVES)})"
        ) from None


class SoftwareECKey:
    """A :class:`~cacard.keys.ECCardKey` for a P-256 or P-384 key held by ``cryptography``.

    Raises :class:`~cacard.rsa.UnsupportedKeyError` for a non-EC key or another curve.
    Thread-safe.
    """

    def __init__(self, key: PrivateKeyTypes) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise UnsupportedKeyError(f"not an EC key: {type(key).__name__}")
        curve_named(key.curve.name)
        self._key = key
        self._public_key = key.public_key()
        self._digest = _DIGESTS[key.curve.name]
        # Built once: it is immutable, and building it costs more than a tenth of a P-256
        # signature.
        self._ecdsa = ec.ECDSA(utils.Prehashed(self._digest))

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._key.curve

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign_digest(self, digest: bytes) -> bytes:
        if len(digest) != self._digest.digest_size:
            raise KeyOperationError(
                f"digest is {len(digest)} bytes; a {self.curve.name} key signs "
                f"{self._digest.digest_size}"
            )
        return self._key.sign(digest, self._ecdsa)

    def exchange(self, peer_point: bytes) -> bytes:
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self.curve, peer_point)
        except ValueError as error:
            raise KeyOperationError(f"peer point: {error}") from None
        return self._key.exchange(ec.ECDH(), peer)

    def __repr__(self) -> str:
        return f"SoftwareECKey({self.curve.name})"
