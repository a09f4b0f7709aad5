"""A card from any PKCS#11 token (SoftHSM2, a hardware token through its module).

The private keys never leave the token: :class:`TokenKey` hands each block to the token.

- **Raw RSA** (``CKM_RSA_X_509``), when the token offers it: every block, whatever its padding,
  gets exactly ``block ** d mod n``. The key's ``CKA_SIGN`` permission is used when it has it,
  else ``CKA_DECRYPT`` (the raw operation is the same; tokens enforce the flags).
- **Fallback** for tokens without raw RSA (libcacard's, made exact where it can be):

  - a PKCS#1 v1.5 type-1 block (``00 01 FF…FF 00 payload``, at least 8 ``FF``) is signed with
    ``CKM_RSA_PKCS`` on its payload; the token pads it back to the same block, so the result is
    exactly the raw one;
  - any other block is decrypted with ``CKM_RSA_PKCS`` and the plaintext re-wrapped as
    ``00 02 03…03 00 plaintext``: **not** the raw result, but a type-2 block from which the host
    recovers the same plaintext. PSS-encoded and OAEP blocks cannot work this way: the token
    refuses them (:class:`~cacard.keys.KeyOperationError`) or, with implicit rejection, returns
    a random plaintext that the host's own check then rejects.

EC keys (P-256, P-384, for a card with PIV) are :class:`TokenECKey`: ECDSA with ``CKM_ECDSA`` on
the host's hash (the token's ``r || s`` re-encoded as DER), ECDH with ``CKM_ECDH1_DERIVE`` (no
KDF) into a session-only generic secret of the field's size whose value is read, then destroyed.
The host's point is checked on the curve here first: a token that skipped the check would leak
bits of the key to an invalid-curve attack.

Blinding against timing is the token's business (SoftHSM2 uses OpenSSL, which blinds). RSA
certificates and P-256/P-384 certificates with a private key of the same ``CKA_ID`` become
credentials; others are skipped with a warning that says why.

The library is ``python-pkcs11``: typed (``py.typed`` and stubs, so ``mypy --strict`` needs no
override), one exception class per ``CKR_*`` code, and it releases the GIL during token calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol, Self, cast

import pkcs11
from asn1crypto.core import OctetString
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from pkcs11 import KDF, Attribute, CertificateType, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11.util.ec import encode_named_curve_parameters

from cacard.ec import curve_named
from cacard.keys import AnyCardKey, Credential, KeyOperationError
from cacard.rsa import UnsupportedKeyError, check_rsa_key_size, type1_payload
from cardfloor.log import get_logger

__all__ = [
    "HOST_PACKAGES",
    "SOFTHSM2_MODULE",
    "Token",
    "TokenECKey",
    "TokenError",
    "TokenKey",
    "open_token",
]

log = get_logger(__name__)

#: Debian packages for the token the tests use; a hardware token brings its own module.
HOST_PACKAGES: Final = ("softhsm2",)

#: Where Debian's softhsm2 installs its PKCS#11 module.
SOFTHSM2_MODULE: Final = "/usr/lib/softhsm/libsofthsm2.so"

# What libcacard puts in the padding string of a re-wrapped plaintext (any non-zero byte works).
_REWRAP_PADDING_BYTE: Final = b"\x03"


class TokenError(Exception):
    """The token could not be used: no module, no such token, wrong PIN, missing objects."""


class _PrivateKeyObject(Protocol):
    """What python-pkcs11's RSA private key objects offer (its stubs split it into mixins)."""

    def sign(self, data: bytes, **kwargs: Any) -> bytes: ...
    def decrypt(self, data: bytes, **kwargs: Any) -> bytes: ...
    def __getitem__(self, key: Attribute) -> Any: ...


class _ECPrivateKeyObject(Protocol):
    """What python-pkcs11's EC private key objects offer."""

    def sign(self, data: bytes, **kwargs: Any) -> bytes: ...
    def derive_key(self, key_type: KeyType, key_length: int, **kwargs: Any) -> Any: ...
    def __getitem__(self, key: Attribute) -> Any: ...


