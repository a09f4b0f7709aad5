"""The card's ISO/IEC 7816-4 layer: ATR, power, SELECT, logical channels, response chaining,
class checks, GET CHALLENGE, and a transmit that answers everything without raising."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacard.applets.applet import Applet, CardServices, Selection
from cacard.card import CAC_ATR, Card
from cacard.pin import PinState
from cardfloor.iso7816.apdu import Response, is_valid_status
from tests.logs import capture_logs

from .cards import PIN_HEX, hexsw, make_card, pin_state, send

CCC_AID = "A0 00 00 01 16 DB 00"
PKI0_AID = "A0 00 00 00 79 01 00"
SELECT_CCC = "00 A4 04 00 07 " + CCC_AID
READ_T_HEADER = "80 52 00 00 02 01 02"


def test_the_default_atr_is_libcacards_cac_atr() -> None:
    card = make_card()
    assert card.atr == bytes.fromhex("3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34")
    assert card.power_on() == CAC_ATR
    assert card.reset() == CAC_ATR


def test_after_reset_no_applet_is_selected() -> None:
    card = make_card()
    send(card, SELECT_CCC)
    assert card.selected() is not None
    card.reset()
    assert card.selected() is None
    assert hexsw(send(card, READ_T_HEADER)) == "6D00"  # the ISO layer knows no READ BUFFER


def test_an_apdu_to_an_unpowered_card_powers_it() -> None:
    card = make_card()
    card.power_off()
    assert not card.powered
    assert hexsw(send(card, SELECT_CCC)) == "610D"
    assert card.powered


def test_select_returns_the_fci_through_get_response() -> None:
    card = make_card()
    assert hexsw(send(card, SELECT_CCC)) == "610D"  # sent as case 3, as T=0 hosts do
    fci = send(card, "00 C0 00 00 0D")
    assert fci.data == bytes.fromhex("6F 0B 84 07" + CCC_AID + "A5 00")
    assert hexsw(fci) == "9000"
    assert send(card, SELECT_CCC + " 00").data == fci.data  # case 4 with Le: straight away


def test_under_t1_a_command_without_le_gets_its_data_at_once() -> None:
    # yubico-piv-tool's SELECT has no Le and wants 9000 (it runs T=1 only).
    card = make_card()
    card.protocol = 1
    answer = send(card, SELECT_CCC)
    assert (answer.data, hexsw(answer)) == (
        bytes.fromhex("6F 0B 84 07" + CCC_AID + "A5 00"),
        "9000",
    )
    # A present Le still bounds the answer, and without one a short command takes 256 bytes:
    # the first Ne bytes come with 61xx, the rest through GET RESPONSE (response chaining).
    fci = bytes.fromhex("6F 0B 84 07" + CCC_AID + "A5 00")
    bounded = send(card, SELECT_CCC + " 05")
    assert (bounded.data, hexsw(bounded)) == (fci[:5], "6108")
    rest = send(card, "00 C0 00 00 08")
    assert (rest.data, hexsw(rest)) == (fci[5:], "9000")
    card = Card([_LongFCI(bytes.fromhex(CCC_AID), "long")], pin_state())
    card.protocol = 1
    long = send(card, SELECT_CCC)
    assert (long.data, hexsw(long)) == (bytes(256), "612C")
    rest = send(card, "00 C0 00 00 00")
    assert (rest.data, hexsw(rest)) == (bytes(44), "9000")
    card.protocol = 0
    assert hexsw(send(card, SELECT_CCC)) == "6100"  # T=0: all through GET RESPONSE


def test_a_card_with_piv_keeps_its_selection_when_a_select_misses() -> None:
    # As ISO/IEC 7816-4 has it; PIV tools probe AIDs (yubico-piv-tool: the YubiKey management
    # AID) and go on with the application they had selected.
    applet = _Exploding(bytes.fromhex("A0 00 00 03 08 00 00 10 00 01 00"), "PIV")
    card = Card([applet], pin_state(), selection_survives_miss=True)
    send(card, "00 A4 04 00 0B A0 00 00 03 08 00 00 10 00 01 00 00")
    assert card.selected() is not None
    assert hexsw(send(card, "00 A4 04 00 08 A0 00 00 05 27 47 11 17")) == "6A82"
    assert card.selected() is applet


def test_select_with_p2_0c_returns_no_fci() -> None:
    card = make_card()
    answer = send(card, "00 A4 04 0C 07 " + CCC_AID)
    assert (answer.data, hexsw(answer)) == (b"", "9000")


def test_select_needs_the_exact_aid_and_a_miss_deselects() -> None:
    card = make_card()
    send(card, SELECT_CCC)
    assert hexsw(send(card, "00 A4 04 00 06 A0 00 00 01 16 DB")) == "6A82"
    assert card.selected() is None
    assert hexsw(send(card, "00 A4 04 00 08 " + CCC_AID + " 00")) == "6A82"


@pytest.mark.parametrize(
    ("aid", "who"),
    [
        ("A0 00 00 03 08 00 00 10 00 01 00", "PIV"),
        ("A0 00 00 00 01 01", "coolkey"),
        ("A0 00 00 00 01", "muscle"),
        ("A0 00 00 03 97 42 54 46 59", "Windows GIDS"),
    ],
)
def test_probes_of_other_card_types_fail_cleanly(aid: str, who: str) -> None:
    card = make_card()
    length = len(bytes.fromhex(aid))
    assert hexsw(send(card, f"00 A4 04 00 {length:02X} {aid}")) == "6A82", who
    # PIV's GET DATA for the discovery object, before any SELECT succeeded.
    assert hexsw(send(card, "00 CB 3F FF 05 5C 03 5F C1 07 00")) == "6D00"


def test_get_response_chains_in_pieces_and_ends_with_9000() -> None:
    card = make_card()
    send(card, SELECT_CCC)
    assert hexsw(send(card, "80 52 00 02 02 01 30")) == "6130"  # 48 bytes of the T-buffer
    first = send(card, "00 C0 00 00 20")
    assert (len(first.data), hexsw(first)) == (32, "6110")
    second = send(card, "00 C0 00 00 20")
    assert (len(second.data), hexsw(second)) == (16, "9000")
    assert hexsw(send(card, "00 C0 00 00 10")) == "6A88"  # nothing left


def test_more_than_256_pending_bytes_announce_6100() -> None:
    card = make_card(bits=2048)
    send(card, "00 A4 04 00 07 " + PKI0_AID)
    send(card, "00 20 00 00 08 " + PIN_HEX)
    block = "0001" + "FF" * 221 + "00" + "AB" * 32
    assert hexsw(send(card, "80 42 00 00 00 01 00 " + block)) == "6100"  # extended, no Le
    first = send(card, "00 C0 00 00 00")
    assert (len(first.data), hexsw(first)) == (256, "9000")


def test_any_other_command_drops_a_pending_response() -> None:
    card = make_card()
    send(card, SELECT_CCC)
    send(card, "00 A4 04 00 07 " + CCC_AID)
    send(card, "80 56 01 00 1D")
    assert hexsw(send(card, "00 C0 00 00 0D")) == "6A88"


def name(applet: Applet | None) -> str | None:
    return None if applet is None else applet.name


def test_each_logical_channel_has_its_own_selected_applet() -> None:
    card = make_card()
    send(card, SELECT_CCC)
    send(card, "02 A4 04 00 07 " + PKI0_AID)
    send(card, "83 A4 04 00 07 A0 00 00 00 79 03 00")  # proprietary class, channel 3
    assert name(card.selected(0)) == "CCC"
    assert name(card.selected(2)) == "PKI 0"
    assert name(card.selected(3)) == "ACA"
    assert card.selected(1) is None
    # READ BUFFER on channel 2 reads PKI 0's certificate buffer, on channel 0 the CCC's.
    assert send(card, "82 52 00 00 02 01 02 02").data == b"\x0a\x00"
    assert send(card, "80 52 00 00 02 01 02 02").data == b"\x34\x00"


def test_manage_channel_is_not_allowed_because_every_channel_is_open() -> None:
    assert hexsw(send(make_card(), "00 70 00 00 01")) == "6900"


@pytest.mark.parametrize(
    ("cla", "sw"),
    [
        ("0C", "6882"),  # secure messaging
        ("04", "6882"),
        ("10", "6884"),  # command chaining
        ("20", "6E00"),
        ("FF", "6E00"),
        ("B0", "9000"),  # proprietary classes B and C use channel 0
        ("C0", "9000"),
    ],
)
def test_the_iso_layer_checks_the_class(cla: str, sw: str) -> None:
    card = make_card()
    assert hexsw(send(card, f"{cla} A4 04 0C 07 {CCC_AID}")) == sw


def test_a_selected_cac_applet_answers_its_own_instructions_whatever_the_class() -> None:
    card = make_card()
    send(card, SELECT_CCC)
    assert hexsw(send(card, "1C 52 00 00 02 01 02 02")) == "9000"


def test_get_challenge_returns_le_random_bytes() -> None:
    # libcacard does not implement GET CHALLENGE; OpenSC's CAC driver asks for 8 bytes for its
    # RNG (C_GenerateRandom), so this card answers it in any state.
    card = make_card(random=lambda n: bytes(range(n)))
    challenge = send(card, "00 84 00 00 08")
    assert (challenge.data, hexsw(challenge)) == (bytes(range(8)), "9000")
    send(card, "00 A4 04 00 07 " + PKI0_AID)
    assert len(send(card, "00 84 00 00 00").data) == 256
    assert hexsw(send(card, "00 84 00 00")) == "6700"
    assert hexsw(send(card, "00 84 01 00 08")) == "6A86"


def test_unknown_instructions_in_the_iso_layer_answer_6d00() -> None:
    assert hexsw(send(make_card(), "00 B0 00 00 10")) == "6D00"
    assert hexsw(send(make_card(), "00 A4 02 00 02 DB 00")) == "6A81"  # no applet selected


def test_malformed_apdus_answer_6700() -> None:
    card = make_card()
    assert hexsw(send(card, "00 A4")) == "6700"
    assert hexsw(send(card, "00 A4 04 00 07 A0")) == "6700"


class _Exploding(Applet):
    def process(self, command: object, selection: Selection, card: CardServices) -> Response | None:
        raise RuntimeError("bug")


class _LongFCI(Applet):
    def fci(self) -> bytes:
        return bytes(300)

    def process(self, command: object, selection: Selection, card: CardServices) -> Response | None:
        return None


def test_a_bug_in_an_applet_answers_6f00_and_is_logged() -> None:
    card = Card([_Exploding(b"\xa0\x00\x00\x00\x99", "boom")], pin_state())
    send(card, "00 A4 04 0C 05 A0 00 00 00 99")
    with capture_logs() as logs:
        assert hexsw(send(card, "00 01 00 00")) == "6F00"
    assert any(entry["event"] == "cacard.internal_error" for entry in logs)


def test_apdu_traces_never_show_the_pin() -> None:
    card = make_card()
    with capture_logs(logging.DEBUG) as logs:
        send(card, "00 20 00 00 08 " + PIN_HEX)
    assert any(entry["event"] == "cacard.apdu" for entry in logs)
    assert all(PIN_HEX.lower() not in str(entry) for entry in logs)


def test_applet_aids_must_be_unique() -> None:
    applet = _Exploding(b"\xa0\x00", "a")
    with pytest.raises(ValueError, match="unique"):
        Card([applet, applet], PinState.create(iterations=1))


CARD = make_card()


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        # Headers the card knows, with random bodies: reaches deep into the applets.
        st.builds(
            lambda cla, ins, p1p2, body: bytes([cla, ins]) + p1p2 + body,
            st.sampled_from([0x00, 0x80, 0x01, 0x82, 0x0C, 0x10, 0xFF]),
            st.sampled_from([0xA4, 0xC0, 0x52, 0x56, 0x42, 0x4C, 0xCA, 0x20, 0x24, 0x84, 0x58]),
            st.binary(min_size=2, max_size=2),
            st.binary(max_size=270),
        ),
        st.sampled_from(
            [
                bytes.fromhex("00 A4 04 00 07" + aid)
                for aid in (
                    CCC_AID,
                    PKI0_AID,
                    "A0 00 00 00 79 03 00",
                    "A0 00 00 00 79 02 00",
                    "A0 00 00 00 03 00 00",
                )
            ]
        ),
    )
)
def test_any_bytes_get_a_well_formed_response_and_never_an_exception(apdu: bytes) -> None:
    raw = CARD.transmit(apdu)
    assert len(raw) >= 2
    sw = int.from_bytes(raw[-2:], "big")
    assert is_valid_status(sw), raw.hex()
    if sw >> 8 in (0x61, 0x6C) or (sw >= 0x6300 and sw != 0x9000):
        assert len(raw) == 2, "only 9000 carries data"
