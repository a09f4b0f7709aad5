"""The 9B management key's GENERAL AUTHENTICATE exchanges, run against a host written here
from SP 800-73-4 Part 2 Appendix A with ``cryptography`` directly."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from cacard.piv import (
    DEFAULT_MANAGEMENT_KEY,
    Algorithm,
    Answer,
    ManagementKey,
    ManagementKeyAuthentication,
    PIVFormatError,
)

KEYS = {
    Algorithm.TDES: bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F00123456789ABCDEF"),
    Algorithm.AES_128: bytes(range(16)),
    Algorithm.AES_192: bytes(range(24)),
    Algorithm.AES_256: bytes(range(32)),
}
SUCCESS, NOT_SATISFIED, INCORRECT_DATA, INCORRECT_P1_P2 = 0x9000, 0x6982, 0x6A80, 0x6A86


class Host:
    """A client that knows the key, independent of the card's code."""

    def __init__(self, algorithm: Algorithm, key: bytes) -> None:
        cipher = TripleDES(key) if algorithm is Algorithm.TDES else algorithms.AES(key)
        self.cipher = Cipher(cipher, modes.ECB())
        self.block = 8 if algorithm is Algorithm.TDES else 16

    def encrypt(self, block: bytes) -> bytes:
        encryptor = self.cipher.encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def decrypt(self, block: bytes) -> bytes:
        decryptor = self.cipher.decryptor()
        return decryptor.update(block) + decryptor.finalize()


def template(*items: tuple[int, bytes]) -> bytes:
    inner = b"".join(bytes((tag, len(value))) + value for tag, value in items)
    return bytes((0x7C, len(inner))) + inner


def inner(answer: Answer, tag: int) -> bytes:
    """The value of the one item inside a ``7C`` answer tagged ``tag``."""
    assert answer.data[0] == 0x7C
    assert answer.data[1] == len(answer.data) - 2
    assert answer.data[2] == tag
    assert answer.data[3] == len(answer.data) - 4
    return answer.data[4:]


def counter() -> Callable[[int], bytes]:
    """Deterministic "randomness": each call a different block."""
    calls = itertools.count(1)
    return lambda size: bytes((next(calls),)) * size


def card_for(algorithm: Algorithm) -> ManagementKeyAuthentication:
    return ManagementKeyAuthentication(ManagementKey(algorithm, KEYS[algorithm]), counter())


@pytest.mark.parametrize("algorithm", list(KEYS))
def test_mutual_authentication_succeeds_for_a_host_with_the_key(algorithm: Algorithm) -> None:
    card, host = card_for(algorithm), Host(algorithm, KEYS[algorithm])
    first = card.general_authenticate(algorithm, 0x9B, bytes.fromhex("7C 02 80 00"))
    assert first.sw == SUCCESS
    witness = host.decrypt(inner(first, 0x80))
    challenge = bytes(range(0xA0, 0xA0 + host.block))
    second = card.general_authenticate(
        algorithm, 0x9B, template((0x80, witness), (0x81, challenge))
    )
    assert second.sw == SUCCESS
    # The host checks the card: it must hold the same key.
    assert host.decrypt(inner(second, 0x82)) == challenge
    assert card.authenticated


@pytest.mark.parametrize("algorithm", list(KEYS))
def test_challenge_response_authenticates_the_host(algorithm: Algorithm) -> None:
    card, host = card_for(algorithm), Host(algorithm, KEYS[algorithm])
    first = card.general_authenticate(algorithm, 0x9B, bytes.fromhex("7C 02 81 00"))
    challenge = inner(first, 0x81)
    assert len(challenge) == host.block
    second = card.general_authenticate(algorithm, 0x9B, template((0x82, host.encrypt(challenge))))
    assert second == Answer(SUCCESS)
    assert card.authenticated


