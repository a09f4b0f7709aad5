"""The PIV card: sequences of command APDUs against a ``piv`` profile card.

The card holds an RSA-1024 key in 9A, P-256 in 9C, P-384 in 9D and P-256 in 9E; the PIN and PUK
are known, and so is the 9B management key (the default 3DES one), so seeds reach PUT DATA,
GENERATE ASYMMETRIC KEY PAIR, RESET RETRY COUNTER and chained GENERAL AUTHENTICATE. The card's
random source gives zeros, which makes the 9B witness and challenge known in advance (the
seeds answer them) and each input reproducible. Each input starts from the card in its initial
state: powered up again (which clears the security status), and built afresh when the input
changed what a card keeps (its PIN or PUK counters, a key, a data object).

GENERATE of an RSA key gets a key made once per size and kept for the process (making an
RSA-4096 key takes most of a second, which would read as a hang); the applet's own path is
unchanged.

Control byte: bit 0 powers the card off first (the first APDU powers it up implicitly).
The payload is a list of APDUs, each a u16 big-endian length and its bytes.

Bugs: as for the ``card`` target (:mod:`tests.fuzz.card_harness`): ``transmit`` raising or
logging an error, a status word a card may not send, anything but 6700 for bytes that are no
APDU, more data than Le asks for; and ``6F00``, which the PIV application never answers.
"""

from __future__ import annotations

import functools
from typing import Final
from unittest import mock

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cacard.card import Card
from cacard.keys import Credential
from cacard.pin import PinState
from cacard.piv.applet import PIVChange, SlotKey
from cacard.piv.ber import encode
from cacard.piv.management_key import DEFAULT_MANAGEMENT_KEY
from cacard.piv.objects import PIV_AID, KeyReference
from cacard.profile import Applications, CardProfile, new_card, piv_applet
from cacard.software import software_key
from cardfloor.iso7816.apdu import CommandAPDU

from ..cacard.certificates import issue
from .card_harness import check_response
from .common import ErrorLogWatch, check, record, records, split_input

MAX_LEN: Final = 4096
PIN: Final = "123456"
PUK: Final = "12345678"
_WATCH: Final = ErrorLogWatch()


# -- the card ----------------------------------------------------------------------------------


@functools.cache
def _contents() -> tuple[CardProfile, SlotKey, PinState, PinState]:
    keys: list[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey] = [
        rsa.generate_private_key(65537, 1024),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
    ]
    credentials = tuple(
        Credential(issue(key.public_key(), f"fuzz {i}"), software_key(key), f"k{i}")
        for i, key in enumerate(keys)
    )
    profile = CardProfile(
        credentials, bytes(14), atr=Applications.PIV.default_atr, applications=Applications.PIV
    )
    nine_e = ec.generate_private_key(ec.SECP256R1())
    card_authentication = SlotKey(
        software_key(nine_e),
        issue(nine_e.public_key(), "fuzz 9E").public_bytes(serialization.Encoding.DER),
    )
    pin = PinState.create(PIN, iterations=1)
    puk = PinState.create(PUK, max_tries=3, iterations=1)
    return profile, card_authentication, pin, puk


def _zeros(size: int) -> bytes:
    return bytes(size)


#: The real one: ``fuzz_one`` puts :func:`_pregenerated` in its place.
_GENERATE_RSA: Final = rsa.generate_private_key


@functools.cache
def _rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return _GENERATE_RSA(65537, bits)


def _pregenerated(public_exponent: int, key_size: int) -> rsa.RSAPrivateKey:
    check(public_exponent == 65537, f"GENERATE asked for exponent {public_exponent}")
    return _rsa_key(key_size)


class _Cards:
    """Hands out the card in its initial state; rebuilds it when the last input changed what a
    card keeps."""

    def __init__(self) -> None:
        self._card: Card | None = None
        self._changed = False

    def initial(self) -> Card:
        profile, nine_e, pin, puk = _contents()
        if self._card is None or self._changed or self._card.state.pin != pin:
            self._changed = False
            applet = piv_applet(
                profile,
                puk,
                keys={KeyReference.CARD_AUTHENTICATION: nine_e},
                on_change=self._on_change,
                random=_zeros,
            )
            self._card = new_card(profile, pin, piv=applet, random=_zeros)
        else:
            self._card.power_on()
        return self._card

    def _on_change(self, change: PIVChange) -> None:
        self._changed = True


