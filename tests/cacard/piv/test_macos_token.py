"""What macOS's PIV token driver sends a card, replayed against a ``piv`` and a ``cac+piv`` card.

Sources:

- Apple's PIV token driver as Apple published it, the tokend macOS used before
  CryptoTokenKit's built-in PIV token (apple-oss-distributions/Tokend, directory PIV;
  PIVToken.cpp: ``PIVToken::probe``, ``identify``, ``populate``, ``getDataExists``,
  ``getDataCore``, ``processCertificateRecord``, ``exchangeAPDU``, ``pinStatus``; PIVCCC.cpp:
  ``PIVCCC::parse``). It SELECTs the PIV AID with its version (``A0 00 00 03 08 00 00 10 00 01
  00``, or the 7-byte ``A0 00 00 03 08 00 00``) and no Le; sends GET DATA with no Le and
  follows ``61xx`` with GET RESPONSE whose Le is SW2; names the token ``PIV-<hex>`` from the
  CCC's card identifier (tag ``F0``) and refuses a CCC with any tag outside ``F0``-``FD``,
  ``E3``, ``B4``, ``FE``; asks whether the CHUID, fingerprints, printed information and facial
  image exist with GET DATA and Le ``01`` (``6A82``: absent; ``61xx`` or data: present); reads
  the certificates of 9A, 9C, 9D and 9E, refusing a container with tags other than ``70``,
  ``71``, ``72``, ``FE`` and uncompressing when CertInfo has ``0x81`` set; and asks the PIN's
  state with VERIFY ``00 20 00 80 00`` (``63Cx``: x tries left).
- Apple Platform Deployment's smart card pages ("Intro to smart card integration",
  support.apple.com/guide/deployment/depd0b888248, and depc47f60521): macOS supports PIV cards
  natively through CryptoTokenKit; certificates are expected in 9A and 9D, optionally 9C.
- NIST SP 800-73-4 Part 1 (Appendix A) for what the Discovery Object, the Key History Object
  and the retired key management certificates (``5FC10D``-``5FC120``) hold, and Part 2
  (§3.1.2) for GET DATA of an absent object: ``6A82``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cacard.card import Card
from cacard.keys import Credential
from cacard.piv.ber import decode, decode_fields, decode_one, encode
from cacard.profile import Applications, CardProfile, new_card
from cacard.software import software_key
from cacard.store import CardStore
from cardfloor.iso7816.apdu import CommandAPDU, Response

from ..cards import CARD_ID, PIN, credential, pin_state
from ..certificates import issue

#: SELECT_PIV_APPLET_LONG and _SHORT of Apple's driver.
SELECT_LONG = bytes.fromhex("00 A4 04 00 0B A0 00 00 03 08 00 00 10 00 01 00")
SELECT_SHORT = bytes.fromhex("00 A4 04 00 07 A0 00 00 03 08 00 00")
#: VERIFY of the application PIN with P3 = 00: the PIN's state.
PIN_STATUS = bytes.fromhex("00 20 00 80 00")

CCC, CHUID = "5FC107", "5FC102"
FINGERPRINTS, PRINTED, FACIAL = "5FC103", "5FC109", "5FC108"
DISCOVERY, KEY_HISTORY = "7E", "5FC10C"
CERTIFICATES = {0x9A: "5FC105", 0x9C: "5FC10A", 0x9D: "5FC10B", 0x9E: "5FC101"}
RETIRED = [f"5FC1{n:02X}" for n in range(0x0D, 0x21)]
#: Tags Apple's CCC parser lets through; any other makes the card unusable.
CCC_TAGS = {*range(0xF0, 0xFE), 0xE3, 0xB4, 0xFE}
CERTIFICATE_TAGS = {0x70, 0x71, 0x72, 0xFE}
COMPRESSION_MASK = 0x81


@functools.cache
def _ec_credential(curve_name: str) -> Credential:
    curve: ec.EllipticCurve = ec.SECP256R1() if curve_name == "p256" else ec.SECP384R1()
    key = ec.generate_private_key(curve)
    return Credential(issue(key.public_key(), f"macos {curve_name}"), software_key(key), "ec")


def _profile(applications: Applications) -> CardProfile:
    if applications is Applications.PIV:
        # 9A P-256, 9C RSA, 9D P-384.
        credentials = (_ec_credential("p256"), credential(1), _ec_credential("p384"))
    else:
        credentials = (credential(0), credential(1), credential(2))
    return CardProfile(
        credentials, CARD_ID, atr=applications.default_atr, applications=applications
    )


def make_card(applications: Applications) -> Card:
    return new_card(_profile(applications), pin_state())


PROFILES = [Applications.PIV, Applications.CAC_PIV]


# -- Apple's exchange --------------------------------------------------------------------------


def exchange(card: Card, apdu: bytes) -> tuple[int, bytes]:
    """``PIVToken::exchangeAPDU``: the command, then GET RESPONSE with Le = SW2 while ``61xx``."""
    answer = Response.from_bytes(card.transmit(apdu))
    data = answer.data
    while answer.sw1 == 0x61:
        answer = Response.from_bytes(card.transmit(bytes((0x00, 0xC0, 0x00, 0x00, answer.sw2))))
        data += answer.data
    return answer.sw, data


def get_data_apdu(tag: str, limit: int | None = None) -> bytes:
    """``PIVToken::buildGetData``: no Le, or Le = ``limit``."""
    raw = bytes.fromhex(tag)
    apdu = bytes.fromhex("00CB3FFF") + bytes((len(raw) + 2, 0x5C, len(raw))) + raw
    return apdu if limit is None else apdu + bytes((limit,))


def get_data(card: Card, tag: str) -> tuple[int, bytes]:
    """``PIVToken::getDataCore``: SELECT, then GET DATA."""
    sw, _ = exchange(card, SELECT_LONG)
    assert sw == 0x9000, f"SELECT: {sw:04X}"
    return exchange(card, get_data_apdu(tag))


def exists(card: Card, tag: str) -> bool:
    """``PIVToken::getDataExists``: GET DATA with Le 01, no GET RESPONSE."""
    answer = Response.from_bytes(card.transmit(get_data_apdu(tag, 1)))
    assert answer.sw1 not in (0x6F, 0x67), f"{tag}: {answer.sw:04X}"
    if answer.sw == 0x6A82:
        return False
    return answer.sw == 0x6982 or answer.sw1 == 0x61 or bool(answer.data)


def token_uid(card: Card) -> str:
    """``PIVToken::probe``: ``PIV-`` and the CCC's card identifier (``PIVCCC::parse``)."""
    sw, data = get_data(card, CCC)
    assert sw == 0x9000, f"{sw:04X}"
    items = decode(decode_one(data, 0x53))
    unknown = [item.tag for item in items if item.tag not in CCC_TAGS]
    assert not unknown, f"tags Apple's CCC parser refuses: {unknown}"
    identifier = next(item.value for item in items if item.tag == 0xF0)
    return "PIV-" + identifier.hex().upper()


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("applications", PROFILES)
@pytest.mark.parametrize("select", [SELECT_LONG, SELECT_SHORT], ids=["long", "short"])
def test_identify_selects_the_piv_application_without_le(
    applications: Applications, select: bytes
) -> None:
    card = make_card(applications)
    sw, fci = exchange(card, select)
    assert sw == 0x9000
    decode_one(fci, 0x61)  # the application property template, through GET RESPONSE


