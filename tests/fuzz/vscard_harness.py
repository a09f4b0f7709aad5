"""VSCard: the codec's :class:`~vscard.Decoder` and both sans-IO connections on one stream.

Control byte: bits 0-4 split the stream (:func:`~tests.fuzz.common.chunks`); bit 5 makes the
host send its Init first and the client take its card out again; bit 6 makes the host send
Flush; bit 7 sets a 64-byte ``max_frame_size`` so the frame limit is hit with small inputs.
Both connections announce our CardReset extension; the host uses it (a CardReset with T=1 for
each card inserted) when the stream's Init announced it too, and the client takes the host's
CardReset and CardProtocol only if the stream's host Init announced it.

Bugs: any exception but :class:`vscard.ProtocolError`; a split stream decoding differently
from the whole one; more bytes buffered than one frame; a decoded message that does not
re-encode to its frame; a connection whose replies do not decode, or that keeps more readers
or pending requests than its limits.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from vscard import (
    APDU,
    ATR,
    APDURequest,
    CardInserted,
    CardProtocol,
    CardReset,
    CardResetRequested,
    ClientConnection,
    Decoder,
    Error,
    FlushRequested,
    HostConnection,
    Init,
    Message,
    ProtocolChanged,
    ProtocolError,
    ReaderAdd,
    ReaderRemove,
    encode,
)
from vscard.client import MAX_PENDING_REQUESTS
from vscard.constants import HEADER_SIZE, MAX_FRAME_SIZE, MessageType

from .common import FuzzBug, check, chunks, split_input

MAX_LEN: Final = 4096
SMALL_FRAME: Final = 64
MAX_READERS: Final = 4
_HEADER: Final = struct.Struct(">III")
_ATR: Final = bytes.fromhex("3B 80 81 31 FE 45 8B")
_SELECT: Final = bytes.fromhex("00 A4 04 00 07 A0 00 00 00 79 01 00 00")


def _decode_all(max_frame: int, pieces: Iterable[bytes]) -> tuple[list[Message], str | None]:
    decoder = Decoder(max_frame_size=max_frame)
    messages: list[Message] = []
    for piece in pieces:
        try:
            messages += decoder.feed(piece)
        except ProtocolError as error:
            try:
                decoder.feed(b"")
            except ProtocolError as again:
                check(again is error, "a later feed raised another error than the first")
            else:
                raise FuzzBug("a Decoder fed again after a ProtocolError did not raise")
            return messages, f"{error.field}={error.value!r}"
        check(decoder.buffered < max_frame, f"{decoder.buffered} bytes buffered")
    if decoder.error is not None:
        # Frames before a bad one come out first; the error waits for the next feed.
        pending = decoder.error
        try:
            decoder.feed(b"")
        except ProtocolError as again:
            check(again is pending, "the next feed raised another error than the pending one")
        else:
            raise FuzzBug("a Decoder with a pending error did not raise on the next feed")
        return messages, f"{pending.field}={pending.value!r}"
    return messages, None


def _check_codec(control: int, payload: bytes, max_frame: int) -> None:
    whole, whole_error = _decode_all(max_frame, [payload])
    split, split_error = _decode_all(max_frame, chunks(control, payload))
    check(split_error == whole_error, f"split: {split_error}, whole: {whole_error}")
    # Frames before a bad one are returned, so a split stream decodes to the same messages.
    check(split == whole, "a split stream decoded to other messages")
    offset = 0
    for message in split:
        _, reader_id, length = _HEADER.unpack_from(payload, offset)
        frame = payload[offset : offset + HEADER_SIZE + length]
        offset += len(frame)
        wire = encode(message, max_frame_size=4 * MAX_FRAME_SIZE)
        if isinstance(message, ReaderAdd):
            # The name is cut at its NUL and undecodable bytes replaced: only the id survives.
            check(message.reader_id == reader_id, "ReaderAdd lost its reader_id")
        else:
            check(wire == frame, f"{message!r} re-encodes to other bytes than its frame")
        check(Decoder(max_frame_size=4 * MAX_FRAME_SIZE).feed(wire) == [message], "no round trip")


def _check_replies(wire: bytes | bytearray) -> None:
    """What a connection sends must itself be well-formed VSCard, in whole frames."""
    decoder = Decoder()
    decoder.feed(wire)
    check(decoder.buffered == 0, "a connection sent a partial frame")


def _check_host(control: int, payload: bytes, max_frame: int) -> None:
    host = HostConnection(max_readers=MAX_READERS, max_frame_size=max_frame)
    if control & 0x20:
        host.send_init()
    sent = bytearray()
    for piece in chunks(control, payload):
        try:
            events = host.receive_data(piece)
        except ProtocolError:
            break
        readers = host.readers
        for event in events:
            if isinstance(event, CardInserted) and event.reader_id in readers:
                if control & 0x40:
                    host.send_flush(event.reader_id)
                if host.card_reset:
                    host.send_card_reset(event.reader_id, 1)
        # Keep an APDU in flight wherever a card is, so responses have something to answer.
        for reader in host.readers.values():
            if reader.card_present and not reader.apdu_in_flight:
                host.send_apdu(reader.reader_id, _SELECT)
        check(len(readers) <= MAX_READERS, f"{len(readers)} readers")
        sent += host.data_to_send()
    _check_replies(sent)


def _check_client(control: int, payload: bytes, max_frame: int) -> None:
    client = ClientConnection(max_frame_size=max_frame, capabilities=0x8000_0000)
    client.send_init()
    client.add_reader("fuzz")
    client.insert_card(0, _ATR)
    if control & 0x20:
        client.remove_card(0)
        client.remove_reader(0)
    requests = client.pending_requests
    sent = bytearray(client.data_to_send())
    for piece in chunks(control, payload):
        try:
            events = client.receive_data(piece)
        except ProtocolError:
            break
        for event in events:
            if isinstance(event, FlushRequested):
                client.send_flush_complete(event.reader_id)
            elif isinstance(event, APDURequest):
                client.send_response(event.reader_id, b"\x90\x00")
            elif isinstance(event, CardResetRequested | ProtocolChanged):
                check(client.card_reset, "an extension message without both announcements")
        check(client.pending_requests <= requests, "pending requests grew without requests")
        check(client.pending_requests <= MAX_PENDING_REQUESTS, "too many pending requests")
        sent += client.data_to_send()
    _check_replies(sent)


def fuzz_one(data: bytes) -> None:
    """Feed ``data`` to a Decoder, a HostConnection and a ClientConnection."""
    control, payload = split_input(data)
    max_frame = SMALL_FRAME if control & 0x80 else MAX_FRAME_SIZE
    _check_codec(control, payload, max_frame)
    _check_host(control, payload, max_frame)
    _check_client(control, payload, max_frame)


def seeds() -> dict[str, bytes]:
    """Valid streams: what a client sends a host, what a host sends a client."""
    client_side: list[Message] = [
        Init(),
        ReaderAdd(name="Fuzz Reader"),
        ATR(0, _ATR),
        APDU(0, b"\x6f\x00\x90\x00"),
        Error(0, 0x01000000),
        ReaderRemove(0),
    ]
    host_side: list[Message] = [Init(), Error(0, 0), APDU(0, _SELECT), Error(0, 0)]
    announced = Init(capabilities=(0x8000_0000,))
    client_card_reset: list[Message] = [announced, *client_side[1:4]]
    host_card_reset: list[Message] = [
        announced,
        Error(0, 0),
        Error(0, 0),
        CardReset(0, 1),
        APDU(0, _SELECT),
        CardProtocol(0, 0),
        APDU(0, _SELECT),
    ]
    flush = [_HEADER.pack(MessageType.FLUSH, 0, 0), _HEADER.pack(MessageType.FLUSH_COMPLETE, 0, 0)]
    return {
        "client-session": b"\x00" + b"".join(encode(m) for m in client_side),
        "client-session-split": b"\x14" + b"".join(encode(m) for m in client_side),
        "host-session": b"\x60" + b"".join(encode(m) for m in host_side) + b"".join(flush),
        "init-small-frames": b"\x80" + encode(Init(0, 2, (0, 7))),
        "client-card-reset": b"\x00" + b"".join(encode(m) for m in client_card_reset),
        "host-card-reset": b"\x00" + b"".join(encode(m) for m in host_card_reset),
    }
