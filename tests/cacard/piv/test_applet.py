"""The PIV applet through a real :class:`cacard.card.Card`: every command as a host sends it,
answers checked independently (signatures verified and ECDH recomputed with ``cryptography``)."""

from __future__ import annotations

import functools
import hashlib

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacard.atr import PIV_ATR
from cacard.card import Card, CardState
from cacard.piv import (
    CHUID,
    PIV_AID,
    ApplicationPropertyTemplate,
    CardCapabilityContainer,
    CertificateObject,
    DiscoveryObject,
    KeyReference,
)
from cacard.piv.applet import MAX_CHAIN, PIVApplet, SlotKey
from cacard.piv.ber import decode_fields, decode_one, encode
from cacard.piv.objects import ObjectTag
from cacard.software import software_key
from cardfloor.iso7816.apdu import CommandAPDU, Response, is_valid_status

from ..cards import make_card as make_cac_card
from ..cards import pin_state

PIN, PUK = "123456", "12345678"
CERT_9A = b"\x30\x82\x03\xe4" + bytes(range(256)) * 3 + bytes(228)  # longer than one Le
MGMT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@functools.cache
def keys() -> dict[KeyReference, SlotKey]:
    return {
        KeyReference.PIV_AUTHENTICATION: SlotKey(
            software_key(rsa.generate_private_key(65537, 2048)), CERT_9A
        ),
        KeyReference.DIGITAL_SIGNATURE: SlotKey(
            software_key(ec.generate_private_key(ec.SECP256R1()))
        ),
        KeyReference.KEY_MANAGEMENT: SlotKey(software_key(ec.generate_private_key(ec.SECP256R1()))),
        KeyReference.CARD_AUTHENTICATION: SlotKey(
            software_key(ec.generate_private_key(ec.SECP384R1()))
        ),
    }


def make_card() -> Card:
    applet = PIVApplet(pin=pin_state(PIN), puk=pin_state(PUK), keys=keys())
    return Card([applet], pin_state())


def tx(
    card: Card,
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    data: bytes = b"",
    *,
    le: int | None = None,
    extended: bool = False,
) -> Response:
    command = CommandAPDU(cla, ins, p1, p2, data, le, extended)
    return Response.from_bytes(card.transmit(command.to_bytes()))


def fetch(card: Card, first: Response) -> Response:
    """Follow ``61xx`` with GET RESPONSE as a T=0 host does."""
    data, answer = first.data, first
    while answer.sw1 == 0x61:
        answer = Response.from_bytes(card.transmit(bytes((0, 0xC0, 0, 0, answer.sw2))))
        data += answer.data
    return Response(answer.sw, data)


def select(card: Card, aid: bytes = PIV_AID) -> Response:
    return tx(card, 0x00, 0xA4, 0x04, 0x00, aid, le=256)


def get_data(card: Card, tag: bytes, le: int = 256, extended: bool = False) -> Response:
    data = bytes((0x5C, len(tag))) + tag
    return fetch(card, tx(card, 0x00, 0xCB, 0x3F, 0xFF, data, le=le, extended=extended))


def pad(pin: str) -> bytes:
    return pin.encode().ljust(8, b"\xff")


def verify(card: Card, pin: str | None = PIN) -> int:
    return tx(card, 0x00, 0x20, 0x00, 0x80, b"" if pin is None else pad(pin)).sw


def template(*items: tuple[int, bytes]) -> bytes:
    return encode([(0x7C, encode(items))])


def general_authenticate(card: Card, alg: int, key: int, data: bytes) -> Response:
    extended = len(data) > 255
    return fetch(card, tx(card, 0x00, 0x87, alg, key, data, le=256, extended=extended))


def result_of(answer: Response) -> bytes:
    assert answer.sw == 0x9000, f"{answer.sw:04X}"
    return decode_fields(decode_one(answer.data, 0x7C), where="test")[0x82]


def authenticate_management(card: Card) -> None:
    """Challenge-response with the default 3DES key, computed here with ``cryptography``."""
    challenge = decode_fields(
        decode_one(general_authenticate(card, 0x03, 0x9B, template((0x81, b""))).data, 0x7C),
        where="test",
    )[0x81]
    encryptor = Cipher(TripleDES(MGMT_KEY), modes.ECB()).encryptor()
    response = encryptor.update(challenge) + encryptor.finalize()
    assert general_authenticate(card, 0x03, 0x9B, template((0x82, response))).sw == 0x9000


