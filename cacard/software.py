"""A card key for a private key held in memory, whichever its kind: :func:`software_key`."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .ec import SoftwareECKey
from .keys import AnyCardKey
from .rsa import SoftwareKey, UnsupportedKeyError

__all__ = ["software_key"]


def software_key(key: PrivateKeyTypes) -> AnyCardKey:
    """:class:`~cacard.ec.SoftwareECKey` for an EC key, :class:`~cacard.rsa.SoftwareKey` for
    RSA; :class:`~cacard.rsa.UnsupportedKeyError` for any other key, curve or size."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SoftwareECKey(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return SoftwareKey(key)
    # Not SoftwareKey's refusal, which speaks of the CAC driver: EC keys are cards' too.
    raise UnsupportedKeyError(
        f"{type(key).__name__} is not a key a card holds (RSA, P-256 or P-384)"
    )
