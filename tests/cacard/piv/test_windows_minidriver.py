"""What Windows sends a PIV card when it is inserted, replayed against a ``cac+piv`` and a ``piv``
card built from profiles.

Sources (Microsoft's public documentation, windows-driver-docs):

- "Discovery Process" (learn.microsoft.com/windows-hardware/drivers/smartcard/discovery-process):
  Plug and Play first SELECTs the SC PNP AID and sends GET DATA ``7F68`` (a DER ``CardID``:
  version 0, vendor "MSFT", a list of 16-byte GUIDs), then SELECTs MF and EF.ATR and reads it,
  then SELECTs the PIV AID; the framework ignores the AID's last two bytes (the version), so
  a card must answer SELECT of ``A0 00 00 03 08 00 00 10 00``. The commands it uses are
  SELECT, GET DATA and GET RESPONSE.
- "Windows Inbox Smart Card Minidriver"
  (learn.microsoft.com/windows-hardware/drivers/smartcard/windows-inbox-smart-card-minidriver):
  on CardAcquireContext the class minidriver SELECTs the PIV AID and, when it succeeds, treats
  the card as PIV.
- "Windows Smart Card Minidriver Specification" v7.07, Appendix C ("Overview of the Windows
  Inbox Smart Card Minidriver").

What the minidriver then reads to build its card and container map is the PIV data model of
NIST SP 800-73-4 Part 1 (Appendix A), read with Part 2's GET DATA: the CHUID (hosts derive the
card's identity from its GUID), the CCC, the Discovery Object (PIN usage policy), the Key
History Object (retired keys) and the certificate objects of keys 9A, 9C, 9D and 9E; VERIFY
``80`` without data asks the PIN's state. Each response is checked against what those
documents require, whichever form a host reads it in: short Le ``00`` with ``61xx`` and
GET RESPONSE (T=0), or one extended-Le response.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cacard.card import Card
from cacard.keys import Credential
from cacard.piv.applet import SlotKey
from cacard.piv.ber import decode, decode_fields, decode_one, encode
from cacard.piv.objects import KeyReference
from cacard.profile import Applications, CardProfile, new_card, piv_applet
from cacard.software import software_key
from cacard.store import CardStore
from cardfloor.iso7816.apdu import CommandAPDU, Response

from ..cards import CARD_ID, PIN, credential, pin_state
from ..certificates import issue

#: The PIV AID as Windows sends it: without the version bytes ("Discovery Process").
PIV_AID_WINDOWS = bytes.fromhex("A0 00 00 03 08 00 00 10 00")
SC_PNP_AID = bytes.fromhex("A0 00 00 03 97 43 49 44 5F 01 00")
MF, EF_ATR = bytes.fromhex("3F00"), bytes.fromhex("2F01")

CHUID, CCC, KEY_HISTORY = "5FC102", "5FC107", "5FC10C"
DISCOVERY = "7E"
#: Certificate object of each key (SP 800-73-4 Part 1 Table 3).
CERTIFICATES = {0x9A: "5FC105", 0x9C: "5FC10A", 0x9D: "5FC10B", 0x9E: "5FC101"}
RETIRED = [f"5FC1{n:02X}" for n in range(0x0D, 0x21)]


# -- the cards ----------------------------------------------------------------------------------


@functools.cache
def _ec_credential(curve_name: str) -> Credential:
    curve: ec.EllipticCurve = ec.SECP256R1() if curve_name == "p256" else ec.SECP384R1()
    key = ec.generate_private_key(curve)
    return Credential(issue(key.public_key(), f"windows {curve_name}"), software_key(key), "ec")


@functools.cache
def _card_authentication() -> SlotKey:
    key = ec.generate_private_key(ec.SECP256R1())
    der = issue(key.public_key(), "windows 9E").public_bytes(serialization.Encoding.DER)
    return SlotKey(software_key(key), der)


def _profile(applications: Applications) -> CardProfile:
    if applications is Applications.PIV:
        credentials = (credential(0), _ec_credential("p256"), _ec_credential("p384"))
    else:
        credentials = (credential(0), credential(1), credential(2))
    return CardProfile(
        credentials, CARD_ID, atr=applications.default_atr, applications=applications
    )


def make_card(applications: Applications) -> Card:
    """A card of ``applications`` with 9A-9D from its credentials and a 9E key of its own."""
    profile = _profile(applications)
    applet = piv_applet(profile, keys={KeyReference.CARD_AUTHENTICATION: _card_authentication()})
    return new_card(profile, pin_state(), piv=applet)


def expected_certificates(applications: Applications) -> dict[int, bytes]:
    """The DER each key's certificate object must carry."""
    profile = _profile(applications)
    der = {
        reference: held.certificate.public_bytes(serialization.Encoding.DER)
        for reference, held in zip((0x9A, 0x9C, 0x9D), profile.credentials, strict=True)
    }
    card_authentication = _card_authentication().certificate
    assert card_authentication is not None
    der[0x9E] = card_authentication
    return der