@pytest.mark.parametrize("applications", PROFILES)
def test_probe_names_the_token_from_the_ccc_and_the_name_survives_power_cycles(
    applications: Applications,
) -> None:
    card = make_card(applications)
    uid = token_uid(card)
    assert len(uid) == len("PIV-") + 2 * 21
    card.power_off()
    card.power_on()
    assert token_uid(card) == uid


@pytest.mark.parametrize("applications", PROFILES)
def test_the_token_name_is_the_same_each_time_the_card_directory_is_opened(
    card_directories: dict[Applications, Path], applications: Applications
) -> None:
    directory = card_directories[applications]
    names = {token_uid(CardStore(directory).open_card()) for _ in range(2)}
    assert len(names) == 1


@pytest.mark.parametrize("applications", PROFILES)
def test_populate_finds_the_mandatory_objects_and_no_biometrics(
    applications: Applications,
) -> None:
    card = make_card(applications)
    exchange(card, SELECT_LONG)
    assert exists(card, CCC)
    assert exists(card, CHUID)
    # An emulated card carries no biometrics or printed information.
    for tag in (FINGERPRINTS, PRINTED, FACIAL):
        assert not exists(card, tag), tag

    sw, chuid = get_data(card, CHUID)
    assert sw == 0x9000
    assert len(decode_fields(decode_one(chuid, 0x53), where="CHUID")[0x34]) == 16


