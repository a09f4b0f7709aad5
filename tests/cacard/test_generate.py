"""``cacard new``: a CA and certificates for the three CAC roles, with keys, on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from cacard.applets.containers import DataObjectId
from cacard.atr import CAC_ATR_T1
from cacard.generate import CardRequest, generate_card, person_instance
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