PROFILES = [Applications.CAC_PIV, Applications.PIV]


# -- the host's side ---------------------------------------------------------------------------


def send(card: Card, command: CommandAPDU) -> Response:
    return Response.from_bytes(card.transmit(command.to_bytes()))


def t0(card: Card, command: CommandAPDU) -> Response:
    """One command as a T=0 host sends it: follows ``61xx`` with GET RESPONSE (Le = SW2)."""
    answer = send(card, command)
    data = answer.data
    while answer.sw1 == 0x61:
        assert not answer.data or len(answer.data) <= max(command.ne, 256)
        answer = send(card, CommandAPDU(0x00, 0xC0, 0x00, 0x00, le=answer.sw2 or 256))
        data += answer.data
    return Response(answer.sw, data)


def select(card: Card, aid: bytes) -> Response:
    return t0(card, CommandAPDU(0x00, 0xA4, 0x04, 0x00, aid, 256))


def get_data_command(tag: str, *, extended: bool = False) -> CommandAPDU:
    raw = bytes.fromhex(tag)
    data = bytes((0x5C, len(raw))) + raw
    return CommandAPDU(0x00, 0xCB, 0x3F, 0xFF, data, 65536 if extended else 256, extended)


def get_data(card: Card, tag: str) -> Response:
    """GET DATA with Le ``00``, then GET RESPONSE for the rest."""
    return t0(card, get_data_command(tag))


def fields(content: bytes, where: str) -> dict[int, bytes]:
    return decode_fields(content, where=where)


def tags(content: bytes) -> list[int]:
    return [item.tag for item in decode(content)]


def hexsw(response: Response) -> str:
    return f"{response.sw:04X}"


# -- Plug and Play and the minidriver's own discovery ------------------------------------------


@pytest.mark.parametrize("applications", PROFILES)
def test_plug_and_play_discovery_finds_the_piv_application(applications: Applications) -> None:
    card = make_card(applications)
    pnp = select(card, SC_PNP_AID)
    card_id = t0(card, CommandAPDU(0x00, 0xCA, 0x7F, 0x68, le=256))
    if applications.cac:
        # The CAC side carries Microsoft's PnP applet: CardID is a DER SEQUENCE.
        assert hexsw(pnp) == "9000"
        assert hexsw(card_id) == "9000"
        sequence = decode_one(card_id.data, 0x30)
        items = decode(sequence)
        assert [item.tag for item in items] == [0x02, 0x16, 0x30]
        assert items[0].value == b"\x00"  # v1
        assert items[1].value == b"MSFT"
        guids = decode(items[2].value)
        assert guids
        assert all(g.tag == 0x04 and len(g.value) == 16 for g in guids)
    else:
        # No PnP applet: SELECT fails with "not found" and GET DATA with an error, not 6F00.
        assert hexsw(pnp) == "6A82"
        assert card_id.sw not in (0x9000, 0x6F00)
        assert card_id.sw1 != 0x61
    # MF / EF.ATR: this card has no file system; the answers are errors, never 6F00.
    for command in (
        CommandAPDU(0x00, 0xA4, 0x00, 0x00, MF),
        CommandAPDU(0x00, 0xA4, 0x02, 0x00, EF_ATR),
        CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=256),
    ):
        answer = send(card, command)
        assert answer.sw not in (0x9000, 0x6F00), f"{command.to_bytes().hex()}: {hexsw(answer)}"
    answer = select(card, PIV_AID_WINDOWS)
    assert hexsw(answer) == "9000"