@dataclass(frozen=True)
class _Operation:
    """How a key reaches the token: raw RSA or the PKCS#1 fallback, with which permission."""

    raw: bool
    can_sign: bool
    can_decrypt: bool


class TokenKey:
    """A :class:`~cacard.keys.CardKey` whose private operation runs on a PKCS#11 token.

    Built by :func:`open_token`; valid until its :class:`Token` is closed.
    """

    def __init__(
        self,
        key: _PrivateKeyObject,
        public_key: rsa.RSAPublicKey,
        operation: _Operation,
        lock: threading.Lock,
    ) -> None:
        self._key = key
        self._public_key = public_key
        self._modulus = public_key.public_numbers().n
        self._size = public_key.key_size // 8
        self._operation = operation
        self._lock = lock  # a PKCS#11 session runs one operation at a time

    @property
    def key_size(self) -> int:
        """Modulus size in bits."""
        return self._public_key.key_size

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    @property
    def raw(self) -> bool:
        """Whether the token does raw RSA (``CKM_RSA_X_509``) rather than the fallback."""
        return self._operation.raw

    def private_operation(self, block: bytes) -> bytes:
        """Return ``block ** d mod n`` from the token (see the module doc for the fallback).

        Raises :class:`~cacard.keys.KeyOperationError` for a block of the wrong length, not
        below the modulus, or refused by the token.
        """
        if len(block) != self._size:
            raise KeyOperationError(
                f"block is {len(block)} bytes; this {self.key_size}-bit key takes {self._size}"
            )
        if int.from_bytes(block, "big") >= self._modulus:
            raise KeyOperationError("block is not below the modulus")
        try:
            with self._lock:
                if self._operation.raw:
                    return self._raw(block)
                return self._fallback(block)
        except pkcs11.PKCS11Error as error:
            raise KeyOperationError(f"token refused the operation: {_describe(error)}") from error

    def _raw(self, block: bytes) -> bytes:
        if self._operation.can_sign:
            result = self._key.sign(block, mechanism=Mechanism.RSA_X_509)
        else:
            result = self._key.decrypt(block, mechanism=Mechanism.RSA_X_509)
        # Some modules strip leading zero bytes from the result.
        return result.rjust(self._size, b"\x00")

    def _fallback(self, block: bytes) -> bytes:
        payload = type1_payload(block)
        if payload is not None:
            if not self._operation.can_sign:
                raise KeyOperationError("token lacks raw RSA and the key may not sign")
            return self._key.sign(payload, mechanism=Mechanism.RSA_PKCS).rjust(self._size, b"\0")
        if not self._operation.can_decrypt:
            raise KeyOperationError(
                "token lacks raw RSA and the key may not decrypt: only PKCS#1 v1.5 type-1"
                " blocks can be signed"
            )
        plaintext = self._key.decrypt(block, mechanism=Mechanism.RSA_PKCS)
        padding_length = self._size - 3 - len(plaintext)
        if padding_length < 8:
            raise KeyOperationError(f"plaintext of {len(plaintext)} bytes is too long to re-wrap")
        return b"\x00\x02" + _REWRAP_PADDING_BYTE * padding_length + b"\x00" + plaintext


