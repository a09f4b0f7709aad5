"""``cacard new``: a CA and certificates for the three CAC roles, with keys, on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from cacard.applets.containers import DataObjectId
from cacard.atr import CAC_ATR_T1
from cacard.generate import (
    DEFAULT_PUK,
    KEY_KINDS,
    CardRequest,
    KeyKind,
    check_upn,
    generate_card,
    person_instance,
    upn_name,
)
from cacard.pin import PinFormatError
from cacard.profile import Applications, ProfileError
from cacard.store import CardStore
from cacard.tlv import TLV, decode

from .cards import hexsw, send


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("generated") / "card"
    generate_card(path, CardRequest(certificates=4, key_size=1024, pin="1234", pin_iterations=1))
    return path


def usage(certificate: x509.Certificate) -> x509.KeyUsage:
    return certificate.extensions.get_extension_for_class(x509.KeyUsage).value


def test_the_roles_are_id_signature_encryption_then_general(generated: Path) -> None:
    profile = CardStore(generated).load_profile()
    certs = [c.certificate for c in profile.credentials]
    assert [c.label for c in profile.credentials] == ["ID", "Signature", "Encryption", "General"]
    assert usage(certs[0]).digital_signature
    assert not usage(certs[0]).key_encipherment
    assert usage(certs[1]).content_commitment
    assert usage(certs[2]).key_encipherment
    assert not usage(certs[2]).digital_signature
    assert usage(certs[3]).digital_signature
    assert usage(certs[3]).key_encipherment
    assert all(c.public_key().key_size == 1024 for c in certs)  # type: ignore[union-attr]


def test_every_certificate_is_signed_by_the_ca_beside_it(generated: Path) -> None:
    ca = x509.load_pem_x509_certificate((generated / "ca.pem").read_bytes())
    for held in CardStore(generated).load_profile().credentials:
        held.certificate.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_card_works_with_the_pin_it_was_given(generated: Path) -> None:
    card = CardStore(generated).open_card()
    send(card, "00 A4 04 0C 07 A0 00 00 00 79 01 02")
    assert hexsw(send(card, "00 20 00 00 08 31323334FFFFFFFF")) == "9000"
    public = CardStore(generated).load_profile().credentials[2].certificate.public_key()
    ciphertext = public.encrypt(b"hi", padding.PKCS1v15())  # type: ignore[union-attr]
    answer = send(card, "00 42 00 00 80 " + ciphertext.hex() + " 00")
    assert answer.data.endswith(b"\x00hi")


def test_person_instance_holds_first_and_last_name(generated: Path) -> None:
    content = CardStore(generated).load_profile().data_objects[DataObjectId.PERSON_INSTANCE]
    assert decode(content) == [TLV(0x01, b"Test"), TLV(0x03, b"User")]
    assert decode(person_instance("Ada")) == [TLV(0x01, b"Ada"), TLV(0x03, b"")]


def test_two_cards_get_different_serials(tmp_path: Path) -> None:
    request = CardRequest(certificates=1, key_size=1024, pin_iterations=1)
    one = generate_card(tmp_path / "one", request).load_profile()
    two = generate_card(tmp_path / "two", request).load_profile()
    assert one.card_id != two.card_id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"certificates": 0}, "1 to 10"),
        ({"certificates": 11}, "1 to 10"),
        ({"key_size": 512}, "1024-4096"),
        ({"name": " "}, "name"),
        ({"atr": bytes.fromhex("3B02AA")}, "lacks the 2 historical bytes"),
    ],
)
def test_requests_a_card_cannot_hold_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CardRequest(**change)  # type: ignore[arg-type]


def test_a_card_can_offer_t1(tmp_path: Path) -> None:
    request = CardRequest(certificates=1, key_size=1024, pin_iterations=1, atr=CAC_ATR_T1)
    store = generate_card(tmp_path / "card", request)
    assert CardStore(store.path).load_profile().atr == CAC_ATR_T1
    assert CardStore(store.path).open_card().power_on() == CAC_ATR_T1


# -- key kinds, UPN, PUK (#15) -------------------------------------------------------------------


CAC_PIV = Applications.CAC_PIV


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"keys": {0: KEY_KINDS["p256"]}}, "key 1", "p256"),  # a CAC card is RSA-only
        (
            {
                "applications": Applications.CAC_PIV,
                "keys": {2: KEY_KINDS["p384"]},
                "certificates": 2,
            },
            "key",
            "3=p384",
        ),
        (
            {
                "applications": Applications.CAC_PIV,
                "certificates": 1,
                "keys": {0: KEY_KINDS["p256"]},
            },
            "key",
            "p256",
        ),
        ({"upn": "nobody"}, "upn", "nobody"),
        ({"upn": "a b@c"}, "upn", "a b@c"),
        ({"upn": "a@b\n"}, "upn", "a@b\n"),
        ({"puk": "12345678"}, "profile", "cac"),
    ],
)
def test_piv_requests_a_card_cannot_hold_name_the_field(
    change: dict[str, object], field: str, value: object
) -> None:
    with pytest.raises(ProfileError) as caught:
        CardRequest(**change)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == (field, value)


@pytest.mark.parametrize("puk", ["1234567", "123456789", "abcdefgh", "1234 678"])
def test_a_puk_is_eight_digits_and_never_echoed(puk: str) -> None:
    with pytest.raises(PinFormatError) as caught:
        CardRequest(applications=Applications.PIV, puk=puk)
    assert caught.value.value == len(puk.encode())
    assert puk not in str(caught.value)


@pytest.mark.parametrize("name", ["RSA2048", "rsa3072", "Rsa4096", "P256", "p384", " p256 "])
def test_key_kinds_by_name_any_case(name: str) -> None:
    kind = KeyKind.named(name)
    assert kind.name == name.strip().lower()
    assert kind.is_ec == name.strip().lower().startswith("p")


@pytest.mark.parametrize("name", ["rsa1024", "p521", "ed25519", ""])
def test_unknown_key_kinds_are_refused(name: str) -> None:
    with pytest.raises(ProfileError) as caught:
        KeyKind.named(name)
    assert (caught.value.field, caught.value.value) == ("key", name)


@given(
    st.text(st.characters(exclude_categories=("Z", "C"), exclude_characters="@"), min_size=1),
    st.text(st.characters(exclude_categories=("Z", "C"), exclude_characters="@"), min_size=1),
)
def test_any_upn_is_encoded_as_an_otherName_utf8string_that_parses_back(
    name: str, realm: str
) -> None:
    upn = check_upn(f"{name}@{realm}")
    (other,) = upn_name(upn).get_values_for_type(x509.OtherName)
    assert other.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    # The DER UTF8String: tag 0C, a definite length, the UTF-8 bytes.
    raw = upn.encode()
    assert other.value[0] == 0x0C
    assert other.value.endswith(raw)
    length = other.value[1 : -len(raw)]
    if len(raw) < 0x80:
        assert length == bytes((len(raw),))
    else:
        assert length[0] == 0x80 | (len(length) - 1)
        assert int.from_bytes(length[1:], "big") == len(raw)


def test_a_long_upn_makes_a_certificate_openssl_reads(tmp_path: Path) -> None:
    upn = "u" * 200 + "@EXAMPLE.ORG"
    request = CardRequest(
        certificates=1, key_size=1024, pin_iterations=1, applications=Applications.PIV, upn=upn
    )
    directory = tmp_path / "card"
    generate_card(directory, request)
    held = x509.load_pem_x509_certificate((directory / "cert-1.pem").read_bytes())
    names = held.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    (other,) = names.get_values_for_type(x509.OtherName)
    assert other.value == bytes((0x0C, 0x81, len(upn))) + upn.encode()


def test_the_ca_is_rsa_of_the_largest_rsa_size_asked(tmp_path: Path) -> None:
    request = CardRequest(
        certificates=2,
        key_size=1024,
        pin_iterations=1,
        applications=Applications.PIV,
        keys={0: KEY_KINDS["p256"], 1: KEY_KINDS["rsa2048"]},
    )
    directory = tmp_path / "card"
    generate_card(directory, request)
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    for number in (1, 2):
        held = x509.load_pem_x509_certificate((directory / f"cert-{number}.pem").read_bytes())
        held.verify_directly_issued_by(ca)


def test_a_card_with_piv_gets_the_default_puk_and_its_profiles_atr(tmp_path: Path) -> None:
    request = CardRequest(
        certificates=1, key_size=1024, pin_iterations=1, applications=Applications.CAC_PIV
    )
    assert request.puk_or_default == DEFAULT_PUK
    store = generate_card(tmp_path / "card", request)
    puk = store.load_puk()
    assert puk is not None
    assert puk.reference.matches(DEFAULT_PUK.encode())
    assert (puk.max_tries, puk.tries_remaining) == (3, 3)
    assert store.load_profile().atr == CAC_ATR_T1
    assert CardRequest(certificates=1).puk_or_default is None