@pytest.mark.parametrize("applications", PROFILES)
def test_select_by_the_versionless_aid_answers_the_property_template(
    applications: Applications,
) -> None:
    card = make_card(applications)
    answer = select(card, PIV_AID_WINDOWS)
    assert hexsw(answer) == "9000"
    template = fields(decode_one(answer.data, 0x61), "property template")
    # SP 800-73-4 Part 2 Table 3: 4F the PIX (with version), 79 { 4F RID }.
    assert template[0x4F] == bytes.fromhex("0000100001 00")
    assert decode_one(template[0x79], 0x4F) == bytes.fromhex("A000000308")
    algorithms = [item.value for item in decode(template[0xAC]) if item.tag == 0x80]
    for needed in (b"\x06", b"\x07", b"\x11", b"\x14"):  # RSA-1024/2048, P-256, P-384
        assert needed in algorithms


# -- the objects the minidriver reads ----------------------------------------------------------


@pytest.mark.parametrize("applications", PROFILES)
def test_chuid_has_a_16_byte_guid(applications: Applications) -> None:
    card = make_card(applications)
    select(card, PIV_AID_WINDOWS)
    answer = get_data(card, CHUID)
    assert hexsw(answer) == "9000"
    chuid = fields(decode_one(answer.data, 0x53), "CHUID")
    assert len(chuid[0x30]) == 25  # FASC-N
    guid = chuid[0x34]
    assert len(guid) == 16
    assert guid != bytes(16)
    assert len(chuid[0x35]) == 8
    assert chuid[0x35].isdigit()
    assert 0x3E in chuid  # issuer signature (empty on an emulated card)
    assert tags(decode_one(answer.data, 0x53))[-1] == 0xFE


@pytest.mark.parametrize("applications", PROFILES)
def test_chuid_guid_is_the_same_across_power_cycles_and_resets(applications: Applications) -> None:
    card = make_card(applications)
    select(card, PIV_AID_WINDOWS)
    first = get_data(card, CHUID).data
    card.power_off()
    card.power_on()
    select(card, PIV_AID_WINDOWS)
    assert get_data(card, CHUID).data == first
    card.power_on()  # a warm reset
    select(card, PIV_AID_WINDOWS)
    assert get_data(card, CHUID).data == first


@pytest.mark.parametrize("applications", PROFILES)
def test_chuid_and_ccc_are_the_same_each_time_the_card_directory_is_opened(
    card_directories: dict[Applications, Path], applications: Applications
) -> None:
    seen = []
    for _ in range(2):
        card = CardStore(card_directories[applications]).open_card()
        select(card, PIV_AID_WINDOWS)
        seen.append((get_data(card, CHUID).data, get_data(card, CCC).data))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("applications", PROFILES)
