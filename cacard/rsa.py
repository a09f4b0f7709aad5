"""RSA private keys held in memory: :class:`SoftwareKey`, the :class:`~cacard.keys.CardKey` of
cards made from files (``cacard new``, PEM, PKCS#12, an exported NSS database).

The host pads; the card computes the raw ``block ** d mod n``. Two library paths do that:

- **PKCS#1 v1.5 type-1 blocks** (``00 01 FF…FF 00 payload``, at least 8 ``FF``), which is what
  every PKCS#1 v1.5 signature is: ``cryptography``'s ``sign`` with ``PKCS1v15`` and
  ``NoDigestInfo`` rebuilds exactly the same block from the payload, so its signature *is* the raw
  result, at ``cryptography``'s full speed. Each key checks this once when it is built (the
  signature, raised to ``e``, must give the block back); if it does not hold, every block takes
  the raw path below.
- **every other block** (PSS-encoded, OAEP or PKCS#1 type-2 ciphertexts, anything below the
  modulus): ``cryptography`` has no raw RSA, so the system's OpenSSL 3 ``libcrypto`` does it
  through ``ctypes`` (``EVP_PKEY_decrypt`` with ``RSA_NO_PADDING``). OpenSSL blinds RSA private
  operations by default and checks the CRT result against the public key. Without a usable
  ``libcrypto.so.3`` (Debian package ``libssl3``), a blinded CRT exponentiation on Python
  integers takes over: correct and blinded, but about 30 times slower; a warning says so.

Both paths refuse a block of the wrong length or not below the modulus with
:class:`~cacard.keys.KeyOperationError`. EC and other non-RSA keys are refused when the key is
built, with :class:`UnsupportedKeyError`: OpenSC's CAC driver is RSA-only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import secrets
import weakref
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from cacard.keys import KeyOperationError
from cardfloor.log import get_logger

__all__ = [
    "HOST_PACKAGES",
    "MAX_KEY_SIZE",
    "MIN_KEY_SIZE",
    "SoftwareKey",
    "UnsupportedKeyError",
    "check_rsa_key_size",
    "raw_backend",
    "require_rsa",
    "type1_payload",
]

log = get_logger(__name__)

#: Debian packages this module uses when present: the system libcrypto for the raw path.
HOST_PACKAGES: Final = ("libssl3",)

MIN_KEY_SIZE: Final = 1024
MAX_KEY_SIZE: Final = 4096

# PKCS#1 v1.5 (RFC 8017 §9.2 note 1 and §7.2.1): the padding string is at least 8 bytes.
_PKCS1_MIN_PADDING: Final = 8

# OpenSSL constants (openssl/rsa.h, openssl/crypto.h).
_RSA_NO_PADDING: Final = 3
_OPENSSL_3: Final = 0x30000000

# Library names to try, most specific first: Debian 12's libssl3 ships libcrypto.so.3.
# cryptography's own OpenSSL is linked statically into its extension with hidden symbols, so
# it cannot be reached from ctypes.
_LIBCRYPTO_NAMES: Final = ("libcrypto.so.3", "libcrypto.3.dylib")


class UnsupportedKeyError(ValueError):
    """The key cannot go on a CAC card: not RSA, or its size is outside 1024-4096 bits."""


def check_rsa_key_size(key_size: int) -> None:
    """Raise :class:`UnsupportedKeyError` unless a CAC card can hold an RSA key of this size."""
    if not MIN_KEY_SIZE <= key_size <= MAX_KEY_SIZE or key_size % 8:
        raise UnsupportedKeyError(
            f"RSA key size {key_size} bits: a CAC card holds {MIN_KEY_SIZE}-{MAX_KEY_SIZE}-bit"
            " keys whose size is a multiple of 8"
        )


def require_rsa(key: object) -> None:
    """Raise :class:`UnsupportedKeyError` naming the key type unless ``key`` is RSA."""
    if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        raise UnsupportedKeyError(
            f"{type(key).__name__} is not an RSA key: OpenSC's CAC driver supports RSA only"
        )


def type1_payload(block: bytes) -> bytes | None:
    """The payload of a PKCS#1 v1.5 type-1 block ``00 01 FF…FF 00 payload``, else None.

    Only blocks that ``PKCS1v15`` padding would rebuild byte for byte qualify: at least 8 ``FF``
    bytes and nothing else before the ``00`` separator.
    """
    if block[:2] != b"\x00\x01":
        return None
    separator = block.find(b"\x00", 2)
    if separator - 2 < _PKCS1_MIN_PADDING or block.count(b"\xff", 2, separator) != separator - 2:
        return None  # no separator (-1), short padding, or a non-FF byte in the padding
    return block[separator + 1 :]


class _Libcrypto:
    """The handful of OpenSSL 3 ``libcrypto`` calls the raw path needs, typed for ctypes."""

    def __init__(self, cdll: ctypes.CDLL, name: str) -> None:
        self.name = name
        c_void_p, c_int, c_size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        self.d2i_AutoPrivateKey = _function(
            cdll.d2i_AutoPrivateKey,
            c_void_p,
            [c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long],
        )
        self.EVP_PKEY_free = _function(cdll.EVP_PKEY_free, None, [c_void_p])
        self.EVP_PKEY_CTX_new = _function(cdll.EVP_PKEY_CTX_new, c_void_p, [c_void_p, c_void_p])
        self.EVP_PKEY_CTX_free = _function(cdll.EVP_PKEY_CTX_free, None, [c_void_p])
        self.EVP_PKEY_decrypt_init = _function(cdll.EVP_PKEY_decrypt_init, c_int, [c_void_p])
        self.EVP_PKEY_CTX_set_rsa_padding = _function(
            cdll.EVP_PKEY_CTX_set_rsa_padding, c_int, [c_void_p, c_int]
        )
        self.EVP_PKEY_decrypt = _function(
            cdll.EVP_PKEY_decrypt,
            c_int,
            [c_void_p, ctypes.c_char_p, ctypes.POINTER(c_size_t), ctypes.c_char_p, c_size_t],
        )
        self.ERR_get_error = _function(cdll.ERR_get_error, ctypes.c_ulong, [])
        self.ERR_error_string_n = _function(
            cdll.ERR_error_string_n, None, [ctypes.c_ulong, ctypes.c_char_p, c_size_t]
        )

    def errors(self) -> str:
        """Drain this thread's OpenSSL error queue into one message."""
        messages = []
        while code := self.ERR_get_error():
            text = ctypes.create_string_buffer(256)
            self.ERR_error_string_n(code, text, len(text))
            messages.append(text.value.decode(errors="replace"))
        return "; ".join(messages) or "no OpenSSL error recorded"