@pytest.fixture
def card() -> Card:
    card = make_card()
    assert fetch(card, select(card)).sw == 0x9000
    return card


# -- SELECT -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", range(5, len(PIV_AID) + 1))
def test_select_by_the_aid_or_a_truncation_down_to_the_rid(length: int) -> None:
    card = make_card()
    answer = fetch(card, select(card, PIV_AID[:length]))
    assert answer.sw == 0x9000
    assert ApplicationPropertyTemplate.from_bytes(answer.data).algorithms


@pytest.mark.parametrize("aid", [PIV_AID[:4], PIV_AID + b"\x00", b"\xa0\x00\x00\x03\x09"])
def test_select_of_another_aid_is_not_found(aid: bytes) -> None:
    card = make_card()
    assert select(card, aid).sw == 0x6A82
    assert card.selected() is None


# -- GET DATA -----------------------------------------------------------------------------


def test_chuid_carries_a_guid_of_its_own_per_card(card: Card) -> None:
    other = make_card()
    select(other)
    guids = {
        CHUID.from_bytes(decode_one(get_data(c, bytes.fromhex("5FC102")).data, 0x53)).guid
        for c in (card, other)
    }
    assert len(guids) == 2


def test_discovery_object_says_application_pin_only(card: Card) -> None:
    answer = get_data(card, b"\x7e")
    assert answer.sw == 0x9000
    assert answer.data.endswith(bytes.fromhex("5F2F024000"))
    assert DiscoveryObject.from_bytes(answer.data) == DiscoveryObject()


def test_ccc_and_key_history_are_present(card: Card) -> None:
    ccc = get_data(card, bytes.fromhex("5FC107"))
    CardCapabilityContainer.from_bytes(decode_one(ccc.data, 0x53))
    assert get_data(card, bytes.fromhex("5FC10C")).sw == 0x9000


def test_certificate_longer_than_le_comes_through_get_response(card: Card) -> None:
    first = tx(card, 0x00, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C035FC105"), le=256)
    assert first.sw1 == 0x61
    answer = fetch(card, first)
    assert CertificateObject.from_bytes(decode_one(answer.data, 0x53)).certificate == CERT_9A


def test_certificate_in_one_extended_response(card: Card) -> None:
    answer = tx(card, 0x00, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C035FC105"), le=65536, extended=True)
    assert answer.sw == 0x9000
    assert CertificateObject.from_bytes(decode_one(answer.data, 0x53)).certificate == CERT_9A


@pytest.mark.parametrize(("tag", "sw"), [("5FC10A", 0x6A82), ("5FC106", 0x6A82), ("5F01", 0x6A80)])
def test_absent_or_unknown_objects(card: Card, tag: str, sw: int) -> None:
    assert get_data(card, bytes.fromhex(tag)).sw == sw


# -- PIN and PUK --------------------------------------------------------------------------


def test_verify_counts_tries_and_reports_status(card: Card) -> None:
    assert verify(card, None) == 0x63C3
    assert verify(card, "654321") == 0x63C2
    assert verify(card, PIN) == 0x9000
    assert verify(card, None) == 0x9000
    assert tx(card, 0x00, 0x20, 0xFF, 0x80).sw == 0x9000
    assert verify(card, None) == 0x63C3


def test_malformed_pin_costs_no_try(card: Card) -> None:
    for data in (b"12345\xff\xff\xff", b"1234567", b"12a456\xff\xff", pad(PIN) + b"\xff"):
        assert tx(card, 0x00, 0x20, 0x00, 0x80, data).sw == 0x6A80
    assert verify(card, None) == 0x63C3


def test_blocked_pin_unblocked_with_the_puk(card: Card) -> None:
    for left in (2, 1, 0):
        assert verify(card, "000000") == 0x63C0 | left
    assert verify(card, PIN) == 0x6983
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad("87654321") + pad("999999")).sw == 0x63C2
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad("999999")).sw == 0x9000
    assert verify(card, "999999") == 0x9000