def test_ccc_discovery_and_key_history(applications: Applications) -> None:
    card = make_card(applications)
    select(card, PIV_AID_WINDOWS)

    ccc = get_data(card, CCC)
    assert hexsw(ccc) == "9000"
    content = fields(decode_one(ccc.data, 0x53), "CCC")
    assert len(content[0xF0]) == 21  # card identifier
    assert content[0xF5] == b"\x10"  # the PIV data model

    discovery = get_data(card, DISCOVERY)
    assert hexsw(discovery) == "9000"
    policy = fields(decode_one(discovery.data, 0x7E), "Discovery Object")
    assert policy[0x4F].startswith(PIV_AID_WINDOWS)
    usage = policy[0x5F2F]
    assert len(usage) == 2
    assert usage[0] & 0x40  # the PIV application PIN exists
    # The card's PIN also satisfies the PIV rules; the application PIN stays primary.
    assert usage[1] in (0x00, 0x10)

    history = get_data(card, KEY_HISTORY)
    assert hexsw(history) == "9000"
    counts = fields(decode_one(history.data, 0x53), "Key History")
    on_card, off_card = counts[0xC1], counts[0xC2]
    assert len(on_card) == len(off_card) == 1
    assert on_card[0] + off_card[0] <= 20
    # No retired key is held, so none of their certificate objects exists.
    for tag in RETIRED[on_card[0] :]:
        assert hexsw(get_data(card, tag)) == "6A82", tag


@pytest.mark.parametrize("applications", PROFILES)
@pytest.mark.parametrize("reference", sorted(CERTIFICATES))
def test_certificate_objects_parse_as_x509_in_either_response_form(
    applications: Applications, reference: int
) -> None:
    card = make_card(applications)
    select(card, PIV_AID_WINDOWS)
    tag = CERTIFICATES[reference]
    short = send(card, get_data_command(tag))
    # A certificate is longer than 256 bytes: the first short answer is 61xx alone.
    assert short.sw1 == 0x61, hexsw(short)
    assert not short.data
    via_get_response = get_data(card, tag)
    extended = send(card, get_data_command(tag, extended=True))
    assert hexsw(via_get_response) == hexsw(extended) == "9000"
    assert via_get_response.data == extended.data

    container = decode_one(extended.data, 0x53)
    assert tags(container) == [0x70, 0x71, 0xFE]
    content = fields(container, "certificate object")
    assert content[0x71] == b"\x00"  # not compressed
    assert content[0xFE] == b""
    certificate = x509.load_der_x509_certificate(content[0x70])
    assert content[0x70] == expected_certificates(applications)[reference]
    assert certificate.public_key() is not None


# -- PIN state and a signature, as the minidriver's CardAuthenticatePin and CardSignData do ------


@pytest.mark.parametrize("applications", PROFILES)
def test_pin_state_verify_and_a_9a_signature(applications: Applications) -> None:
    card = make_card(applications)
    select(card, PIV_AID_WINDOWS)
    status_query = CommandAPDU(0x00, 0x20, 0x00, 0x80)
    assert hexsw(send(card, status_query)) == "63C3"
    pin = PIN.encode().ljust(8, b"\xff")
    assert hexsw(send(card, CommandAPDU(0x00, 0x20, 0x00, 0x80, pin))) == "9000"
    assert hexsw(send(card, status_query)) == "9000"

    # 9A holds an RSA-1024 key on both cards: a raw PKCS#1 v1.5 block, as the minidriver pads.
    certificate = x509.load_der_x509_certificate(expected_certificates(applications)[0x9A])
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    digest_info = (
        bytes.fromhex("3031300d060960864801650304020105000420")
        + hashlib.sha256(b"windows").digest()
    )
    size = public.key_size // 8
    block = b"\x00\x01" + b"\xff" * (size - 3 - len(digest_info)) + b"\x00" + digest_info
    data = encode([(0x7C, encode([(0x82, b""), (0x81, block)]))])
    answer = t0(card, CommandAPDU(0x00, 0x87, 0x06, 0x9A, data, 256))
    assert hexsw(answer) == "9000"
    signature = fields(decode_one(answer.data, 0x7C), "response")[0x82]
    public.verify(signature, b"windows", padding.PKCS1v15(), hashes.SHA256())
