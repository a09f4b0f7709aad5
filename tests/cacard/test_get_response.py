"""GET RESPONSE hands the data a command left to that command's logical channel only, and only
when the card accepts it: a refused GET RESPONSE, one on another channel and any other command
drop them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacard.applets.ccc import CCC_AID
from cacard.card import Card
from cardfloor.iso7816.apdu import CommandAPDU, Response, logical_channel
from cardfloor.iso7816.instructions import INS_GET_RESPONSE

from .cards import make_card

#: The FCI SELECT of the CCC answers (13 bytes).
FCI = bytes.fromhex("6F0B8407") + CCC_AID + bytes.fromhex("A500")
#: Classes of each channel the card reads: interindustry, and proprietary with the same coding.
CHANNEL_CLASSES = {channel: (channel, 0x80 | channel, 0x90 | channel) for channel in range(4)}


def transmit(card: Card, command: CommandAPDU) -> Response:
    return Response.from_bytes(card.transmit(command.to_bytes()))


def select_ccc(card: Card, cla: int = 0x00) -> Response:
    """SELECT of the CCC without Le: its FCI waits for GET RESPONSE (under T=1, after Ne=5)."""
    le = 5 if card.protocol == 1 else None
    return transmit(card, CommandAPDU(cla, 0xA4, 0x04, 0x00, CCC_AID, le))


def get_response(
    cla: int = 0x00,
    p1p2: int = 0x0000,
    data: bytes = b"",
    le: int | None = 0x0D,
    *,
    extended: bool = False,
) -> bytes:
    return CommandAPDU(cla, 0xC0, p1p2 >> 8, p1p2 & 0xFF, data, le, extended=extended).to_bytes()


def pending_card(protocol: int, cla: int = 0x00) -> Card:
    card = make_card()
    card.protocol = protocol
    answer = select_ccc(card, cla)
    assert answer.sw1 == 0x61
    return card


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize(
    ("refused", "sw"),
    [
        (get_response(p1p2=0x0100), "6a86"),
        (get_response(p1p2=0x0001), "6a86"),
        (get_response(p1p2=0xFFFF), "6a86"),
        (get_response(p1p2=0x0100, extended=True), "6a86"),
        (get_response(data=b"\x00"), "6700"),
        (get_response(data=b"\x00", le=None, extended=True), "6700"),
        (get_response(cla=0x0C), "6882"),  # secure messaging
        (get_response(cla=0x10), "6884"),  # chaining
        (get_response(cla=0x20), "6e00"),  # no class this card knows
    ],
    ids=["p1", "p2", "p1p2", "p1-extended", "data", "data-extended", "sm", "chained", "class"],
)
def test_a_refused_get_response_drops_the_pending_data(
    protocol: int, refused: bytes, sw: str
) -> None:
    """T=0's rule and a Java Card's: the data wait for the next command, if it is the GET
    RESPONSE the card expects; a refused one is another command."""
    card = pending_card(protocol)
    assert card.transmit(refused).hex() == sw
    assert card.transmit(get_response()).hex() == "6a88"


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("produced", range(4))
@pytest.mark.parametrize("asked", range(4))
def test_a_get_response_on_another_channel_gets_none_of_the_data(
    protocol: int, produced: int, asked: int
) -> None:
    """The data belong to the channel of the command that left them; a GET RESPONSE on another
    channel is another command, so they are gone for both."""
    for produced_cla in CHANNEL_CLASSES[produced]:
        for asked_cla in CHANNEL_CLASSES[asked]:
            card = pending_card(protocol, produced_cla)
            answer = Response.from_bytes(card.transmit(get_response(asked_cla)))
            if asked == produced:
                expected = FCI[5:] if protocol == 1 else FCI
                assert (answer.data, answer.sw) == (expected, 0x9000)
            else:
                assert (answer.data, answer.sw) == (b"", 0x6A88)
                assert card.transmit(get_response(produced_cla)).hex() == "6a88"


@pytest.mark.parametrize(
    "fetch",
    [
        get_response(le=0x0D),
        get_response(le=256),
        get_response(le=None),
        get_response(le=0x0D, extended=True),
        get_response(le=65536, extended=True),
        get_response(cla=0xB0),
        get_response(cla=0xC0),
    ],
    ids=["short", "le-256", "no-le", "extended", "extended-max", "class-b0", "class-c0"],
)
def test_every_encoding_of_an_accepted_get_response_takes_the_data(fetch: bytes) -> None:
    """Short or extended Le, or none (a T=0 P3 of 00: 256); classes B and C carry no channel,
    so they fetch what channel 0 left."""
    card = pending_card(0)
    answer = Response.from_bytes(card.transmit(fetch))
    assert (answer.data, answer.sw) == (FCI, 0x9000)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    protocol=st.sampled_from([0, 1]),
    commands=st.lists(
        st.tuples(
            st.sampled_from(["select", "get", "get", "get", "other"]),
            st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x81, 0x93, 0x0C, 0x10, 0xB0]),
            st.sampled_from([0x0000, 0x0000, 0x0000, 0x0100]),
            st.sampled_from([None, 4, 0x0D, 256]),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_get_response_returns_only_what_the_last_command_on_its_channel_left(
    protocol: int, commands: list[tuple[str, int, int, int | None]]
) -> None:
    """Whatever the order of commands and GET RESPONSEs across channels and classes: a GET
    RESPONSE that returns data follows, through accepted GET RESPONSEs on the same channel only,
    the command that left them, and what it returns is the rest of that command's data."""
    card = make_card()
    card.protocol = protocol
    source: tuple[int, bytes] | None = None  # the channel of the last producing command, and
    # what of its data the host has not had yet
    for kind, cla, p1p2, le in commands:
        channel = logical_channel(cla) if cla >> 4 in (0x0, 0x8, 0x9) else 0
        # No secure messaging, no chaining (of an interindustry class): what the card accepts.
        plain = cla & 0x0C == 0 and not (cla < 0x80 and cla & 0x10)
        if kind == "select":
            answer = transmit(card, CommandAPDU(cla, 0xA4, 0x04, 0x00, CCC_AID, le))
            if answer.sw1 == 0x61:
                assert plain
                source = (channel, FCI[len(answer.data) :])
            else:
                source = None
            continue
        if kind == "other":
            transmit(card, CommandAPDU(cla, 0xCA, 0x00, 0x00))
            source = None
            continue
        answer = transmit(card, CommandAPDU(cla, INS_GET_RESPONSE, p1p2 >> 8, p1p2 & 0xFF, le=le))
        accepted = plain and p1p2 == 0 and source is not None and source[0] == channel
        if not accepted:
            assert answer.data == b""
            assert answer.sw != 0x9000
            source = None
            continue
        assert source is not None
        count = 256 if le is None else le
        assert answer.data == source[1][:count]
        rest = source[1][count:]
        source = (channel, rest) if rest else None
        assert answer.sw == (0x9000 if not rest else 0x6100 | len(rest))