class TokenECKey:
    """An :class:`~cacard.keys.ECCardKey` (P-256, P-384) whose private key stays on a token.

    Built by :func:`open_token`; valid until its :class:`Token` is closed. The token's calls
    run without the GIL, one at a time per session (the lock is the session's).
    """

    def __init__(
        self, key: _ECPrivateKeyObject, public_key: ec.EllipticCurvePublicKey, lock: threading.Lock
    ) -> None:
        self._key = key
        self._public_key = public_key
        self._size = (public_key.curve.key_size + 7) // 8  # of a coordinate, r, s and a digest
        self._lock = lock

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign_digest(self, digest: bytes) -> bytes:
        """The token's ECDSA signature of ``digest`` (``CKM_ECDSA``), as DER."""
        if len(digest) != self._size:
            raise KeyOperationError(
                f"digest is {len(digest)} bytes; a {self.curve.name} key signs {self._size}"
            )
        try:
            with self._lock:
                raw = self._key.sign(digest, mechanism=Mechanism.ECDSA)
        except pkcs11.PKCS11Error as error:
            raise KeyOperationError(f"token refused ECDSA: {_describe(error)}") from error
        if len(raw) != 2 * self._size:
            raise KeyOperationError(
                f"token's ECDSA signature is {len(raw)} bytes, not r || s of {self._size} each"
            )
        r, s = (int.from_bytes(half, "big") for half in (raw[: self._size], raw[self._size :]))
        return utils.encode_dss_signature(r, s)

    def exchange(self, peer_point: bytes) -> bytes:
        """The shared X coordinate of ECDH with ``peer_point`` (``CKM_ECDH1_DERIVE``)."""
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(self.curve, peer_point)
        except ValueError as error:
            raise KeyOperationError(f"peer point: {error}") from None
        if peer_point[:1] != b"\x04":  # the token takes the uncompressed form
            raise KeyOperationError("peer point: not uncompressed (04 || X || Y)")
        try:
            with self._lock:
                secret = self._key.derive_key(
                    KeyType.GENERIC_SECRET,
                    8 * self._size,
                    mechanism=Mechanism.ECDH1_DERIVE,
                    mechanism_param=(KDF.NULL, None, peer_point),
                    # The value is what the card answers: it must be readable (the token
                    # refuses CKA_VALUE of a sensitive key); a session object, never stored.
                    template={
                        Attribute.TOKEN: False,
                        Attribute.SENSITIVE: False,
                        Attribute.EXTRACTABLE: True,
                    },
                )
                try:
                    value = bytes(secret[Attribute.VALUE])
                finally:
                    secret.destroy()
        except pkcs11.PKCS11Error as error:
            raise KeyOperationError(f"token refused ECDH: {_describe(error)}") from error
        if len(value) != self._size:
            raise KeyOperationError(f"token's ECDH secret is {len(value)} bytes, not {self._size}")
        return value

    def __repr__(self) -> str:
        return f"TokenECKey({self.curve.name})"


