"""The PKI applet: its certificate object, and sign/decrypt (INS 42) with P1 chaining."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cacard.applets.pki import PKIApplet
from cacard.card import Card
from cacard.keys import Credential, KeyOperationError
from cacard.tlv import TLV, decode, join_buffers

from ..cards import PIN_HEX, credential, hexsw, make_card, pin_state, private_key, read_buffer, send
from ..cards import select as select_aid

PKI = ["A0 00 00 00 79 01 00", "A0 00 00 00 79 01 01", "A0 00 00 00 79 01 02"]


def logged_in(bits: int = 1024, index: int = 0) -> Card:
    card = make_card(bits=bits)
    select_aid(card, PKI[index])
    assert hexsw(send(card, "00 20 00 00 08 " + PIN_HEX)) == "9000"
    return card


def operate(card: Card, block: bytes, chunk: int = 240) -> bytes:
    """What OpenSC's CAC driver sends: P1=80 chunks of 240 bytes, then P1=00 with the rest,
    then GET RESPONSE while the card says 61xx. Returns the result."""
    while len(block) > chunk:
        part, block = block[:chunk], block[chunk:]
        assert hexsw(send(card, f"00 42 80 00 {len(part):02X} {part.hex()}")) == "9000"
    answer = send(card, f"00 42 00 00 {len(block):02X} {block.hex()} FF")
    data = answer.data
    while answer.sw >> 8 == 0x61:
        answer = send(card, "00 C0 00 00 00")
        data += answer.data
    assert hexsw(answer) == "9000"
    return data


def raw_public(key: rsa.RSAPrivateKey, value: bytes) -> bytes:
    numbers = key.public_key().public_numbers()
    result = pow(int.from_bytes(value, "big"), numbers.e, numbers.n)
    return result.to_bytes(key.key_size // 8, "big")


@pytest.mark.parametrize("bits", [1024, 2048])
def test_the_certificate_object_holds_certinfo_the_certificate_and_empty_tags(bits: int) -> None:
    card = make_card(bits=bits)
    select_aid(card, PKI[1])
    items = join_buffers(read_buffer(card, 1), read_buffer(card, 2))
    der = credential(1, bits).certificate.public_bytes(serialization.Encoding.DER)
    assert items == [TLV(0x71, b"\x00"), TLV(0x70, der), TLV(0x72), TLV(0xFE)]


def test_properties_describe_one_pki_object_with_its_key() -> None:
    card = make_card(bits=2048)
    select_aid(card, PKI[2])
    items = decode(send(card, "80 56 01 00 1D").data)
    assert [item.tag for item in items] == [0x01, 0x40, 0x51]
    pki_object = decode(items[2].value)
    assert pki_object[0] == TLV(0x41, b"\x01\x02")
    assert pki_object[1].value[0] == 0x00
    # RSA, 2048/64 = 0x20, private key present, public key present.
    assert pki_object[2] == TLV(0x43, bytes.fromhex("06 20 01 01"))


def test_long_properties_add_libcacards_tags_39_and_3a() -> None:
    card = make_card()
    select_aid(card, PKI[0])
    answer = send(card, "80 56 40 00 00")
    answer = send(card, f"80 56 40 00 {answer.sw2:02X}")
    items = decode(answer.data)
    assert items[-2:] == [TLV(0x39, b"\x00"), TLV(0x3A, bytes.fromhex("A0 00 00 00 79 03 00"))]


@pytest.mark.parametrize("bits", [1024, 2048])
def test_a_pkcs1_signature_block_is_raised_to_d(bits: int) -> None:
    card = logged_in(bits)
    key = private_key(0, bits)
    block = b"\x00\x01" + b"\xff" * (bits // 8 - 3 - 32) + b"\x00" + os.urandom(32)
    signature = operate(card, block)
    assert raw_public(key, signature) == block


def test_any_block_below_the_modulus_works_so_pss_and_oaep_padding_can_be_done_on_the_host() -> (
    None
):
    card = logged_in(2048)
    key = private_key(0, 2048)
    block = b"\x00" + os.urandom(255)
    assert raw_public(key, operate(card, block)) == block


def test_decrypt_returns_the_padded_plaintext_block() -> None:
    card = logged_in(2048, index=2)
    key = private_key(2, 2048)
    ciphertext = key.public_key().encrypt(b"1234567890\n", padding.PKCS1v15())
    block = operate(card, ciphertext)
    assert block[:2] == b"\x00\x02"
    assert block.endswith(b"\x001234567890\n")
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    ciphertext = key.public_key().encrypt(b"secret", oaep)
    assert key.decrypt(ciphertext, oaep) == b"secret"
    assert raw_public(key, operate(card, ciphertext)) == ciphertext


def test_chunks_of_any_size_add_up() -> None:
    card = logged_in(2048)
    block = b"\x00" + os.urandom(255)
    assert operate(card, block, chunk=17) == operate(card, block, chunk=255)


def test_without_the_pin_the_key_cannot_be_used() -> None:
    card = make_card()
    select_aid(card, PKI[0])
    assert hexsw(send(card, "00 42 80 00 04 00 01 FF FF")) == "6982"
    assert hexsw(send(card, "00 42 00 00 80 " + "00" * 128)) == "6982"


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00 42 00 00 10 " + "00" * 16, "6984"),  # not the modulus length
        ("00 42 00 00 80 " + "FF" * 128, "6A80"),  # not below the modulus
        ("00 42 01 00 02 0001", "6A86"),
        ("00 42 00 01 02 0001", "6A86"),
        ("80 58 00 00 02 01 02", "6985"),  # UPDATE BUFFER on a PKI applet: libcacard's 6985
    ],
)
def test_bad_operations(apdu: str, sw: str) -> None:
    assert hexsw(send(logged_in(), apdu)) == sw


def test_more_input_than_the_modulus_is_refused_at_once() -> None:
    card = logged_in()
    send(card, "00 42 80 00 80 " + "00" * 128)
    assert hexsw(send(card, "00 42 80 00 01 00")) == "6984"


def test_selecting_the_applet_again_drops_a_half_sent_input() -> None:
    card = logged_in()
    send(card, "00 42 80 00 40 " + "00" * 64)
    select_aid(card, PKI[0])
    assert hexsw(send(card, "00 42 00 00 40 " + "00" * 64)) == "6984"


def test_an_error_answers_drop_the_input_too() -> None:
    card = logged_in()
    send(card, "00 42 80 00 40 " + "00" * 64)
    send(card, "00 42 01 00 01 00")
    assert hexsw(send(card, "00 42 00 00 40 " + "00" * 64)) == "6984"


class _FailingKey:
    """A key whose store fails (a token unplugged mid-operation)."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key_size = key.key_size
        self.public_key = key.public_key()

    def private_operation(self, block: bytes) -> bytes:
        raise KeyOperationError("token removed")


def test_a_failing_key_store_answers_6f00() -> None:
    good = credential(0)
    failing = Credential(good.certificate, _FailingKey(private_key(0)))
    card = Card([PKIApplet(0, failing)], pin_state())
    select_aid(card, PKI[0])
    send(card, "00 20 00 00 08 " + PIN_HEX)
    assert hexsw(send(card, "00 42 00 00 80 00" + "01" * 127)) == "6F00"


def test_there_are_ten_pki_applets_at_most() -> None:
    with pytest.raises(ValueError, match=r"0\.\.9"):
        PKIApplet(10, credential(0))