def _function(
    function: Callable[..., object], restype: type | None, argtypes: list[type]
) -> Callable[..., int]:
    function.restype = restype  # type: ignore[attr-defined]
    function.argtypes = argtypes  # type: ignore[attr-defined]
    return function  # type: ignore[return-value]


@functools.cache
def _libcrypto() -> _Libcrypto | None:
    """The system's OpenSSL 3 libcrypto, or None (then the raw path is pure Python)."""
    names = list(_LIBCRYPTO_NAMES)
    if found := ctypes.util.find_library("crypto"):
        names.append(found)
    for name in dict.fromkeys(names):
        try:
            cdll = ctypes.CDLL(name)
            version_num = cdll.OpenSSL_version_num
            version_num.restype = ctypes.c_ulong
            version = int(version_num())
            if version < _OPENSSL_3:
                log.debug("libcrypto_too_old", library=name, version=hex(version))
                continue
            library = _Libcrypto(cdll, name)
        except (OSError, AttributeError) as error:
            log.debug("libcrypto_unusable", library=name, error=str(error))
            continue
        log.debug("libcrypto_loaded", library=name, version=hex(version))
        return library
    log.warning(
        "libcrypto_missing",
        tried=list(dict.fromkeys(names)),
        consequence="raw RSA (PSS, OAEP, type-2 blocks) runs in pure Python, ~30x slower",
        fix="install Debian's libssl3 (OpenSSL 3)",
    )
    return None


def raw_backend() -> str:
    """Which library does raw RSA here: the libcrypto file name, or ``"python"``."""
    library = _libcrypto()
    return library.name if library else "python"


class _LibcryptoRaw:
    """Raw RSA through libcrypto: ``EVP_PKEY_decrypt`` with ``RSA_NO_PADDING``."""

    def __init__(self, library: _Libcrypto, key: rsa.RSAPrivateKey) -> None:
        self._library = library
        self._size = key.key_size // 8
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cursor = ctypes.c_char_p(der)
        pkey = library.d2i_AutoPrivateKey(None, ctypes.byref(cursor), len(der))
        if not pkey:
            raise KeyOperationError(f"libcrypto could not load the key: {library.errors()}")
        self._pkey = pkey
        # OpenSSL frees (and clears) the key when this object goes away.
        weakref.finalize(self, library.EVP_PKEY_free, pkey)

    def __call__(self, block: bytes) -> bytes:
        library = self._library
        # A context per call costs ~3 µs (under 1% of a 2048-bit operation) and keeps
        # concurrent calls from threads apart; ctypes releases the GIL during each call.
        ctx = library.EVP_PKEY_CTX_new(self._pkey, None)
        if not ctx:
            raise KeyOperationError(f"EVP_PKEY_CTX_new failed: {library.errors()}")
        try:
            out = ctypes.create_string_buffer(self._size)
            out_len = ctypes.c_size_t(self._size)
            if (
                library.EVP_PKEY_decrypt_init(ctx) != 1
                or library.EVP_PKEY_CTX_set_rsa_padding(ctx, _RSA_NO_PADDING) != 1
                or library.EVP_PKEY_decrypt(ctx, out, ctypes.byref(out_len), block, len(block)) != 1
            ):
                raise KeyOperationError(f"raw RSA in libcrypto failed: {library.errors()}")
        finally:
            library.EVP_PKEY_CTX_free(ctx)
        if out_len.value != self._size:
            raise KeyOperationError(f"libcrypto returned {out_len.value} bytes, not {self._size}")
        return out.raw