def test_change_pin_and_puk(card: Card) -> None:
    assert tx(card, 0x00, 0x24, 0x00, 0x80, pad("000000") + pad("2468024")).sw == 0x63C2
    assert tx(card, 0x00, 0x24, 0x00, 0x80, pad(PIN) + pad("2468024")).sw == 0x9000
    assert verify(card, PIN) == 0x63C2
    assert verify(card, "2468024") == 0x9000
    assert tx(card, 0x00, 0x24, 0x00, 0x81, pad(PUK) + pad("11223344")).sw == 0x9000
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad("999999")).sw == 0x63C2
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad("11223344") + pad("999999")).sw == 0x9000


def test_reset_forgets_the_pin(card: Card) -> None:
    assert verify(card) == 0x9000
    card.power_on()
    select(card)
    assert verify(card, None) == 0x63C3


# -- GENERAL AUTHENTICATE ----------------------------------------------------------------


def pkcs1_block(message: bytes) -> bytes:
    info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    return b"\x00\x01" + b"\xff" * (256 - 3 - len(info)) + b"\x00" + info


def test_rsa_9a_needs_the_pin_and_signs(card: Card) -> None:
    data = template((0x82, b""), (0x81, pkcs1_block(b"hello")))
    assert general_authenticate(card, 0x07, 0x9A, data).sw == 0x6982
    verify(card)
    signature = result_of(general_authenticate(card, 0x07, 0x9A, data))
    public = keys()[KeyReference.PIV_AUTHENTICATION].key.public_key
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())


def test_rsa_input_chained_in_short_apdus(card: Card) -> None:
    verify(card)
    data = template((0x82, b""), (0x81, pkcs1_block(b"chained")))
    for offset in range(0, len(data) - 200, 200):
        assert tx(card, 0x10, 0x87, 0x07, 0x9A, data[offset : offset + 200]).sw == 0x9000
    last = data[(len(data) - 1) // 200 * 200 :]
    signature = result_of(fetch(card, tx(card, 0x00, 0x87, 0x07, 0x9A, last, le=256)))
    public = keys()[KeyReference.PIV_AUTHENTICATION].key.public_key
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"chained", padding.PKCS1v15(), hashes.SHA256())


def test_ecdsa_9c_needs_a_verify_before_each_signature(card: Card) -> None:
    digest = hashlib.sha256(b"sign me").digest()
    data = template((0x82, b""), (0x81, digest))
    verify(card)
    signature = result_of(general_authenticate(card, 0x11, 0x9C, data))
    public = keys()[KeyReference.DIGITAL_SIGNATURE].key.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert general_authenticate(card, 0x11, 0x9C, data).sw == 0x6982
    verify(card)
    assert general_authenticate(card, 0x11, 0x9C, data).sw == 0x9000


def test_card_authentication_9e_needs_no_pin(card: Card) -> None:
    digest = hashlib.sha384(b"door").digest()
    signature = result_of(
        general_authenticate(card, 0x14, 0x9E, template((0x82, b""), (0x81, digest)))
    )
    public = keys()[KeyReference.CARD_AUTHENTICATION].key.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))


def test_a_shorter_hash_signs_on_a_p384_key_as_ecdsa_takes_it(card: Card) -> None:
    # OpenSC sends the 32-byte SHA-256 hash as it is to a P-384 key (CKM_ECDSA_SHA256).
    public = keys()[KeyReference.CARD_AUTHENTICATION].key.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    digest = hashlib.sha256(b"door").digest()
    data = template((0x82, b""), (0x81, digest))
    signature = result_of(general_authenticate(card, 0x14, 0x9E, data))
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # Longer than the curve, or nothing at all: refused.
    for block in (bytes(49), b""):
        data = template((0x82, b""), (0x81, block))
        assert general_authenticate(card, 0x14, 0x9E, data).sw == 0x6A80


def test_ecdh_on_9d_matches_the_hosts_exchange(card: Card) -> None:
    verify(card)
    host = ec.generate_private_key(ec.SECP256R1())
    point = host.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    shared = result_of(general_authenticate(card, 0x11, 0x9D, template((0x82, b""), (0x85, point))))
    card_public = keys()[KeyReference.KEY_MANAGEMENT].key.public_key
    assert isinstance(card_public, ec.EllipticCurvePublicKey)
    assert shared == host.exchange(ec.ECDH(), card_public)
    # Not on the signature key, and not with a point off the curve.
    assert (
        general_authenticate(
            card, 0x11, 0x9D, template((0x82, b""), (0x85, b"\x04" + bytes(64)))
        ).sw
        == 0x6A80
    )