@pytest.mark.parametrize("algorithm", list(KEYS))
def test_a_wrong_witness_is_6982_and_ends_the_exchange(algorithm: Algorithm) -> None:
    card, host = card_for(algorithm), Host(algorithm, KEYS[algorithm])
    first = card.general_authenticate(algorithm, 0x9B, bytes.fromhex("7C 02 80 00"))
    witness = host.decrypt(inner(first, 0x80))
    wrong = bytes((witness[0] ^ 1,)) + witness[1:]
    challenge = bytes(host.block)
    answer = card.general_authenticate(algorithm, 0x9B, template((0x80, wrong), (0x81, challenge)))
    assert answer == Answer(NOT_SATISFIED)
    assert not card.authenticated
    # The witness is gone: sending the right one now does not open the card.
    retry = card.general_authenticate(algorithm, 0x9B, template((0x80, witness), (0x81, challenge)))
    assert retry == Answer(NOT_SATISFIED)
    assert not card.authenticated


def test_a_wrong_response_is_6982() -> None:
    card, host = card_for(Algorithm.AES_128), Host(Algorithm.AES_128, bytes(16))
    challenge = inner(card.general_authenticate(0x08, 0x9B, bytes.fromhex("7C 02 81 00")), 0x81)
    answer = card.general_authenticate(0x08, 0x9B, template((0x82, host.encrypt(challenge))))
    assert answer == Answer(NOT_SATISFIED)
    assert not card.authenticated


def test_a_second_step_without_a_first_is_6982() -> None:
    card = card_for(Algorithm.AES_128)
    assert card.general_authenticate(0x08, 0x9B, template((0x82, bytes(16)))).sw == NOT_SATISFIED
    steps = template((0x80, bytes(16)), (0x81, bytes(16)))
    assert card.general_authenticate(0x08, 0x9B, steps).sw == NOT_SATISFIED


def test_a_new_attempt_drops_the_earlier_authentication() -> None:
    card, host = card_for(Algorithm.TDES), Host(Algorithm.TDES, KEYS[Algorithm.TDES])
    challenge = inner(card.general_authenticate(0x03, 0x9B, bytes.fromhex("7C 02 81 00")), 0x81)
    card.general_authenticate(0x03, 0x9B, template((0x82, host.encrypt(challenge))))
    assert card.authenticated
    card.general_authenticate(0x03, 0x9B, bytes.fromhex("7C 02 80 00"))
    assert not card.authenticated


def test_reset_forgets_the_authentication() -> None:
    card, host = card_for(Algorithm.AES_256), Host(Algorithm.AES_256, KEYS[Algorithm.AES_256])
    challenge = inner(card.general_authenticate(0x0C, 0x9B, bytes.fromhex("7C 02 81 00")), 0x81)
    card.general_authenticate(0x0C, 0x9B, template((0x82, host.encrypt(challenge))))
    card.reset()
    assert not card.authenticated