_CARDS: Final = _Cards()


def new_fuzz_card() -> Card:
    """The fuzzed card, as it is before any APDU."""
    return _CARDS.initial()


def fuzz_one(data: bytes) -> None:
    """Send the APDUs in ``data`` to a fresh PIV card."""
    control, payload = split_input(data)
    card = new_fuzz_card()
    if control & 0x01:
        card.power_off()
    with _WATCH, mock.patch.object(rsa, "generate_private_key", _pregenerated):
        for apdu in records(payload):
            response = card.transmit(apdu)
            check_response(apdu, response)
            check(response[-2:] != b"\x6f\x00", f"6F00 to {apdu.hex()}")
    _WATCH.raise_first()


# -- seeds -------------------------------------------------------------------------------------


def _apdus(*commands: CommandAPDU | str) -> bytes:
    return b"".join(
        record(bytes.fromhex(c) if isinstance(c, str) else c.to_bytes()) for c in commands
    )


def _select(aid: bytes = PIV_AID) -> CommandAPDU:
    return CommandAPDU(0x00, 0xA4, 0x04, 0x00, aid, 256)


def _get_data(tag: str, *, le: int = 256, extended: bool = False) -> CommandAPDU:
    raw = bytes.fromhex(tag)
    return CommandAPDU(0x00, 0xCB, 0x3F, 0xFF, bytes((0x5C, len(raw))) + raw, le, extended)


def _pin(value: str) -> bytes:
    return value.encode().ljust(8, b"\xff")


def _verify(value: str | None = PIN) -> CommandAPDU:
    return CommandAPDU(0x00, 0x20, 0x00, 0x80, b"" if value is None else _pin(value))


def _template(*items: tuple[int, bytes]) -> bytes:
    return encode([(0x7C, encode(items))])


def _authenticate(alg: int, key: int, data: bytes, cla: int = 0x00) -> CommandAPDU:
    return CommandAPDU(cla, 0x87, alg, key, data, None if cla & 0x10 else 256)


def _mutual_authentication() -> tuple[CommandAPDU, CommandAPDU]:
    """9B mutual authentication: the card's witness is the zeros it drew, encrypted."""
    challenge = bytes(range(1, 9))
    return (
        _authenticate(0x03, 0x9B, _template((0x80, b""))),
        _authenticate(0x03, 0x9B, _template((0x80, bytes(8)), (0x81, challenge))),
    )


def _challenge_response() -> tuple[CommandAPDU, CommandAPDU]:
    """9B challenge-response: the card's challenge is zeros, so its answer is known."""
    response = DEFAULT_MANAGEMENT_KEY.encrypt_block(bytes(8))
    return (
        _authenticate(0x03, 0x9B, _template((0x81, b""))),
        _authenticate(0x03, 0x9B, _template((0x82, response))),
    )


def _put_data(tag: str, body: bytes, cla: int = 0x00) -> CommandAPDU:
    raw = bytes.fromhex(tag)
    return CommandAPDU(cla, 0xDB, 0x3F, 0xFF, encode([(0x5C, raw)]) + body)


def _generate(key: int, algorithm: int) -> CommandAPDU:
    return CommandAPDU(
        0x00, 0x47, 0x00, key, encode([(0xAC, encode([(0x80, bytes((algorithm,)))]))]), 256
    )