@pytest.mark.parametrize(("alg", "key"), [(0x11, 0x9A), (0x07, 0x9E), (0x14, 0x9C)])
def test_wrong_algorithm_for_the_key(card: Card, alg: int, key: int) -> None:
    verify(card)
    assert (
        general_authenticate(card, alg, key, template((0x82, b""), (0x81, bytes(32)))).sw == 0x6A86
    )


# -- PUT DATA and GENERATE -----------------------------------------------------------------


def test_put_data_needs_the_management_key_and_chains(card: Card) -> None:
    content = CertificateObject(bytes(range(256)) * 2).to_bytes()
    data = encode([(0x5C, bytes.fromhex("5FC10A")), (0x53, content)])
    assert tx(card, 0x00, 0xDB, 0x3F, 0xFF, data, extended=True).sw == 0x6982
    authenticate_management(card)
    assert tx(card, 0x10, 0xDB, 0x3F, 0xFF, data[:255]).sw == 0x9000
    assert tx(card, 0x10, 0xDB, 0x3F, 0xFF, data[255:510]).sw == 0x9000
    assert tx(card, 0x00, 0xDB, 0x3F, 0xFF, data[510:]).sw == 0x9000
    assert decode_one(get_data(card, bytes.fromhex("5FC10A")).data, 0x53) == content


def test_generate_replaces_the_key(card: Card) -> None:
    request = bytes.fromhex("AC03800111")
    assert tx(card, 0x00, 0x47, 0x00, 0x9A, request, le=256).sw == 0x6982
    authenticate_management(card)
    answer = fetch(card, tx(card, 0x00, 0x47, 0x00, 0x9A, request, le=256))
    assert answer.sw == 0x9000
    point = decode_fields(decode_one(answer.data, 0x7F49), where="test")[0x86]
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    verify(card)
    digest = hashlib.sha256(b"new key").digest()
    signature = result_of(
        general_authenticate(card, 0x11, 0x9A, template((0x82, b""), (0x81, digest)))
    )
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_generate_rsa_answers_modulus_and_exponent() -> None:
    card = make_card()
    select(card)
    authenticate_management(card)
    answer = fetch(card, tx(card, 0x00, 0x47, 0x00, 0x9E, bytes.fromhex("AC03800106"), le=256))
    fields = decode_fields(decode_one(answer.data, 0x7F49), where="test")
    assert len(fields[0x81]) == 128
    assert int.from_bytes(fields[0x82], "big") == 65537


# -- robustness ----------------------------------------------------------------------------

_FUZZ_CARD = make_card()
select(_FUZZ_CARD)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([0x00, 0x10, 0x01, 0x0C, 0x80]),
    st.sampled_from([0x20, 0x24, 0x2C, 0x47, 0x87, 0xCB, 0xDB, 0xC0, 0x00]),
    st.integers(0, 255),
    st.sampled_from([0x00, 0x80, 0x81, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x82, 0x3F, 0xFF]),
    st.binary(max_size=300),
)
def test_random_apdus_always_get_a_valid_status(
    cla: int, ins: int, p1: int, p2: int, data: bytes
) -> None:
    raw = bytes((cla, ins, p1, p2)) + (bytes((len(data),)) + data if 0 < len(data) < 256 else b"")
    if len(data) >= 256:
        raw = bytes((cla, ins, p1, p2, 0)) + len(data).to_bytes(2, "big") + data
    answer = Response.from_bytes(_FUZZ_CARD.transmit(raw))
    assert is_valid_status(answer.sw)
    assert answer.sw != 0x6F00


# -- chains, mixed cards, counters -----------------------------------------------------------