def test_the_card_encrypts_with_aes_as_fips_197_says() -> None:
    # FIPS-197 Appendix C.1: the card's encrypted witness is the known ciphertext.
    key = ManagementKey(Algorithm.AES_128, bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    plaintext = bytes.fromhex("00112233445566778899aabbccddeeff")
    card = ManagementKeyAuthentication(key, lambda size: plaintext)
    answer = card.general_authenticate(0x08, 0x9B, bytes.fromhex("7C 02 80 00"))
    assert inner(answer, 0x80) == bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")


def test_the_card_encrypts_with_3des_as_des_does_for_a_repeated_key() -> None:
    # Triple DES with K1 = K2 = K3 is single DES; the classic worked DES example.
    key = ManagementKey(Algorithm.TDES, bytes.fromhex("133457799BBCDFF1") * 3)
    card = ManagementKeyAuthentication(key, lambda size: bytes.fromhex("0123456789ABCDEF"))
    answer = card.general_authenticate(0x03, 0x9B, bytes.fromhex("7C 02 80 00"))
    assert inner(answer, 0x80) == bytes.fromhex("85E813540F0AB405")


def test_the_default_key_is_the_well_known_3des_test_key() -> None:
    assert DEFAULT_MANAGEMENT_KEY.algorithm is Algorithm.TDES
    assert DEFAULT_MANAGEMENT_KEY.key == bytes.fromhex("0102030405060708") * 3
    card = ManagementKeyAuthentication()
    host = Host(Algorithm.TDES, DEFAULT_MANAGEMENT_KEY.key)
    challenge = inner(card.general_authenticate(0x03, 0x9B, bytes.fromhex("7C 02 81 00")), 0x81)
    card.general_authenticate(0x03, 0x9B, template((0x82, host.encrypt(challenge))))
    assert card.authenticated
    assert "0102" not in repr(DEFAULT_MANAGEMENT_KEY)


def test_p1_00_names_3des_too() -> None:
    card = card_for(Algorithm.TDES)
    assert card.general_authenticate(0x00, 0x9B, bytes.fromhex("7C 02 81 00")).sw == SUCCESS


@pytest.mark.parametrize(("p1", "p2"), [(0x08, 0x9B), (0x03, 0x9A), (0x07, 0x9B)])
def test_the_wrong_algorithm_or_key_is_6a86(p1: int, p2: int) -> None:
    card = card_for(Algorithm.TDES)
    assert card.general_authenticate(p1, p2, bytes.fromhex("7C 02 81 00")) == Answer(
        INCORRECT_P1_P2
    )


@pytest.mark.parametrize(
    "data",
    [
        "",
        "7C 00",
        "7C 02 80 01",
        "7C 04 80 00 81 00",
        "7C 02 80 00 00",
        "7D 02 80 00",
        "7C 03 82 01 00",
        "7C 04 80 00 80 00",
    ],
)
def test_malformed_templates_are_6a80(data: str) -> None:
    card = card_for(Algorithm.AES_128)
    assert card.general_authenticate(0x08, 0x9B, bytes.fromhex(data)) == Answer(INCORRECT_DATA)


def test_a_witness_of_the_wrong_block_size_is_6a80() -> None:
    card = card_for(Algorithm.AES_128)
    card.general_authenticate(0x08, 0x9B, bytes.fromhex("7C 02 80 00"))
    steps = template((0x80, bytes(8)), (0x81, bytes(16)))
    assert card.general_authenticate(0x08, 0x9B, steps) == Answer(INCORRECT_DATA)


@pytest.mark.parametrize(("algorithm", "size"), [(Algorithm.TDES, 16), (Algorithm.AES_128, 24)])
def test_a_key_of_the_wrong_size_names_the_field(algorithm: Algorithm, size: int) -> None:
    with pytest.raises(PIVFormatError) as caught:
        ManagementKey(algorithm, bytes(size))
    assert (caught.value.field, caught.value.value) == ("key", size)


def test_an_asymmetric_algorithm_is_no_management_key() -> None:
    with pytest.raises(PIVFormatError) as caught:
        ManagementKey(Algorithm.RSA_2048, bytes(24))
    assert caught.value.field == "algorithm"


ITEM = st.tuples(st.sampled_from([0x80, 0x81, 0x82, 0x85, 0x7C]), st.binary(max_size=20))
BODIES = st.one_of(
    st.binary(max_size=48),
    st.lists(ITEM, max_size=3).map(lambda items: template(*items)),
)


@given(
    st.sampled_from(list(KEYS)),
    st.lists(st.tuples(st.sampled_from([0x00, 0x03, 0x08, 0x0A, 0x0C, 0x11]), BODIES), max_size=4),
)
def test_any_command_sequence_gets_a_status_answer(
    algorithm: Algorithm, commands: list[tuple[int, bytes]]
) -> None:
    # Real randomness: a guessed witness or response would be a 2**-64 fluke, not a finding.
    card = ManagementKeyAuthentication(ManagementKey(algorithm, KEYS[algorithm]))
    for p1, body in [(algorithm.value, bytes.fromhex("7C 02 80 00")), *commands]:
        answer = card.general_authenticate(p1, 0x9B, body)
        assert answer.sw in {SUCCESS, NOT_SATISFIED, INCORRECT_DATA, INCORRECT_P1_P2}
        assert answer.data == b"" or answer.sw == SUCCESS
        assert not card.authenticated
