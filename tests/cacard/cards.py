"""Cards for tests: certificates with small keys, a PIN hash that costs nothing, a way to send
hex APDUs, and ``card_dir``, a card directory made as cheaply."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cacard import CardRequest, generate_card
from cacard.applets.containers import DataObjectId
from cacard.card import Card, StateSink
from cacard.keys import Credential
from cacard.pin import PinState
from cacard.profile import CardProfile, new_card
from cacard.rsa import SoftwareKey
from cardfloor.iso7816.apdu import Response

from .certificates import issue

PIN = "77777777"
#: ``PIN`` as OpenSC sends it: padded with FF to 8 bytes (here it is already 8 digits).
PIN_HEX = PIN.encode().hex()
WRONG_PIN_HEX = b"12345678".hex()
CARD_ID = bytes.fromhex("4070507236 0E000058BD002C19B5")


def private_key(index: int, bits: int = 1024) -> rsa.RSAPrivateKey:
    """The same key for the same (index, bits) within a test run."""
    return _private_key(index, bits)


def credential(index: int, bits: int = 1024) -> Credential:
    """A certificate (issued by the test CA) with key ``private_key(index, bits)``."""
    return _credential(index, bits)


@functools.cache
def _private_key(index: int, bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


@functools.cache
def _credential(index: int, bits: int) -> Credential:
    key = _private_key(index, bits)
    return Credential(issue(key.public_key(), f"card test {index}"), SoftwareKey(key), f"c{index}")


def pin_state(pin: str = PIN, max_tries: int = 3) -> PinState:
    """A PIN with one PBKDF2 round: unit tests check behaviour, not hashing cost."""
    return PinState.create(pin, max_tries=max_tries, iterations=1)


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A card directory with 1024-bit keys and a one-round PIN hash, one per test module.

    Bind it in the module (``card_dir = cards.card_dir``): importing it by name makes ruff see
    each test argument as a redefinition.
    """
    directory = tmp_path_factory.mktemp("cards") / "card"
    generate_card(directory, CardRequest(key_size=1024, pin_iterations=1))
    return directory


def make_card(
    certificates: int = 3,
    *,
    bits: int = 1024,
    pin: PinState | None = None,
    on_state_change: StateSink | None = None,
    random: Callable[[int], bytes] | None = None,
    data_objects: Mapping[DataObjectId, bytes] | None = None,
) -> Card:
    profile = CardProfile(
        tuple(credential(i, bits) for i in range(certificates)),
        CARD_ID,
        data_objects=data_objects or {},
    )
    return new_card(
        profile,
        pin or pin_state(),
        on_state_change=on_state_change,
        random=os.urandom if random is None else random,
    )


def send(card: Card, apdu: str) -> Response:
    """Send the APDU written in hex (spaces allowed) and parse the answer."""
    return Response.from_bytes(card.transmit(bytes.fromhex(apdu)))


def hexsw(response: Response) -> str:
    """The status word as 4 hex digits, for readable asserts."""
    return f"{response.sw:04X}"


def select(card: Card, aid: str) -> Response:
    """SELECT by AID as case 4, so the FCI comes back at once."""
    length = len(bytes.fromhex(aid))
    return send(card, f"00 A4 04 00 {length:02X} {aid} 00")


def read_buffer(card: Card, which: int) -> bytes:
    """The whole T (1) or V (2) buffer of the selected object, read as OpenSC does: the 2-byte
    length first, then chunks of at most 240 bytes from offset 2 (length prefix included)."""
    head = send(card, f"80 52 00 00 02 {which:02X} 02 00")
    assert head.sw == 0x9000, f"{head.sw:04X}"
    size = int.from_bytes(head.data, "little")
    content = b""
    while len(content) < size:
        offset = 2 + len(content)
        count = min(240, size - len(content))
        chunk = send(
            card, f"80 52 {offset >> 8:02X} {offset & 0xFF:02X} 02 {which:02X} {count:02X} 00"
        )
        assert chunk.sw == 0x9000, f"{chunk.sw:04X}"
        assert chunk.data, "an empty chunk means the buffer ended early"
        content += chunk.data
    return head.data + content