def test_chain_is_bounded_and_cleared_by_select(card: Card) -> None:
    chunk = bytes(255)
    for _ in range(MAX_CHAIN // 255):
        assert tx(card, 0x10, 0xDB, 0x3F, 0xFF, chunk).sw == 0x9000
    assert tx(card, 0x10, 0xDB, 0x3F, 0xFF, chunk).sw == 0x6700
    verify(card)
    data = template((0x82, b""), (0x81, pkcs1_block(b"x")))
    assert tx(card, 0x10, 0x87, 0x07, 0x9A, data[:10]).sw == 0x9000
    select(card)
    # The first 10 bytes were forgotten: the rest alone is no template.
    assert general_authenticate(card, 0x07, 0x9A, data[10:]).sw == 0x6A80


@pytest.mark.parametrize("ins", [0xFD, 0xF8, 0xF7, 0xFF, 0xFB, 0xFA, 0xF9])
def test_yubikey_instructions_are_unknown_and_leave_piv_selected(card: Card, ins: int) -> None:
    # GET VERSION, GET SERIAL, GET METADATA, SET MANAGEMENT KEY, RESET, SET PIN RETRIES and
    # ATTEST are YubiKey's, not PIV's; yubico-piv-tool copes with 6D00 for the first (its
    # connect reads the version and goes on without it: lib/ykpiv.c,
    # _ykpiv_select_application) and sends the others only for YubiKey-only actions.
    assert tx(card, 0x00, ins, 0x00, 0x00, le=256).sw == 0x6D00
    assert verify(card, None) == 0x63C3
    assert get_data(card, bytes.fromhex("7E")).sw == 0x9000


def test_chaining_other_commands_is_refused(card: Card) -> None:
    assert tx(card, 0x10, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C017E")).sw == 0x6884


def test_pin_always_lapses_after_any_other_command(card: Card) -> None:
    data = template((0x82, b""), (0x81, bytes(32)))
    verify(card)
    assert tx(card, 0x80, 0xCA, 0x00, 0x00, le=256).sw != 0x9000  # a CAC-class command
    assert general_authenticate(card, 0x11, 0x9C, data).sw == 0x6982


def test_puk_blocks_after_its_own_tries(card: Card) -> None:
    for left in (2, 1, 0):
        assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad("000000") + pad("999999")).sw == 0x63C0 | left
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad("999999")).sw == 0x6983
    assert verify(card, None) == 0x63C3  # the PIN's counter is its own


def test_piv_and_cac_applets_on_one_card() -> None:
    cac = make_cac_card(certificates=1)
    piv = PIVApplet(pin=pin_state(PIN), puk=pin_state(PUK))
    card = Card([*cac.applets.values(), piv], pin_state())
    cac_aid = next(iter(cac.applets))
    assert select(card, cac_aid).sw1 in (0x90, 0x61)
    assert card.selected() is cac.applets[cac_aid]
    assert select(card, cac_aid[:-1]).sw == 0x6A82  # CAC AIDs stay exact
    assert select(card, PIV_AID[:5]).sw == 0x9000
    assert card.selected() is piv
    # The card's own PIN (reference 00) is still the ISO layer's, next to the PIV PIN.
    assert tx(card, 0x00, 0x20, 0x00, 0x00).sw == 0x63C3
    assert card.pin_verified is False


def test_with_the_card_pin_the_puk_unblocks_the_card_pin_and_persists_it() -> None:
    saved: list[CardState] = []
    piv = PIVApplet(pin=None, puk=pin_state(PUK), keys=keys())
    card = Card([piv], pin_state(PIN), on_state_change=saved.append)
    select(card)
    for _ in range(3):
        verify(card, "000000")
    assert tx(card, 0x00, 0x20, 0x00, 0x00).sw == 0x6983  # the card's PIN is blocked
    assert saved[-1].pin.tries_remaining == 0
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad("999999")).sw == 0x9000
    assert saved[-1].pin.tries_remaining == 3
    assert saved[-1].pin.reference.matches(b"999999")
    assert tx(card, 0x00, 0x20, 0x00, 0x00, pad("999999")).sw == 0x9000
    assert verify(card, None) == 0x9000


def test_with_the_card_pin_a_failed_write_refuses_the_unblock() -> None:
    def refuse(state: CardState) -> None:
        if state.pin.tries_remaining == state.pin.max_tries:
            raise OSError("disk full")

    piv = PIVApplet(pin=None, puk=pin_state(PUK))
    card = Card([piv], pin_state(PIN, max_tries=1), on_state_change=refuse)
    select(card)
    assert verify(card, "000000") == 0x63C0
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad("999999")).sw == 0x6581
    assert verify(card, None) == 0x6983  # still blocked: the refill was not persisted