class Token:
    """An open PKCS#11 token and the credentials found on it. Close it (or use ``with``)."""

    def __init__(self, session: pkcs11.Session, credentials: Sequence[Credential]) -> None:
        self._session = session
        self.credentials: tuple[Credential, ...] = tuple(credentials)
        self.label: str = session.token.label

    def close(self) -> None:
        """Log out and close the session; the keys stop working."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_token(
    module: str | os.PathLike[str],
    *,
    pin: str | None,
    token_label: str | None = None,
    labels: Sequence[str] | None = None,
    raw_rsa: bool | None = None,
) -> Token:
    """Open a token through its PKCS#11 module and find its certificates with keys.

    ``token_label`` picks the token (needed when the module has several). ``pin`` is the user
    PIN (None for a token that needs no login). ``labels`` picks certificates by ``CKA_LABEL``,
    in that order; by default every RSA, P-256 or P-384 certificate whose key is on the token,
    sorted by ``CKA_ID``, others skipped with a warning. ``raw_rsa`` forces the RSA mechanism
    (default: ``CKM_RSA_X_509`` if the token lists it, else the fallback).

    Raises :class:`TokenError` or, for a requested certificate whose key a card cannot hold
    (another kind or curve, an RSA size outside 1024-4096),
    :class:`~cacard.rsa.UnsupportedKeyError`.
    """
    path = os.fspath(module)
    try:
        library = pkcs11.lib(path)
    except RuntimeError as error:  # pkcs11.PKCS11Error and python-pkcs11's load failures
        raise TokenError(f"cannot load PKCS#11 module {path}: {_describe(error)}") from error
    token = _find_token(library, path, token_label)
    if raw_rsa is None:
        raw_rsa = Mechanism.RSA_X_509 in token.slot.get_mechanisms()
    session = _login(token, pin)
    try:
        lock = threading.Lock()
        found = _credentials(session, labels, raw_rsa, lock)
    except BaseException:
        session.close()
        raise
    log.info(
        "pkcs11_token_opened",
        module=path,
        token=token.label,
        raw_rsa=raw_rsa,
        credentials=[credential.label for credential in found],
    )
    return Token(session, found)


def _find_token(library: Any, path: str, token_label: str | None) -> pkcs11.Token:
    # Modules list empty slots too (SoftHSM2 always keeps one free): only initialised tokens count.
    tokens = [
        token
        for token in library.get_tokens(token_label=token_label)
        if token.flags & TokenFlag.TOKEN_INITIALIZED
    ]
    if len(tokens) == 1:
        return cast(pkcs11.Token, tokens[0])
    if not tokens:
        wanted = f" labelled {token_label!r}" if token_label else ""
        raise TokenError(f"{path} has no initialised token{wanted}")
    raise TokenError(
        f"{path} has {len(tokens)} tokens {[t.label for t in tokens]}: choose one by label"
    )


def _login(token: pkcs11.Token, pin: str | None) -> pkcs11.Session:
    if pin is None and token.flags & TokenFlag.LOGIN_REQUIRED:
        raise TokenError(f"token {token.label!r} needs a PIN")
    try:
        return token.open(user_pin=pin)
    except pkcs11.UserAlreadyLoggedIn as error:
        raise TokenError(
            f"token {token.label!r} is already logged in by another open Token in this process"
        ) from error
    except (pkcs11.PinIncorrect, pkcs11.PinLenRange, pkcs11.PinLocked) as error:
        raise TokenError(f"token {token.label!r}: {_describe(error)}") from error
    except pkcs11.PKCS11Error as error:
        raise TokenError(f"cannot open token {token.label!r}: {_describe(error)}") from error


def _credentials(
    session: pkcs11.Session, labels: Sequence[str] | None, raw_rsa: bool, lock: threading.Lock
) -> list[Credential]:
    certificates = []
    for obj in session.get_objects(
        {
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        }
    ):
        value, key_id, label = (obj[a] for a in (Attribute.VALUE, Attribute.ID, Attribute.LABEL))
        certificates.append((bytes(key_id), str(label), bytes(value)))
    if labels is None:
        chosen = sorted(certificates)
    else:
        by_label = {entry[1]: entry for entry in certificates}
        missing = [label for label in labels if label not in by_label]
        if missing:
            raise TokenError(f"no certificate labelled {missing} (have {sorted(by_label)})")
        chosen = [by_label[label] for label in labels]

    credentials = []
    for key_id, label, value in chosen:
        try:
            try:
                certificate = x509.load_der_x509_certificate(value)
                public_key = certificate.public_key()
            except ValueError as error:
                raise TokenError(f"certificate {label!r} cannot be parsed: {error}") from error
            _check_public_key(public_key)
        except (UnsupportedKeyError, TokenError) as error:
            if labels is not None:
                raise
            log.warning("pkcs11_certificate_skipped", label=label, reason=str(error))
            continue
        key: AnyCardKey | None
        if isinstance(public_key, rsa.RSAPublicKey):
            key = _rsa_key(session, key_id, label, public_key, raw_rsa, lock, labels is not None)
        else:
            assert isinstance(public_key, ec.EllipticCurvePublicKey)  # _check_public_key
            key = _ec_key(session, key_id, label, public_key, lock, labels is not None)
        if key is not None:
            credentials.append(Credential(certificate, key, label))
    return credentials


def _check_public_key(public_key: object) -> None:
    """Raise :class:`UnsupportedKeyError` unless a card can hold the key: RSA of 1024-4096
    bits, P-256 or P-384."""
    if isinstance(public_key, rsa.RSAPublicKey):
        check_rsa_key_size(public_key.key_size)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        curve_named(public_key.curve.name)
    else:
        raise UnsupportedKeyError(
            f"{type(public_key).__name__} is not a key a card holds (RSA, P-256, P-384)"
        )


def _rsa_key(
    session: pkcs11.Session,
    key_id: bytes,
    label: str,
    public_key: rsa.RSAPublicKey,
    raw_rsa: bool,
    lock: threading.Lock,
    required: bool,
) -> TokenKey | None:
    found = _private_key(session, KeyType.RSA, key_id)
    problem = None
    if len(found) != 1:
        problem = f"{len(found)} RSA private keys have its CKA_ID {key_id.hex() or '(empty)'}"
    elif int.from_bytes(found[0][Attribute.MODULUS], "big") != public_key.public_numbers().n:
        problem = f"the private key with CKA_ID {key_id.hex()} has another modulus"
    if problem is not None:
        _unusable(label, problem, required)
        return None
    key = cast(_PrivateKeyObject, found[0])
    operation = _Operation(
        raw=raw_rsa,
        can_sign=bool(key[Attribute.SIGN]),
        can_decrypt=bool(key[Attribute.DECRYPT]),
    )
    return TokenKey(key, public_key, operation, lock)


def _ec_key(
    session: pkcs11.Session,
    key_id: bytes,
    label: str,
    public_key: ec.EllipticCurvePublicKey,
    lock: threading.Lock,
    required: bool,
) -> TokenECKey | None:
    """The EC private key of ``key_id``, on the certificate's curve and, when the token lists
    the public key too (a private EC key object has no point), with the certificate's point."""
    found = _private_key(session, KeyType.EC, key_id)
    problem = None
    if len(found) != 1:
        problem = f"{len(found)} EC private keys have its CKA_ID {key_id.hex() or '(empty)'}"
    elif bytes(found[0][Attribute.EC_PARAMS]) != _ec_params(public_key.curve):
        problem = f"the private key with CKA_ID {key_id.hex()} is not on {public_key.curve.name}"
    elif not _point_matches(session, key_id, public_key):
        problem = f"the public key with CKA_ID {key_id.hex()} has another point"
    if problem is not None:
        _unusable(label, problem, required)
        return None
    return TokenECKey(cast(_ECPrivateKeyObject, found[0]), public_key, lock)


