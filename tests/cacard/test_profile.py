"""A card's contents become the applets of a CAC card, in libcacard's layout."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cacard.applets.containers import DataObjectId
from cacard.keys import Credential
from cacard.profile import CardProfile, ProfileError, cac_applets, card_id_from_certificate

from .cards import CARD_ID, credential
from .certificates import issue


def test_the_applets_of_a_three_certificate_card() -> None:
    applets = cac_applets(CardProfile(tuple(credential(i) for i in range(3)), CARD_ID))
    aids = {applet.aid.hex().upper() for applet in applets}
    assert {
        "A0000000790100",
        "A0000000790101",
        "A0000000790102",
        "A0000000790300",  # ACA
        "A000000116DB00",  # CCC
        "A00000007902FB",
        "A0000000790200",
        "A0000000790201",
        "A00000007902FE",
        "A00000007902FD",
        "A0000000791201",
        "A0000000791202",
        "A00000007902F0",
        "A00000007902F1",
        "A00000007902F2",
        "A0000001163000",
        "A0000000030000",  # GlobalPlatform
        "A0000003974349445F0100",  # Microsoft
    } == aids
    assert "A0000000790103" not in aids


@pytest.mark.parametrize("count", [0, 11])
def test_a_card_holds_1_to_10_certificates(count: int) -> None:
    with pytest.raises(ProfileError) as caught:
        CardProfile(tuple(credential(i % 3) for i in range(count)), CARD_ID)
    assert caught.value.field == "credentials"


def test_a_key_must_belong_to_its_certificate() -> None:
    mixed = Credential(credential(0).certificate, credential(1).key)
    with pytest.raises(ProfileError) as caught:
        CardProfile((credential(0), mixed), CARD_ID)
    assert caught.value.field == "credentials[1].key"


def test_non_rsa_certificates_are_refused() -> None:
    ec_cert = issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "ec")
    with pytest.raises(ProfileError, match="RSA"):
        CardProfile((Credential(ec_cert, credential(0).key),), CARD_ID)


def test_card_id_and_data_objects_are_checked() -> None:
    with pytest.raises(ProfileError) as caught:
        CardProfile((credential(0),), b"short")
    assert caught.value.field == "card_id"
    with pytest.raises(ProfileError) as caught:
        CardProfile((credential(0),), CARD_ID, data_objects={DataObjectId.PERSONNEL: b"\x01"})
    assert caught.value.field == "data_objects[0201]"


def test_the_same_first_certificate_gives_the_same_card_id() -> None:
    first = card_id_from_certificate(credential(0).certificate)
    assert len(first) == 14
    assert first == card_id_from_certificate(credential(0).certificate)
    assert first != card_id_from_certificate(credential(1).certificate)


def test_the_atr_is_checked() -> None:
    with pytest.raises(ProfileError) as caught:
        CardProfile((credential(0),), CARD_ID, atr=bytes.fromhex("3B02AA"))
    assert caught.value.field == "atr"
