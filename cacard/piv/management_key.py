"""The PIV Card Application Administration Key (key reference ``9B``) and the card's side of
its GENERAL AUTHENTICATE exchanges, as a sans-IO state machine.

SP 800-73-4 Part 2 Appendix A (examples of GENERAL AUTHENTICATE) describes two exchanges with
this key, both of which authenticate the host to the card:

* challenge-response ("authentication of the PIV Card Application Administrator"):
  ``7C { 81 00 }`` -> ``7C { 81 challenge }``; ``7C { 82 encrypted challenge }`` -> ``9000``.
* mutual authentication of host and card: ``7C { 80 00 }`` -> ``7C { 80 encrypted witness }``;
  ``7C { 80 witness, 81 challenge }`` -> ``7C { 82 encrypted challenge }``, which also lets the
  host check the card.

Each block is one cipher block (8 bytes for 3DES, 16 for AES) encrypted with the raw block
cipher: that single-block ECB encryption *is* the protocol, done by ``cryptography``, not a
home-made construction. The answers are status words the applet returns as they are.
"""

from __future__ import annotations

import enum
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

from cardfloor.iso7816.apdu import StatusWord

from .ber import PIVFormatError, decode_template, encode
from .objects import Algorithm, KeyReference

#: The dynamic authentication template around GENERAL AUTHENTICATE's data (SP 800-73-4 Part 2
#: §3.2.4).
DYNAMIC_AUTHENTICATION_TEMPLATE: Final = 0x7C
WITNESS: Final = 0x80
CHALLENGE: Final = 0x81
RESPONSE: Final = 0x82

#: Key sizes each symmetric algorithm takes (SP 800-78-4 Table 6-2).
KEY_SIZES: Final = {
    Algorithm.TDES: 24,
    Algorithm.AES_128: 16,
    Algorithm.AES_192: 24,
    Algorithm.AES_256: 32,
}


@dataclass(frozen=True, slots=True, repr=False)
class ManagementKey:
    """A symmetric 9B key. ``repr`` hides the key bytes so logs do not carry them."""

    algorithm: Algorithm
    key: bytes

    def __post_init__(self) -> None:
        size = KEY_SIZES.get(self.algorithm)
        if size is None:
            raise PIVFormatError(
                "not a management key algorithm", field="algorithm", value=self.algorithm
            )
        if len(self.key) != size:
            raise PIVFormatError(
                f"{self.algorithm.name} key must be {size} bytes", field="key", value=len(self.key)
            )

    def __repr__(self) -> str:
        return f"ManagementKey({self.algorithm.name})"

    @property
    def block_size(self) -> int:
        """Bytes in one witness, challenge or response."""
        return 8 if self.algorithm is Algorithm.TDES else 16

    def accepts(self, p1: int) -> bool:
        """Whether GENERAL AUTHENTICATE's P1 names this key's algorithm ('00' is 3DES too)."""
        if self.algorithm is Algorithm.TDES:
            return p1 in (Algorithm.TDES, Algorithm.TDES_LEGACY)
        return p1 == self.algorithm

    def _cipher(self) -> Cipher[modes.ECB]:
        cipher: BlockCipherAlgorithm
        if self.algorithm is Algorithm.TDES:
            cipher = TripleDES(self.key)
        else:
            cipher = algorithms.AES(self.key)
        return Cipher(cipher, modes.ECB())

    def encrypt_block(self, block: bytes) -> bytes:
        """``block`` (exactly one cipher block) encrypted."""
        self._check_block(block)
        encryptor = self._cipher().encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def decrypt_block(self, block: bytes) -> bytes:
        self._check_block(block)
        decryptor = self._cipher().decryptor()
        return decryptor.update(block) + decryptor.finalize()

    def _check_block(self, block: bytes) -> None:
        if len(block) != self.block_size:
            raise PIVFormatError(
                f"a {self.algorithm.name} block is {self.block_size} bytes",
                field="block",
                value=len(block),
            )