@pytest.mark.parametrize(
    ("name", "apdu"),
    [
        ("GENERAL AUTHENTICATE (a private-key operation)", "00870707"),
        ("GENERATE ASYMMETRIC KEY PAIR (RSA key generation)", "0047009A"),
        ("VERIFY (a PBKDF2 comparison)", "00200080"),
        ("CHANGE REFERENCE DATA", "00240080"),
        ("RESET RETRY COUNTER", "002C0080"),
    ],
)
def test_slow_piv_commands_are_run_off_the_event_loop(name: str, apdu: str) -> None:
    # An asyncio caller (ccid-passthru, vscclient) runs these in a worker thread; the rest inline.
    assert Card.may_block(bytes.fromhex(apdu)), name
    assert not Card.may_block(bytes.fromhex("00CB3FFF")), "GET DATA is answered from memory"


# -- yubico-piv-tool 2.2.0 -----------------------------------------------------------------


def raw(card: Card, apdu: str) -> Response:
    """One APDU as yubico-piv-tool writes it: header, Lc and data, never an Le (lib/ykpiv.c,
    _send_data sends Lc + 5 bytes)."""
    return Response.from_bytes(card.transmit(bytes.fromhex(apdu)))


def test_yubico_piv_tool_connects_authenticates_and_generates() -> None:
    applet = PIVApplet(pin=pin_state(PIN), puk=pin_state(PUK), keys=keys())
    # As a card with PIV is built and served over T=1 (cacard.store, cacard.vpcd).
    card = Card([applet], pin_state(), atr=PIV_ATR, selection_survives_miss=True)
    card.protocol = 1
    # ykpiv_connect: SELECT, whose answer it takes as it comes (_ykpiv_select_application)...
    assert raw(card, "00A4040005A000000308").sw == 0x9000
    assert raw(card, "0020008000").sw == 0x63C3  # ...the PIN's tries...
    assert raw(card, "00FD000000").sw == 0x6D00  # ...GET VERSION: not a YubiKey...
    # ...so the serial from YubiKey's OTP application (_ykpiv_get_serial): a miss that leaves
    # PIV selected.
    assert raw(card, "00A4040008A000000527200101").sw == 0x6A82
    assert raw(card, "00CB3FFF035C017E").sw == 0x9000
    # _ykpiv_authenticate: the 9B witness, then the host's answer and challenge, each read
    # as it comes.
    witness = raw(card, "0087039B047C028000")
    assert witness.sw == 0x9000
    encrypted = decode_fields(decode_one(witness.data, 0x7C), where="test")[0x80]
    decryptor = Cipher(TripleDES(MGMT_KEY), modes.ECB()).decryptor()
    plain = decryptor.update(encrypted) + decryptor.finalize()
    challenge = bytes(range(8))
    response = template((0x80, plain), (0x81, challenge))
    answer = raw(card, f"0087039B{len(response):02X}{response.hex()}")
    assert answer.sw == 0x9000
    encryptor = Cipher(TripleDES(MGMT_KEY), modes.ECB()).encryptor()
    expected = encryptor.update(challenge) + encryptor.finalize()
    assert decode_fields(decode_one(answer.data, 0x7C), where="test")[0x82] == expected
    # ykpiv_generate, through _ykpiv_transfer_data: more than 256 bytes go through 61xx.
    generated = raw(card, "0047009A05AC03800107")
    data = generated.data
    while generated.sw1 == 0x61:
        generated = raw(card, "00C0000000")
        data += generated.data
    assert generated.sw == 0x9000
    assert len(decode_fields(decode_one(data, 0x7F49), where="test")[0x81]) == 256


def test_a_kept_empty_object_is_one_put_data_deleted() -> None:
    # A card directory keeps deletions as empty objects; after a restart they stay deleted.
    kept = {ObjectTag.CHUID: b"", ObjectTag.PRINTED_INFORMATION: bytes.fromhex("010141")}
    applet = PIVApplet(pin=pin_state(PIN), puk=pin_state(PUK), keys=keys(), objects=kept)
    card = Card([applet], pin_state())
    select(card)
    assert get_data(card, bytes.fromhex("5FC102")).sw == 0x6A82
    assert fetch(card, get_data(card, bytes.fromhex("5FC109"))).sw == 0x9000