def _ec_params(curve: ec.EllipticCurve) -> bytes:
    """``CKA_EC_PARAMS`` of a named curve: the DER of its OID (asn1crypto and cryptography name
    P-256 and P-384 alike)."""
    return encode_named_curve_parameters(curve.name)


def _point_matches(
    session: pkcs11.Session, key_id: bytes, public_key: ec.EllipticCurvePublicKey
) -> bool:
    expected = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    for obj in session.get_objects(
        {
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: KeyType.EC,
            Attribute.ID: key_id,
        }
    ):
        point = bytes(obj[Attribute.EC_POINT])
        # PKCS#11 says DER OCTET STRING; some modules store the bare point.
        if point != expected and _unwrapped(point) != expected:
            return False
    return True


def _unwrapped(point: bytes) -> bytes | None:
    try:
        return cast(bytes, OctetString.load(point, strict=True).native)
    except ValueError:
        return None


def _private_key(session: pkcs11.Session, key_type: KeyType, key_id: bytes) -> list[Any]:
    if not key_id:
        return []
    return list(
        session.get_objects(
            {
                Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                Attribute.KEY_TYPE: key_type,
                Attribute.ID: key_id,
            }
        )
    )


def _unusable(label: str, problem: str, required: bool) -> None:
    """Raise for a certificate that was asked for; log and skip one found by default."""
    if required:
        raise TokenError(f"certificate {label!r}: {problem}")
    log.warning("pkcs11_certificate_skipped", label=label, reason=problem)


def _describe(error: BaseException) -> str:
    """python-pkcs11 errors often carry no message: name the class (the CKR code) then."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