#: The key PIV cards and yubico-piv-tool ship with; for test cards only.
DEFAULT_MANAGEMENT_KEY: Final = ManagementKey(
    Algorithm.TDES, bytes.fromhex("010203040506070801020304050607080102030405060708")
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the card sends back: the status word and any data."""

    sw: int
    data: bytes = b""


class _Pending(enum.Enum):
    NOTHING = enum.auto()
    WITNESS = enum.auto()  # mutual authentication, step 1 answered
    CHALLENGE = enum.auto()  # challenge-response, step 1 answered


def parse_template(data: bytes) -> dict[int, bytes]:
    """The items inside GENERAL AUTHENTICATE's ``7C`` template, by tag; raise
    :class:`PIVFormatError` unless ``data`` is exactly one such template."""
    return decode_template(
        data, DYNAMIC_AUTHENTICATION_TEMPLATE, where="dynamic authentication template"
    )


def _template(tag: int, value: bytes) -> bytes:
    return encode([(DYNAMIC_AUTHENTICATION_TEMPLATE, encode([(tag, value)]))])


@dataclass(slots=True)
class ManagementKeyAuthentication:
    """The card's side of authenticating the host with the 9B key.

    ``random(n)`` supplies ``n`` random bytes (``os.urandom`` by default; tests inject their
    own). Every GENERAL AUTHENTICATE drops the authentication gained before, and a step that
    does not continue the exchange in progress ends it: a failed or garbled attempt never
    leaves the card open, nor a witness or challenge waiting to be replayed.
    """

    key: ManagementKey = DEFAULT_MANAGEMENT_KEY
    random: Callable[[int], bytes] = os.urandom
    _authenticated: bool = field(default=False, init=False)
    _pending: _Pending = field(default=_Pending.NOTHING, init=False)
    _secret: bytes = field(default=b"", init=False, repr=False)

    @property
    def authenticated(self) -> bool:
        """Whether the host proved it holds the key (PUT DATA, GENERATE need this)."""
        return self._authenticated

    def reset(self) -> None:
        """Forget the authentication and any exchange in progress (on reset or deselect)."""
        self._authenticated = False
        self._pending = _Pending.NOTHING
        self._secret = b""

    def general_authenticate(self, p1: int, p2: int, data: bytes) -> Answer:
        """Answer GENERAL AUTHENTICATE with algorithm ``p1``, key ``p2`` and command ``data``.

        Never raises on what the host sent: a malformed template is ``6A80``, a wrong algorithm
        or key reference ``6A86``, a failed check ``6982``.
        """
        pending, secret = self._pending, self._secret
        self.reset()
        if p2 != KeyReference.CARD_MANAGEMENT or not self.key.accepts(p1):
            return Answer(StatusWord.INCORRECT_P1_P2)
        try:
            items = parse_template(data)
        except PIVFormatError:
            return Answer(StatusWord.INCORRECT_DATA)
        size = self.key.block_size
        match items:
            case {0x80: b""} if len(items) == 1:
                return self._send_witness(size)
            case {0x81: b""} if len(items) == 1:
                return self._send_challenge(size)
            case {0x80: witness, 0x81: challenge} if len(items) == 2:
                if len(witness) != size or len(challenge) != size:
                    return Answer(StatusWord.INCORRECT_DATA)
                if pending is not _Pending.WITNESS or not hmac.compare_digest(witness, secret):
                    return Answer(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
                self._authenticated = True
                return Answer(
                    StatusWord.SUCCESS, _template(RESPONSE, self.key.encrypt_block(challenge))
                )
            case {0x82: response} if len(items) == 1:
                if len(response) != size:
                    return Answer(StatusWord.INCORRECT_DATA)
                if pending is not _Pending.CHALLENGE:
                    return Answer(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
                expected = self.key.encrypt_block(secret)
                if not hmac.compare_digest(response, expected):
                    return Answer(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
                self._authenticated = True
                return Answer(StatusWord.SUCCESS)
            case _:
                return Answer(StatusWord.INCORRECT_DATA)

    def _fresh(self, size: int) -> bytes:
        value = self.random(size)
        if len(value) != size:
            raise ValueError(f"random({size}) returned {len(value)} bytes")
        return value

    def _send_witness(self, size: int) -> Answer:
        witness = self._fresh(size)
        self._pending, self._secret = _Pending.WITNESS, witness
        return Answer(StatusWord.SUCCESS, _template(WITNESS, self.key.encrypt_block(witness)))

    def _send_challenge(self, size: int) -> Answer:
        challenge = self._fresh(size)
        self._pending, self._secret = _Pending.CHALLENGE, challenge
        return Answer(StatusWord.SUCCESS, _template(CHALLENGE, challenge))
