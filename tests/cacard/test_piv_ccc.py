"""The PIV application's Card Capability Container: on a ``cac+piv`` card its applications
CardURL points at the first CAC PKI applet, as a dual CAC/PIV card's does (OpenSC then types the
card a dual CAC/PIV card: issue #17's round trips); on a ``piv`` card it stays empty."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cacard import CardRequest, generate_card
from cacard.applets.ccc import pki_card_url
from cacard.card import Card
from cacard.piv.ber import decode, decode_fields, decode_one
from cacard.piv.objects import PIV_AID, CardCapabilityContainer, ObjectTag
from cacard.profile import (
    PIV_CCC_PREFIX,
    Applications,
    CardProfile,
    new_card,
    piv_applet,
    piv_capability_container,
)
from cacard.store import CardStore, stable_piv_objects
from cardfloor.iso7816.apdu import CommandAPDU, Response

from .cards import CARD_ID, credential, pin_state

FIXTURES = Path(__file__).parent / "fixtures"
CCC_TAG = ObjectTag.CARD_CAPABILITY_CONTAINER.to_bytes(3, "big")
#: What OpenSC's PIV driver takes for a CAC PKI CardURL (OpenSC, card-piv.c, piv_parse_ccc).
CAC_PKI_URL_START = bytes.fromhex("A000000079") + b"\x04"


def transmit(card: Card, command: CommandAPDU) -> Response:
    """Send ``command``, following ``61xx`` with GET RESPONSE."""
    answer = Response.from_bytes(card.transmit(command.to_bytes()))
    data = answer.data
    while answer.sw1 == 0x61:
        answer = Response.from_bytes(card.transmit(bytes((0, 0xC0, 0, 0, answer.sw2))))
        data += answer.data
    return Response(answer.sw, data)


def read_ccc(card: Card) -> bytes:
    """SELECT PIV, then GET DATA of the CCC: the object's content (inside tag 53)."""
    assert transmit(card, CommandAPDU(0x00, 0xA4, 0x04, 0x00, PIV_AID, 256)).sw == 0x9000
    answer = transmit(card, CommandAPDU(0x00, 0xCB, 0x3F, 0xFF, b"\x5c\x03" + CCC_TAG, 256))
    assert answer.sw == 0x9000
    return decode_one(answer.data, 0x53)


def profile(applications: Applications) -> CardProfile:
    return CardProfile((credential(0),), CARD_ID, applications=applications)


@pytest.mark.parametrize("applications", [Applications.CAC_PIV, Applications.PIV])
def test_the_ccc_names_the_card_and_a_cac_pki_applet_only_on_a_card_with_cac(
    applications: Applications,
) -> None:
    content = read_ccc(new_card(profile(applications), pin_state()))
    fields = decode_fields(content, where="CCC")  # one item per tag, F3 included
    assert fields[0xF0] == PIV_CCC_PREFIX + CARD_ID
    assert fields[0xF5] == b"\x10"  # the PIV data model
    url = fields[0xF3]
    if applications is Applications.CAC_PIV:
        assert len(url) == 16
        assert url.startswith(CAC_PKI_URL_START)
        assert url == pki_card_url(0).encode()
    else:
        assert url == b""


def test_the_cac_piv_ccc_differs_from_the_applet_s_own_only_in_its_card_url() -> None:
    plain = CardCapabilityContainer(PIV_CCC_PREFIX + CARD_ID).to_bytes()
    assert piv_capability_container(CARD_ID, Applications.PIV) == plain
    dual = piv_capability_container(CARD_ID, Applications.CAC_PIV)
    differing = [
        (a.tag, b.tag)
        for a, b in zip(decode(plain), decode(dual), strict=True)
        if a.value != b.value or a.tag != b.tag
    ]
    assert differing == [(0xF3, 0xF3)]


@pytest.mark.parametrize("applications", [Applications.CAC_PIV, Applications.PIV])
def test_a_card_directory_serves_the_ccc_of_its_applications_at_every_start(
    tmp_path: Path, applications: Applications
) -> None:
    directory = tmp_path / "card"
    generate_card(
        directory, CardRequest(key_size=1024, pin_iterations=1, applications=applications)
    )
    store = CardStore(directory)
    card_id = store.load_profile().card_id
    first, second = read_ccc(store.open_card()), read_ccc(store.open_card())
    assert first == second
    assert first == stable_piv_objects(card_id, applications)[ObjectTag.CARD_CAPABILITY_CONTAINER]
    assert first == piv_capability_container(card_id, applications)


def test_an_older_cac_piv_directory_gets_the_new_ccc_as_nothing_of_it_is_kept(
    tmp_path: Path,
) -> None:
    """card.json never held the CCC: a directory made before it names the CAC applet gets it
    at its next start, with the same card identifier (hosts name tokens after the CHUID)."""
    directory = tmp_path / "card"
    shutil.copytree(FIXTURES / "card-v2-piv", directory)
    store = CardStore(directory)
    fields = decode_fields(read_ccc(store.open_card()), where="CCC")
    assert fields[0xF0] == PIV_CCC_PREFIX + store.load_profile().card_id
    assert fields[0xF3].startswith(CAC_PKI_URL_START)


def test_a_ccc_the_card_kept_from_put_data_still_wins() -> None:
    written = CardCapabilityContainer(PIV_CCC_PREFIX + bytes(14)).to_bytes()
    applet_profile = profile(Applications.CAC_PIV)
    applet = piv_applet(applet_profile, objects={ObjectTag.CARD_CAPABILITY_CONTAINER: written})
    card = new_card(applet_profile, pin_state(), piv=applet)
    assert read_ccc(card) == written
