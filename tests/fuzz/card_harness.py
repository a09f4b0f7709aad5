"""The CAC card: sequences of command APDUs against a card made by ``cacard new``.

A card with three 1024-bit keys and a one-round PIN hash is generated once per process. Each
input starts from a card in its initial state, so no input depends on the one before: the card
is powered up again (which clears everything volatile; the applets hold no state of their
own), and built afresh when the input left its PIN or retry counter changed. Its random source
gives zeros, so each input is reproducible.

Control byte: bit 0 powers the card off first (the first APDU powers it up implicitly).
The payload is a list of APDUs, each a u16 big-endian length and its bytes.

Bugs: :meth:`cacard.Card.transmit` raising, or logging an error (its internal-error path,
which answers 6F00); a response without a valid SW1 SW2 or longer than any Le allows;
anything but 6700 for bytes that are not an APDU; more response data than Le asks for.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Final

from cacard import (
    Card,
    CardProfile,
    CardRequest,
    CardStore,
    PinState,
    generate_card,
    new_card,
)
from cacard.pin import DEFAULT_PIN
from cardfloor.iso7816.apdu import (
    EXTENDED_MAX,
    SHORT_MAX,
    APDUFormatError,
    CommandAPDU,
    StatusWord,
    is_valid_status,
)

from .common import ErrorLogWatch, check, record, records, split_input

MAX_LEN: Final = 4096
KEY_SIZE: Final = 1024
INS_PRIVATE_KEY_OPERATION: Final = 0x42
_WATCH: Final = ErrorLogWatch()

CCC_AID: Final = bytes.fromhex("A000000116DB00")
ACA_AID: Final = bytes.fromhex("A0000000790300")
PKI_AID: Final = bytes.fromhex("A0000000790100")
PERSON_INSTANCE_AID: Final = bytes.fromhex("A0000000790200")
GP_AID: Final = bytes.fromhex("A0000000030000")
MSFT_AID: Final = bytes.fromhex("A0000003974349445F0100")


@functools.cache
def _content() -> tuple[CardProfile, PinState]:
    with tempfile.TemporaryDirectory() as directory:
        request = CardRequest(key_size=KEY_SIZE, pin_iterations=1)
        store = generate_card(Path(directory) / "card", request)
        return store.load_profile(), CardStore(store.path).load_state().pin


def _zeros(size: int) -> bytes:
    return bytes(size)


class _Cards:
    """Hands out the card in its initial state; rebuilds it only when its PIN state changed."""

    def __init__(self) -> None:
        self._card: Card | None = None

    def initial(self) -> Card:
        profile, pin = _content()
        if self._card is None or self._card.state.pin != pin:
            self._card = new_card(profile, pin, random=_zeros)
        else:
            self._card.power_on()
        return self._card


_CARDS: Final = _Cards()


def new_fuzz_card() -> Card:
    """The fuzzed card, as it is before any APDU."""
    return _CARDS.initial()


def check_response(apdu: bytes, response: bytes) -> None:
    """Raise :class:`FuzzBug` unless ``response`` is a well-formed answer to ``apdu``."""
    check(isinstance(response, bytes) and len(response) >= 2, f"response {response!r}")
    sw = int.from_bytes(response[-2:], "big")
    check(is_valid_status(sw), f"SW {sw:04X} is not a status a card may send")
    check(len(response) <= EXTENDED_MAX + 2, f"a response of {len(response)} bytes")
    try:
        command = CommandAPDU.from_bytes(apdu)
    except APDUFormatError:
        check(response == b"\x67\x00", f"{response.hex()} to bytes that are no APDU")
        return
    if sw == StatusWord.NO_PRECISE_DIAGNOSIS:
        # Only a failed key operation answers 6F00 on purpose; anything else is the
        # internal-error path (also caught by the log watch).
        check(command.ins == INS_PRIVATE_KEY_OPERATION, "6F00: an internal error")
    if sw == StatusWord.SUCCESS:
        # GET RESPONSE without Le hands out up to 256 bytes (T=0 semantics).
        allowed = max(command.ne, SHORT_MAX)
        check(len(response) - 2 <= allowed, f"{len(response) - 2} bytes for Ne={command.ne}")


def fuzz_one(data: bytes) -> None:
    """Send the APDUs in ``data`` to a fresh card."""
    control, payload = split_input(data)
    card = new_fuzz_card()
    if control & 0x01:
        card.power_off()
    with _WATCH:
        for apdu in records(payload):
            check_response(apdu, card.transmit(apdu))
    _WATCH.raise_first()


# -- seeds -------------------------------------------------------------------------------------


def _apdus(*hex_apdus: str | bytes) -> bytes:
    return b"".join(
        record(bytes.fromhex(apdu) if isinstance(apdu, str) else apdu) for apdu in hex_apdus
    )


def _select(aid: bytes, cla: int = 0x00, p2: int = 0x00) -> bytes:
    return CommandAPDU(cla, 0xA4, 0x04, p2, aid).to_bytes()


def seeds() -> dict[str, bytes]:
    """What OpenSC's CAC driver sends, PIN management, GlobalPlatform, channels, chaining."""
    pin = DEFAULT_PIN.encode().ljust(8, b"\xff")
    verify = CommandAPDU(0x00, 0x20, 0x00, 0x00, pin).to_bytes()
    block = b"\x00\x01" + b"\xff" * (KEY_SIZE // 8 - 3 - 20) + b"\x00" + bytes(20)
    sign = CommandAPDU(0x80, INS_PRIVATE_KEY_OPERATION, 0x00, 0x00, block).to_bytes()
    half = len(block) // 2
    return {
        "opensc-init": b"\x00"
        + _apdus(
            _select(CCC_AID),
            "00C0000000",
            "8056010000",
            "8052000002010800",
            "8052000002020800",
            _select(ACA_AID),
            "804C000000",
            "804C100000",
            _select(PERSON_INSTANCE_AID, p2=0x0C),
            "80A40200020200",
            "8052000002010800",
        ),
        "sign": b"\x00"
        + _apdus(_select(PKI_AID), "0020000000", verify, "0020000000", sign, "00C0000000"),
        "sign-chained-extended": b"\x01"
        + _apdus(
            _select(PKI_AID),
            verify,
            CommandAPDU(0x80, 0x42, 0x80, 0x00, block[:half]).to_bytes(),
            CommandAPDU(0x80, 0x42, 0x00, 0x00, block[half:], 65536, extended=True).to_bytes(),
        ),
        "pin": b"\x00"
        + _apdus(
            "002000000831323334353637FF",
            "0020000000",
            "00200000083132333435363738",
            "0020FF0000",
            CommandAPDU(0x00, 0x24, 0x00, 0x00, pin + b"1234\xff\xff\xff\xff").to_bytes(),
            "0084000008",
        ),
        "gp-msft": b"\x00"
        + _apdus(_select(GP_AID), "80CA9F7F00", "80CA006600", _select(MSFT_AID), "00CA7F6800"),
        "channels": b"\x00"
        + _apdus(
            _select(PKI_AID, cla=0x01),
            "0070000001",
            _select(CCC_AID, cla=0x0C),
            "1020000000",
            "8056400000",
            "81560200022F01",
            "00A4040000",
            "00",
        ),
    }
