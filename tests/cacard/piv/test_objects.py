"""PIV data objects as a client reads them: GET DATA contents, tags, SELECT's answer."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacard.piv import (
    CHUID,
    PIV_AID,
    Algorithm,
    ApplicationPropertyTemplate,
    CardCapabilityContainer,
    CertificateObject,
    CertInfo,
    DiscoveryObject,
    KeyHistory,
    KeyReference,
    ObjectTag,
    PinUsagePolicy,
    PIVFormatError,
    PrintedInformation,
    get_data_response,
)
from cacard.piv.ber import decode

FASC_N = bytes.fromhex("D4 32 10 D8 21 0C 2C A0 83 68 58 21 08 42 10 84 21 C8 42 10 C3 EB 00 00 00")
GUID = bytes(range(16))


def test_select_answers_the_application_property_template() -> None:
    template = ApplicationPropertyTemplate(label="vscard", algorithms=(Algorithm.TDES,))
    assert template.to_bytes() == bytes.fromhex(
        "61 21"
        " 4F 06 00 00 10 00 01 00"
        " 79 07 4F 05 A0 00 00 03 08"
        " 50 06" + b"vscard".hex() + " AC 06 80 01 03 06 01 00"
    )


def test_the_property_template_lists_the_card_algorithms_back() -> None:
    template = ApplicationPropertyTemplate()
    parsed = ApplicationPropertyTemplate.from_bytes(template.to_bytes())
    assert parsed == template
    assert Algorithm.ECC_P384 in parsed.algorithms


def test_the_aid_is_rid_then_pix() -> None:
    assert PIV_AID.hex(" ").upper() == "A0 00 00 03 08 00 00 10 00 01 00"


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (ObjectTag.CARD_CAPABILITY_CONTAINER, "5FC107"),
        (ObjectTag.CHUID, "5FC102"),
        (ObjectTag.PIV_AUTHENTICATION_CERTIFICATE, "5FC105"),
        (ObjectTag.DIGITAL_SIGNATURE_CERTIFICATE, "5FC10A"),
        (ObjectTag.KEY_MANAGEMENT_CERTIFICATE, "5FC10B"),
        (ObjectTag.CARD_AUTHENTICATION_CERTIFICATE, "5FC101"),
        (ObjectTag.SECURITY_OBJECT, "5FC106"),
        (ObjectTag.PRINTED_INFORMATION, "5FC109"),
        (ObjectTag.KEY_HISTORY, "5FC10C"),
        (ObjectTag.DISCOVERY, "7E"),
    ],
)
def test_get_data_names_each_object_by_its_tag(tag: ObjectTag, value: str) -> None:
    assert tag.tag_bytes == bytes.fromhex(value)
    command_data = bytes((0x5C, len(tag.tag_bytes))) + tag.tag_bytes
    assert ObjectTag.from_tag_list(command_data) is tag


@pytest.mark.parametrize("data", ["5C 03 5F C1 7F", "5C 00", "53 01 7E", "5C 01"])
def test_an_unknown_or_garbled_tag_list_is_a_typed_error(data: str) -> None:
    with pytest.raises(PIVFormatError):
        ObjectTag.from_tag_list(bytes.fromhex(data))


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        (KeyReference.PIV_AUTHENTICATION, ObjectTag.PIV_AUTHENTICATION_CERTIFICATE),
        (KeyReference.DIGITAL_SIGNATURE, ObjectTag.DIGITAL_SIGNATURE_CERTIFICATE),
        (KeyReference.KEY_MANAGEMENT, ObjectTag.KEY_MANAGEMENT_CERTIFICATE),
        (KeyReference.CARD_AUTHENTICATION, ObjectTag.CARD_AUTHENTICATION_CERTIFICATE),
        (KeyReference.RETIRED_KEY_MANAGEMENT_1, ObjectTag.RETIRED_KEY_MANAGEMENT_CERTIFICATE_1),
        (KeyReference.RETIRED_KEY_MANAGEMENT_20, ObjectTag.RETIRED_KEY_MANAGEMENT_CERTIFICATE_20),
    ],
)
def test_each_key_has_its_certificate_object(key: KeyReference, tag: ObjectTag) -> None:
    assert key.certificate_object is tag


def test_retired_keys_82_to_95_map_onto_5fc10d_to_5fc120_in_order() -> None:
    retired = [KeyReference(reference) for reference in range(0x82, 0x96)]
    objects = [key.certificate_object for key in retired]
    assert objects == [ObjectTag(tag) for tag in range(0x5FC10D, 0x5FC121)]
    assert KeyReference.CARD_MANAGEMENT.certificate_object is None


def test_algorithm_identifiers_are_sp_800_78s() -> None:
    assert [int(a) for a in (Algorithm.TDES, Algorithm.AES_128, Algorithm.AES_192)] == [3, 8, 10]
    assert [int(a) for a in (Algorithm.AES_256, Algorithm.RSA_1024, Algorithm.RSA_2048)] == [
        0x0C,
        0x06,
        0x07,
    ]
    assert (Algorithm.ECC_P256, Algorithm.ECC_P384) == (0x11, 0x14)
    assert (Algorithm.RSA_3072, Algorithm.RSA_4096) == (0x05, 0x16)


def test_get_data_wraps_content_in_53_except_the_discovery_object() -> None:
    assert get_data_response(ObjectTag.CHUID, b"\xfe\x00") == bytes.fromhex("53 02 FE 00")
    discovery = DiscoveryObject().to_bytes()
    assert get_data_response(ObjectTag.DISCOVERY, discovery) == discovery


def test_the_chuid_carries_fasc_n_guid_expiry_and_an_empty_signature() -> None:
    chuid = CHUID(FASC_N, GUID, datetime.date(2030, 12, 31))
    data = chuid.to_bytes()
    assert data.startswith(b"\x30\x19" + FASC_N + b"\x34\x10" + GUID)
    assert data.endswith(b"\x35\x0820301231\x3e\x00\xfe\x00")
    assert CHUID.from_bytes(data) == chuid


def test_a_chuid_with_signature_and_uuid_round_trips() -> None:
    chuid = CHUID(FASC_N, GUID, datetime.date(2031, 1, 2), bytes(300), cardholder_uuid=GUID)
    assert CHUID.from_bytes(chuid.to_bytes()) == chuid


def test_a_chuid_without_guid_names_the_missing_tag() -> None:
    data = bytes.fromhex("30 19") + FASC_N + b"\x35\x0820301231\xfe\x00"
    with pytest.raises(PIVFormatError) as caught:
        CHUID.from_bytes(data)
    assert (caught.value.field, caught.value.value) == ("tag", 0x34)


def test_a_chuid_with_a_bad_date_names_tag_35() -> None:
    data = (
        CHUID(FASC_N, GUID, datetime.date(2030, 1, 1)).to_bytes().replace(b"20300101", b"2030XX01")
    )
    with pytest.raises(PIVFormatError) as caught:
        CHUID.from_bytes(data)
    assert caught.value.field == "35"


def test_a_short_fasc_n_is_refused() -> None:
    with pytest.raises(PIVFormatError) as caught:
        CHUID(FASC_N[:-1], GUID, datetime.date(2030, 1, 1))
    assert caught.value.field == "FASC-N"


def test_the_ccc_carries_its_card_identifier() -> None:
    ccc = CardCapabilityContainer(bytes.fromhex("A000000116") + b"\xff\x02" + bytes(range(14)))
    data = ccc.to_bytes()
    assert data.startswith(b"\xf0\x15" + ccc.card_identifier + b"\xf1\x01\x21\xf2\x01\x21")
    assert data.endswith(b"\xfe\x00")
    assert CardCapabilityContainer.from_bytes(data) == ccc


def test_the_discovery_object_says_application_pin_only() -> None:
    discovery = DiscoveryObject()
    assert discovery.to_bytes() == bytes.fromhex("7E 12 4F 0B") + PIV_AID + bytes.fromhex(
        "5F 2F 02 40 00"
    )
    assert DiscoveryObject.from_bytes(discovery.to_bytes()) == discovery
    both = DiscoveryObject(PinUsagePolicy.APPLICATION_PIN | PinUsagePolicy.GLOBAL_PIN, 0x10)
    assert DiscoveryObject.from_bytes(both.to_bytes()) == both


def test_key_history_counts_and_url_round_trip() -> None:
    history = KeyHistory(2, 1, b"http://example.test/certs")
    assert KeyHistory.from_bytes(history.to_bytes()) == history
    assert KeyHistory().to_bytes() == bytes.fromhex("C1 01 00 C2 01 00 FE 00")


@pytest.mark.parametrize(
    ("on", "off", "url"), [(21, 0, None), (0, 1, None), (1, 0, b"http://x"), (-1, 0, None)]
)
def test_inconsistent_key_history_is_refused(on: int, off: int, url: bytes | None) -> None:
    with pytest.raises(PIVFormatError):
        KeyHistory(on, off, url)


def test_printed_information_round_trips_with_its_month_name_date() -> None:
    printed = PrintedInformation(
        name="Test User",
        employee_affiliation="Contractor",
        expiration=datetime.date(2030, 12, 31),
        agency_card_serial_number="0001",
        issuer_identification="vscard",
        organization_affiliation_1="QA",
    )
    data = printed.to_bytes()
    assert b"\x04\x092030DEC31" in data
    assert [item.tag for item in decode(data)] == [0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0xFE]
    assert PrintedInformation.from_bytes(data) == printed


def test_printed_information_refuses_a_name_too_long_for_the_card() -> None:
    with pytest.raises(PIVFormatError) as caught:
        PrintedInformation("x" * 126, "", datetime.date(2030, 1, 1), "", "")
    assert caught.value.field == "01"


def test_a_certificate_object_holds_der_certinfo_and_edc() -> None:
    der = b"\x30\x82\x01\x2c" + bytes(300)
    data = CertificateObject(der).to_bytes()
    assert data == b"\x70\x82\x01\x30" + der + bytes.fromhex("71 01 00 FE 00")
    assert CertificateObject.from_bytes(data) == CertificateObject(der, CertInfo.UNCOMPRESSED)


def test_an_unknown_certinfo_is_a_typed_error() -> None:
    with pytest.raises(PIVFormatError) as caught:
        CertificateObject.from_bytes(bytes.fromhex("70 01 30 71 01 07 FE 00"))
    assert caught.value.field == "71"


@given(st.binary(max_size=70_000), st.sampled_from(CertInfo))
def test_any_certificate_bytes_round_trip(certificate: bytes, info: CertInfo) -> None:
    obj = CertificateObject(certificate, info)
    assert CertificateObject.from_bytes(obj.to_bytes()) == obj


PARSERS: tuple[Callable[[bytes], object], ...] = (
    CHUID.from_bytes,
    CardCapabilityContainer.from_bytes,
    DiscoveryObject.from_bytes,
    KeyHistory.from_bytes,
    PrintedInformation.from_bytes,
    CertificateObject.from_bytes,
    ApplicationPropertyTemplate.from_bytes,
    ObjectTag.from_tag_list,
)


@given(st.sampled_from(PARSERS), st.binary(max_size=64))
def test_garbage_is_refused_only_with_the_typed_error(
    parse: Callable[[bytes], object], data: bytes
) -> None:
    with contextlib.suppress(PIVFormatError):
        parse(data)
