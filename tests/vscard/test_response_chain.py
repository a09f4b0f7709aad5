"""GET RESPONSE prefetch (issue #17): the ResponseChain message, its negotiation, and the two
sans-IO halves. The guest must see exactly what it would see talking to the card directly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cacard.atr import CAC_ATR
from cardfloor.iso7816.apdu import (
    EXTENDED_MAX,
    SHORT_MAX,
    APDUFormatError,
    CommandAPDU,
    bytes_remaining,
    get_response_class,
    logical_channel,
)
from vscard import (
    APDU,
    ATR,
    APDUResponse,
    Capability,
    ClientConnection,
    HostConnection,
    Init,
    LocalProtocolError,
    MessageType,
    ReaderAdd,
    RemoteProtocolError,
    ResponseChain,
    Unexpected,
)
from vscard.codec import Decoder, encode
from vscard.response_chain import (
    MAX_CHAIN_BYTES,
    ChainHolder,
    Continue,
    Prefetch,
)

CARD_ATR = CAC_ATR
BOTH = Capability.CARD_RESET | Capability.RESPONSE_CHAIN
_GET_RESPONSE = 0xC0


# -- the message --------------------------------------------------------------------------


def test_response_chain_round_trips() -> None:
    message = ResponseChain(3, b"\x01\x02\x03", 0x9000)
    frame = encode(message)
    assert frame[:12] == bytes.fromhex("80000003 00000003 00000005".replace(" ", ""))
    assert frame[12:] == b"\x01\x02\x03\x90\x00"
    assert Decoder().feed(frame) == [message]


def test_empty_chain_round_trips() -> None:
    assert Decoder().feed(encode(ResponseChain(0, b"", 0x6282))) == [ResponseChain(0, b"", 0x6282)]


@pytest.mark.parametrize("length", [0, 1])
def test_chain_without_status_word_is_refused_naming_the_field(length: int) -> None:
    frame = (int(MessageType.RESPONSE_CHAIN).to_bytes(4, "big") + bytes(4)) + length.to_bytes(
        4, "big"
    )
    with pytest.raises(RemoteProtocolError) as caught:
        Decoder().feed(frame + bytes(length))
    assert caught.value.field == "ResponseChain.length"
    assert caught.value.value == length


def test_status_word_must_fit_two_bytes() -> None:
    with pytest.raises(ValueError, match=r"ResponseChain\.sw"):
        ResponseChain(0, b"", 0x1_0000)


# -- negotiation -------------------------------------------------------------------------


def pair(client_caps: int, host_caps: int) -> tuple[ClientConnection, HostConnection]:
    """A client and a host after both Inits, with reader 0 and a card in it."""
    client = ClientConnection(capabilities=client_caps)
    host = HostConnection(capabilities=host_caps)
    client.send_init()
    host.receive_data(client.data_to_send())
    client.receive_data(host.data_to_send())
    client.add_reader("r")
    host.receive_data(client.data_to_send())
    client.receive_data(host.data_to_send())
    client.insert_card(0, CARD_ATR)
    host.receive_data(client.data_to_send())
    client.receive_data(host.data_to_send())
    return client, host


def test_both_announce_then_chain_comes_with_the_response() -> None:
    client, host = pair(BOTH, BOTH)
    assert client.response_chain
    assert host.response_chain
    host.send_apdu(0, bytes.fromhex("00CB3FFF055C035FC10500"))
    client.receive_data(host.data_to_send())
    client.send_response_chain(0, b"rest", 0x9000)
    client.send_response(0, b"head\x61\x04")
    events = host.receive_data(client.data_to_send())
    assert events == [APDUResponse(0, b"head\x61\x04", ResponseChain(0, b"rest", 0x9000))]
    # The next response carries none.
    host.send_apdu(0, b"\x00\xc0\x00\x00\x04")
    client.receive_data(host.data_to_send())
    client.send_response(0, b"\x90\x00")
    assert host.receive_data(client.data_to_send()) == [APDUResponse(0, b"\x90\x00")]


@pytest.mark.parametrize(
    ("client_caps", "host_caps"),
    [
        (0, BOTH),  # libcacard's vscclient
        (Capability.CARD_RESET, BOTH),  # our client before the extension
        (BOTH, Capability.CARD_RESET),  # a host whose application serves no chain
        (BOTH, 0),
    ],
)
def test_without_both_nothing_new(client_caps: int, host_caps: int) -> None:
    client, host = pair(client_caps, host_caps)
    assert not client.response_chain
    assert not host.response_chain
    with pytest.raises(LocalProtocolError) as caught:
        client.send_response_chain(0, b"", 0x9000)
    assert caught.value.field == "capabilities"
    assert client.data_to_send() == b""


def test_unannounced_chain_is_a_protocol_error_naming_the_type() -> None:
    _, host = pair(Capability.CARD_RESET, BOTH)
    host.send_apdu(0, b"\x00\xb0\x00\x00\x00")
    with pytest.raises(RemoteProtocolError) as caught:
        host.receive_data(encode(ResponseChain(0, b"", 0x9000)))
    assert caught.value.field == "header.type"
    assert caught.value.value == MessageType.RESPONSE_CHAIN
    assert "RESPONSE_CHAIN" in str(caught.value)


def test_qemu_style_host_init_announces_nothing_new() -> None:
    client = ClientConnection(capabilities=BOTH)
    client.send_init()
    client.receive_data(encode(Init()))  # QEMU's word of 0
    assert not client.response_chain


def test_chain_with_no_apdu_in_flight_is_a_violation() -> None:
    _, host = pair(BOTH, BOTH)
    events = host.receive_data(encode(ResponseChain(0, b"x", 0x9000)))
    assert [type(event) for event in events] == [Unexpected]
    assert host.violations == 1


def test_chain_of_an_aborted_apdu_is_dropped_quietly() -> None:
    _, host = pair(BOTH, BOTH)
    host.send_apdu(0, b"\x00\xb0\x00\x00\x00")
    host.receive_data(encode(ATR(0, CARD_ATR)))  # the client reset the card: APDU aborted
    events = host.receive_data(
        encode(ResponseChain(0, b"x", 0x9000)) + encode(APDU(0, b"\x61\x01"))
    )
    assert events == []
    assert host.violations == 0


def test_host_reader_add_unchanged() -> None:
    _, host = pair(BOTH, BOTH)
    host.receive_data(encode(ReaderAdd(name="second")))
    assert 1 in host.readers


# -- a card that chains its answers -------------------------------------------------------


class ChainingCard:
    """A card whose READ (INS B0, P1 P2 = how many bytes) answers through ``61xx`` as ISO/IEC
    7816-4 has it: under T=0 ``61xx`` alone, under T=1 the first Ne bytes with ``61xx``.
    Pending data are per card, dropped by any command but a well-formed GET RESPONSE on their
    channel. ``sent`` counts the commands it received."""

    def __init__(self, protocol: int, final_sw: int = 0x9000) -> None:
        self.protocol = protocol
        self.final_sw = final_sw
        self.pending = b""
        self.channel = 0
        self.sent = 0
        self.counter = 0

    def transmit(self, raw: bytes) -> bytes:
        self.sent += 1
        try:
            command = CommandAPDU.from_bytes(raw)
        except APDUFormatError:
            self.pending = b""
            return b"\x67\x00"
        if (
            command.ins == _GET_RESPONSE
            and not command.p1
            and not command.p2
            and not command.data
            and logical_channel(command.cla) == self.channel
        ):
            if not self.pending:
                return b"\x6a\x88"
            count = SHORT_MAX if command.le is None else command.le
            chunk, self.pending = self.pending[:count], self.pending[count:]
            if self.pending:
                return chunk + bytes_remaining(len(self.pending)).to_bytes(2, "big")
            return chunk + self.final_sw.to_bytes(2, "big")
        self.pending = b""
        if command.ins != 0xB0:
            self.counter += 1
            return self.counter.to_bytes(2, "big") + b"\x90\x00"
        size = command.p1 << 8 | command.p2
        data = bytes((self.counter + i) & 0xFF for i in range(size))
        self.counter += 1
        self.channel = logical_channel(command.cla)
        limit = command.ne
        if command.le is None and self.protocol == 1:
            limit = EXTENDED_MAX if command.extended else SHORT_MAX
        if len(data) <= limit:
            return data + self.final_sw.to_bytes(2, "big")
        if self.protocol == 1:
            head, self.pending = data[:limit], data[limit:]
            return head + bytes_remaining(len(self.pending)).to_bytes(2, "big")
        self.pending = data
        return bytes_remaining(len(data)).to_bytes(2, "big")


class PrefetchingLink:
    """vscclient and ccid-passthru around ``card``, without sockets: what the guest sees, and
    how many VSCard round trips it cost."""

    def __init__(self, card: ChainingCard, *, max_steps: int, max_bytes: int) -> None:
        self.card = card
        self.holder = ChainHolder()
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self.round_trips = 0

    def transmit(self, command: bytes) -> bytes:
        prefix = b""
        answer = self.holder.answer(command)
        if isinstance(answer, Continue):
            prefix, command = answer.prefix, answer.command
        elif answer is not None:
            return answer
        self.round_trips += 1
        response = self.card.transmit(command)  # vscclient's side from here
        prefetch = Prefetch(max_steps=self.max_steps, max_bytes=self.max_bytes)
        step = prefetch.start(command, response)
        while step is not None:
            step = prefetch.step(self.card.transmit(step))
        if prefetch.sw is not None:
            assert len(prefetch.data) <= self.max_bytes
            self.holder.hold(command, prefetch.data, prefetch.sw)
        return prefix + response


_le = st.one_of(st.none(), st.integers(1, 256))
_cla = st.sampled_from([0x00, 0x01, 0x80, 0x81, 0x0C, 0x10])
_read = st.builds(
    lambda cla, size, le: CommandAPDU(cla, 0xB0, size >> 8, size & 0xFF, le=le).to_bytes(),
    _cla,
    st.integers(0, 1500),
    _le,
)
_get_response = st.builds(
    lambda cla, le, extended: CommandAPDU(
        cla, _GET_RESPONSE, 0, 0, le=le, extended=extended or (le is not None and le > SHORT_MAX)
    ).to_bytes(),
    _cla,
    st.one_of(_le, st.integers(257, 2000)),
    st.booleans(),
)
_odd = st.sampled_from(
    [
        bytes.fromhex("00C0000100"),  # GET RESPONSE with P1 P2 not 00 00
        bytes.fromhex("00C00000"),  # no Le
        bytes.fromhex("00C0000001AA"),  # with data
        bytes.fromhex("00A4040000"),
        bytes.fromhex("00"),  # not an APDU
        bytes.fromhex("00B0"),
    ]
)
_commands = st.lists(st.one_of(_read, _get_response, _get_response, _odd), max_size=25)


@settings(max_examples=300, deadline=None)
@given(
    commands=_commands,
    protocol=st.sampled_from([0, 1]),
    final_sw=st.sampled_from([0x9000, 0x6282]),
    max_steps=st.integers(1, 8),
    max_bytes=st.sampled_from([1, 100, 256, 700, MAX_CHAIN_BYTES]),
)
def test_guest_sees_exactly_what_the_card_says(
    commands: list[bytes], protocol: int, final_sw: int, max_steps: int, max_bytes: int
) -> None:
    direct = ChainingCard(protocol, final_sw)
    link = PrefetchingLink(
        ChainingCard(protocol, final_sw), max_steps=max_steps, max_bytes=max_bytes
    )
    for command in commands:
        assert link.transmit(command) == direct.transmit(command), command.hex()
    assert link.round_trips <= len(commands)


def test_certificate_read_costs_one_round_trip() -> None:
    link = PrefetchingLink(ChainingCard(1), max_steps=64, max_bytes=MAX_CHAIN_BYTES)
    direct = ChainingCard(1)
    read = CommandAPDU(0x00, 0xB0, 0x06, 0x00, le=256).to_bytes()  # 1536 bytes
    seen = [link.transmit(read)]
    expected = [direct.transmit(read)]
    while seen[-1][-2] == 0x61:
        follow = bytes((0x00, 0xC0, 0x00, 0x00, seen[-1][-1]))
        seen.append(link.transmit(follow))
        expected.append(direct.transmit(follow))
    assert seen == expected
    assert len(seen) == 6
    assert link.round_trips == 1


# -- the halves -----------------------------------------------------------------------------


def test_prefetch_keeps_the_channel_and_asks_sw2() -> None:
    prefetch = Prefetch()
    assert prefetch.start(bytes.fromhex("0300000000"), b"\x61\x10") == bytes.fromhex("03C0000010")
    assert prefetch.step(bytes(16) + b"\x90\x00") is None
    assert (prefetch.data, prefetch.sw) == (bytes(16), 0x9000)


def test_prefetch_of_a_proprietary_class_uses_interindustry_get_response() -> None:
    assert get_response_class(0x81) == 0x01
    assert get_response_class(0x1D) == 0x01  # chaining and secure messaging off
    assert get_response_class(0x5E) == 0x4E
    assert Prefetch().start(bytes.fromhex("80CA000000"), b"\x61\x00") == bytes.fromhex("00C0000000")


def test_prefetch_stops_at_its_bounds() -> None:
    prefetch = Prefetch(max_steps=2, max_bytes=MAX_CHAIN_BYTES)
    command = prefetch.start(b"\x00\xb0\x00\x00", b"\x61\x00")
    assert command is not None
    command = prefetch.step(bytes(256) + b"\x61\x00")
    assert command is not None
    assert prefetch.step(bytes(256) + b"\x61\x00") is None
    assert (len(prefetch.data), prefetch.sw) == (512, 0x6100)
    small = Prefetch(max_bytes=100)
    assert small.start(b"\x00\xb0\x00\x00", b"\x61\x00") is None  # 256 would not fit
    assert small.sw is None


def test_prefetch_ignores_other_answers_and_bad_commands() -> None:
    assert Prefetch().start(b"\x00\xb0\x00\x00", b"\x90\x00") is None
    assert Prefetch().start(b"\x00", b"\x61\x10") is None
    prefetch = Prefetch()
    prefetch.start(b"\x00\xb0\x00\x00", b"\x61\x10")
    assert prefetch.step(b"\x90") is None
    assert prefetch.sw is None


def test_prefetch_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        Prefetch(max_steps=0)
    with pytest.raises(ValueError, match="max_bytes"):
        Prefetch(max_bytes=MAX_CHAIN_BYTES + 1)


def _held(holder: ChainHolder) -> int | None:
    return holder.held  # a call each time: mypy would keep a narrowed attribute


def test_holder_honours_le_and_drops_at_anything_else() -> None:
    holder = ChainHolder()
    holder.hold(b"\x00\xb0\x00\x00", bytes(range(10)), 0x9000)
    assert _held(holder) == 10
    assert holder.answer(b"\x00\xc0\x00\x00\x04") == bytes(range(4)) + b"\x61\x06"
    assert holder.answer(b"\x00\xc0\x00\x00\x00") == bytes(range(4, 10)) + b"\x90\x00"
    assert _held(holder) is None
    holder.hold(b"\x00\xb0\x00\x00", bytes(10), 0x9000)
    assert holder.answer(b"\x01\xc0\x00\x00\x04") is None  # another channel
    assert _held(holder) is None
    holder.hold(b"\x00\xb0\x00\x00", bytes(10), 0x9000)
    holder.drop()
    assert holder.answer(b"\x00\xc0\x00\x00\x04") is None


def test_holder_of_a_cut_chain_asks_the_card_for_the_rest() -> None:
    holder = ChainHolder()
    holder.hold(b"\x00\xb0\x00\x00", bytes(10), 0x6105)
    assert holder.answer(b"\x00\xc0\x00\x00\x04") == bytes(4) + b"\x61\x0b"
    answer = holder.answer(b"\x00\xc0\x00\x00\x08")
    assert answer == Continue(bytes(6), b"\x00\xc0\x00\x00\x02")
    assert _held(holder) is None


def test_holder_bounds_its_chain() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        ChainHolder().hold(b"\x00\xb0\x00\x00", bytes(MAX_CHAIN_BYTES + 1), 0x9000)