@pytest.mark.parametrize("applications", PROFILES)
def test_certificates_of_9a_9c_9d_as_the_driver_parses_them(applications: Applications) -> None:
    card = make_card(applications)
    profile = _profile(applications)
    for reference, held in zip((0x9A, 0x9C, 0x9D), profile.credentials, strict=True):
        sw, data = get_data(card, CERTIFICATES[reference])
        assert sw == 0x9000, f"{reference:02X}: {sw:04X}"
        assert data[0] == 0x53
        items = decode(decode_one(data, 0x53))
        assert {item.tag for item in items} <= CERTIFICATE_TAGS
        content = {item.tag: item.value for item in items}
        assert len(content[0x71]) == 1
        assert not content[0x71][0] & COMPRESSION_MASK
        certificate = x509.load_der_x509_certificate(content[0x70])
        assert certificate == held.certificate
    # No 9E key on these cards: the driver skips the slot.
    assert get_data(card, CERTIFICATES[0x9E])[0] == 0x6A82


@pytest.mark.parametrize("applications", PROFILES)
def test_discovery_key_history_and_no_retired_keys(applications: Applications) -> None:
    card = make_card(applications)
    sw, discovery = get_data(card, DISCOVERY)
    assert sw == 0x9000
    policy = decode_fields(decode_one(discovery, 0x7E), where="Discovery Object")[0x5F2F]
    assert policy[0] & 0x40  # the application PIN, the one the driver verifies (80)

    sw, history = get_data(card, KEY_HISTORY)
    assert sw == 0x9000
    counts = decode_fields(decode_one(history, 0x53), where="Key History")
    assert counts[0xC1] == counts[0xC2] == b"\x00"
    for tag in RETIRED:
        assert get_data(card, tag)[0] == 0x6A82, tag
    # The retired keys themselves are absent too.
    for reference in range(0x82, 0x96):
        data = encode([(0x7C, encode([(0x82, b""), (0x81, bytes(32))]))])
        answer = Response.from_bytes(
            card.transmit(CommandAPDU(0x00, 0x87, 0x11, reference, data, 256).to_bytes())
        )
        assert answer.sw == 0x6A88, f"{reference:02X}: {answer.sw:04X}"


@pytest.mark.parametrize("applications", PROFILES)
def test_pin_status_verify_then_sign(applications: Applications) -> None:
    card = make_card(applications)
    exchange(card, SELECT_LONG)
    assert exchange(card, PIN_STATUS)[0] == 0x63C3
    # Apple's driver lets 4 to 8 digits through; PIV PINs are 6 to 8, and a malformed one
    # costs no try.
    four_digits = bytes.fromhex("0020008008") + b"1234".ljust(8, b"\xff")
    assert exchange(card, four_digits)[0] == 0x6A80
    assert exchange(card, PIN_STATUS)[0] == 0x63C3
    wrong = bytes.fromhex("0020008008") + b"123456".ljust(8, b"\xff")
    assert exchange(card, wrong)[0] == 0x63C2
    assert exchange(card, PIN_STATUS)[0] == 0x63C2
    right = bytes.fromhex("0020008008") + PIN.encode().ljust(8, b"\xff")
    assert exchange(card, right)[0] == 0x9000
    assert exchange(card, PIN_STATUS)[0] == 0x9000

    if applications is Applications.PIV:
        # 9A is P-256 here: CryptoTokenKit sends the SHA-256 hash for an ECDSA signature.
        digest = hashlib.sha256(b"macos").digest()
        data = encode([(0x7C, encode([(0x82, b""), (0x81, digest)]))])
        command = CommandAPDU(0x00, 0x87, 0x11, 0x9A, data, 256).to_bytes()
        sw, answer = exchange(card, command)
        assert sw == 0x9000
        signature = decode_fields(decode_one(answer, 0x7C), where="response")[0x82]
        public = _profile(applications).credentials[0].certificate.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, b"macos", ec.ECDSA(hashes.SHA256()))