def seeds() -> dict[str, bytes]:
    """Every PIV command: discovery reads, PIN and PUK management, each key's operation (one
    GENERAL AUTHENTICATE chained), both 9B exchanges, PUT DATA (one chained) and GENERATE."""
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + bytes(range(32))
    pkcs1 = b"\x00\x01" + b"\xff" * (128 - 3 - len(digest_info)) + b"\x00" + digest_info
    ec_point = (
        ec.derive_private_key(7, ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    sign_9c = _template((0x82, b""), (0x81, bytes(range(32))))
    printed = encode([(0x53, encode([(0x01, b"FUZZ"), (0xFE, b"")]))])
    certificate = encode([(0x53, encode([(0x70, bytes(500)), (0x71, b"\x00"), (0xFE, b"")]))])
    discovery = encode([(0x7E, encode([(0x4F, PIV_AID), (0x5F2F, b"\x40\x00")]))])
    return {
        "discovery": b"\x00"
        + _apdus(
            _select(PIV_AID[:9]),
            _get_data("5FC107"),
            _get_data("5FC102"),
            _get_data("7E"),
            _get_data("5FC10C"),
            _get_data("5FC105"),
            "00C0000000",
            "00C0000000",
            _get_data("5FC10A", le=65536, extended=True),
            _get_data("5FC103", le=1),
            _get_data("5FC10D"),
            "00CB3FFF035C01FF00",
        ),
        "pin": b"\x00"
        + _apdus(
            _select(),
            _verify(None),
            _verify("000000"),
            _verify("1234"),
            _verify(),
            _verify(None),
            "0020008000",
            "00200000085151515151515151",
            CommandAPDU(0x00, 0x24, 0x00, 0x80, _pin(PIN) + _pin("654321")),
            CommandAPDU(0x00, 0x24, 0x00, 0x81, _pin(PUK) + _pin("87654321")),
            CommandAPDU(0x00, 0x2C, 0x00, 0x80, _pin(PUK) + _pin("111111")),
            CommandAPDU(0x00, 0x2C, 0x00, 0x80, _pin("00000000") + _pin("111111")),
        ),
        "sign-rsa-9a": b"\x00"
        + _apdus(
            _select(),
            _verify(),
            _authenticate(0x06, 0x9A, _template((0x82, b""), (0x81, pkcs1))),
            _authenticate(0x07, 0x9A, _template((0x82, b""), (0x81, pkcs1))),
        ),
        "sign-ec-9c-chained": b"\x01"
        + _apdus(
            _select(),
            _verify(),
            _authenticate(0x11, 0x9C, sign_9c[:20], cla=0x10),
            _authenticate(0x11, 0x9C, sign_9c[20:]),
            _authenticate(0x11, 0x9C, sign_9c),
        ),
        "ecdh-9d-and-9e": b"\x00"
        + _apdus(
            _select(),
            _authenticate(0x11, 0x9E, _template((0x82, b""), (0x81, bytes(32)))),
            _verify(),
            _authenticate(0x14, 0x9D, _template((0x82, b""), (0x85, ec_point))),
            _authenticate(0x14, 0x9D, _template((0x82, b""), (0x81, bytes(48)))),
        ),
        "mutual-9b-put-generate": b"\x00"
        + _apdus(
            _select(),
            *_mutual_authentication(),
            _put_data("5FC109", printed),
            _put_data("5FC10B", certificate[:200], cla=0x10),
            CommandAPDU(0x10, 0xDB, 0x3F, 0xFF, certificate[200:400]),
            CommandAPDU(0x00, 0xDB, 0x3F, 0xFF, certificate[400:]),
            _get_data("5FC10B"),
            _generate(0x9A, 0x11),
            _generate(0x9D, 0x06),
        ),
        "challenge-9b-discovery-p384": b"\x00"
        + _apdus(
            _select(),
            *_challenge_response(),
            _put_data("7E", discovery),
            _put_data("5FC109", encode([(0x53, b"")])),
            _generate(0x9E, 0x14),
            _authenticate(0x14, 0x9E, _template((0x82, b""), (0x81, bytes(48)))),
        ),
        "chains-interrupted": b"\x00"
        + _apdus(
            _select(),
            _authenticate(0x11, 0x9E, sign_9c[:10], cla=0x10),
            _select(),
            _authenticate(0x11, 0x9E, sign_9c[10:]),
            CommandAPDU(0x10, 0x20, 0x00, 0x80, _pin(PIN)),
            _authenticate(0x11, 0x9E, sign_9c[:10], cla=0x10),
            _put_data("5FC109", printed, cla=0x10),
            _authenticate(0x11, 0x9E, sign_9c[10:]),
        ),
    }