class _PythonRaw:
    """Raw RSA on Python integers, CRT with base blinding: the fallback without libcrypto.

    Python's ``pow`` is not constant time, so every operation blinds its input with a fresh
    random ``r`` (``m * r**e``, then divides ``r`` out), which decorrelates the timing of the
    exponentiations from the block; the result is checked against the public key, so a fault
    in one CRT half cannot leak a factor (Bellcore attack).
    """

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        numbers = key.private_numbers()
        self._n = numbers.public_numbers.n
        self._e = numbers.public_numbers.e
        self._p, self._q = numbers.p, numbers.q
        self._dp, self._dq, self._qinv = numbers.dmp1, numbers.dmq1, numbers.iqmp
        self._size = key.key_size // 8

    def __call__(self, block: bytes) -> bytes:
        n, e, p, q = self._n, self._e, self._p, self._q
        m = int.from_bytes(block, "big")
        while True:
            r = secrets.randbelow(n - 2) + 2
            if math.gcd(r, n) == 1:  # fails only if r hits a factor: negligible
                break
        blinded = m * pow(r, e, n) % n
        s1 = pow(blinded % p, self._dp, p)
        s2 = pow(blinded % q, self._dq, q)
        s = (s2 + (self._qinv * (s1 - s2) % p) * q) * pow(r, -1, n) % n
        if pow(s, e, n) != m:
            raise KeyOperationError("raw RSA result failed its public-key check")
        return s.to_bytes(self._size, "big")


class SoftwareKey:
    """A :class:`~cacard.keys.CardKey` for an RSA private key held by ``cryptography``.

    ``SoftwareKey(key)`` accepts any key ``cryptography`` loads and raises
    :class:`UnsupportedKeyError` for a non-RSA key (EC, Ed25519, DSA...) or an RSA key outside
    1024-4096 bits. Thread-safe.
    """

    def __init__(self, key: PrivateKeyTypes) -> None:
        require_rsa(key)
        assert isinstance(key, rsa.RSAPrivateKey)  # for the type checker; require_rsa checked
        check_rsa_key_size(key.key_size)
        self._key = key
        self._public_key = key.public_key()
        self._modulus = self._public_key.public_numbers().n
        self._size = key.key_size // 8
        library = _libcrypto()
        raw: Callable[[bytes], bytes] = _PythonRaw(key)
        if library is not None:
            candidate = _LibcryptoRaw(library, key)
            if self._self_test(candidate, b"\x00" + secrets.token_bytes(self._size - 1)):
                raw = candidate
            else:
                log.warning("libcrypto_raw_rsa_wrong", library=library.name, using="python")
        self._raw = raw
        type1_block = b"\x00\x01" + b"\xff" * (self._size - 35) + b"\x00" + secrets.token_bytes(32)
        self._type1 = self._self_test(self._sign_type1, type1_block)
        if not self._type1:
            log.warning("pkcs1_sign_not_raw", using="raw path for type-1 blocks")

    @property
    def key_size(self) -> int:
        """Modulus size in bits."""
        return self._key.key_size

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    def private_operation(self, block: bytes) -> bytes:
        """Return ``block ** d mod n`` as ``key_size // 8`` bytes, blinded against timing.

        Raises :class:`~cacard.keys.KeyOperationError` if ``block`` is not exactly
        ``key_size // 8`` bytes or, read big-endian, not below the modulus.
        """
        if len(block) != self._size:
            raise KeyOperationError(
                f"block is {len(block)} bytes; this {self.key_size}-bit key takes {self._size}"
            )
        if self._type1 and (payload := type1_payload(block)) is not None:
            return self._key.sign(payload, padding.PKCS1v15(), utils.NoDigestInfo())
        # A block with a leading 00 is below any modulus of this size; only others need the
        # integer comparison.
        if block[0] and int.from_bytes(block, "big") >= self._modulus:
            raise KeyOperationError("block is not below the modulus")
        return self._raw(block)

    def _sign_type1(self, block: bytes) -> bytes:
        payload = type1_payload(block)
        assert payload is not None
        return self._key.sign(payload, padding.PKCS1v15(), utils.NoDigestInfo())

    def _self_test(self, operation: Callable[[bytes], bytes], block: bytes) -> bool:
        """Whether ``operation`` gives the raw result on ``block`` (checked with ``e``)."""
        try:
            result = operation(block)
        except (KeyOperationError, ValueError, AttributeError) as error:
            # AttributeError: cryptography < 47 has no utils.NoDigestInfo.
            log.warning("raw_rsa_self_test_failed", error=str(error))
            return False
        e = self._public_key.public_numbers().e
        return pow(int.from_bytes(result, "big"), e, self._modulus) == int.from_bytes(block, "big")

    def __repr__(self) -> str:
        return f"SoftwareKey(rsa-{self.key_size}, raw={type(self._raw).__name__})"
