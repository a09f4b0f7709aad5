"""Sans-IO codec: messages to bytes with :func:`encode`, bytes to messages with :class:`Decoder`."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, NoReturn, get_args

from cardfloor.frozen import slot_setters
from cardfloor.iso7816.apdu import more_remaining
from cardfloor.native import is_compiled, is_native

from .constants import (
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    VSCARD_MAGIC,
    ErrorCode,
    MessageType,
    TransmissionProtocol,
)
from .errors import RemoteProtocolError
from .messages import (
    APDU,
    ATR,
    CardProtocol,
    CardRemove,
    CardReset,
    Error,
    Flush,
    FlushComplete,
    Init,
    Message,
    ReadAhead,
    ReaderAdd,
    ReaderRemove,
    ResponseChain,
)

_HEADER: Final = struct.Struct(">III")
_unpack_header: Final = _HEADER.unpack_from
_pack_header: Final = _HEADER.pack
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")
_INIT_FIXED: Final = struct.Struct(">4sI")

# Exact payload sizes of the fixed-size messages; Init is checked on its own (12 + 4n).
_FIXED_LENGTH: Final[dict[int, int]] = {
    MessageType.ERROR: 4,
    MessageType.READER_REMOVE: 0,
    MessageType.CARD_REMOVE: 0,
    MessageType.FLUSH: 0,
    MessageType.FLUSH_COMPLETE: 0,
    MessageType.CARD_RESET: 4,
    MessageType.CARD_PROTOCOL: 4,
}
_APDU_TYPE: Final = int(MessageType.APDU)
_ERROR_CODES: Final = {code.value: code for code in ErrorCode}
_CLASS_NAMES: Final[dict[int, str]] = {cls.TYPE: cls.__name__ for cls in get_args(Message)}
_PROTOCOLS: Final = {protocol.value: protocol for protocol in TransmissionProtocol}


def encode(message: Message, *, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """Return the wire bytes of ``message``: its 12-byte header followed by the payload.

    Raises :class:`ValueError` when the frame would exceed ``max_frame_size`` (QEMU's
    65,536 bytes by default: a bigger frame wedges QEMU's chardev for good).
    """
    payload: bytes
    if isinstance(message, APDU):  # the commonest: packed with the plain type number
        payload = message.data
        size = len(payload)
        if size > max_frame_size - HEADER_SIZE:
            _refuse_size(message, size, max_frame_size)
        return _pack_header(_APDU_TYPE, message.reader_id, size) + payload
    if isinstance(message, Error):
        payload = _U32.pack(message.code)
    elif isinstance(message, ATR):
        payload = message.atr
    elif isinstance(message, Init):
        payload = _INIT_FIXED.pack(VSCARD_MAGIC, message.version) + struct.pack(
            f">{len(message.capabilities)}I", *message.capabilities
        )
    elif isinstance(message, ReaderAdd):
        payload = message.name.encode()
    elif isinstance(message, CardReset | CardProtocol):
        payload = _U32.pack(message.protocol)
    elif isinstance(message, ResponseChain):
        payload = message.data + message.sw.to_bytes(2, "big")
    elif isinstance(message, ReadAhead):
        payload = _encode_read_ahead(message)
    else:
        payload = b""
    if HEADER_SIZE + len(payload) > max_frame_size:
        _refuse_size(message, len(payload), max_frame_size)
    return _HEADER.pack(message.TYPE, message.reader_id, len(payload)) + payload


def _refuse_size(message: Message, payload_size: int, max_frame_size: int) -> NoReturn:
    raise ValueError(
        f"{type(message).__name__} frame of {HEADER_SIZE + payload_size} bytes exceeds "
        f"max_frame_size={max_frame_size}"
    )


def _decode_init(reader_id: int, payload: bytes) -> Init:
    magic, version = _INIT_FIXED.unpack_from(payload)
    if magic != VSCARD_MAGIC:
        raise RemoteProtocolError("wrong Init magic", field="Init.magic", value=magic)
    words = (len(payload) - _INIT_FIXED.size) // 4
    capabilities = struct.unpack_from(f">{words}I", payload, _INIT_FIXED.size)
    return Init(reader_id, version, capabilities)


def _decode_error(reader_id: int, payload: bytes) -> Error:
    (code,) = _U32.unpack(payload)
    return Error(reader_id, _ERROR_CODES.get(code, code))


def _decode_reader_add(reader_id: int, payload: bytes) -> ReaderAdd:
    # C peers may send the name NUL-terminated. The name is only informational, so bytes
    # that are not UTF-8 are replaced rather than dropping the connection over them.
    name = payload.split(b"\0", 1)[0].decode("utf-8", "replace")
    return ReaderAdd(reader_id, name)


def _decode_reader_remove(reader_id: int, _payload: bytes) -> ReaderRemove:
    return ReaderRemove(reader_id)


def _decode_card_remove(reader_id: int, _payload: bytes) -> CardRemove:
    return CardRemove(reader_id)


def _decode_flush(reader_id: int, _payload: bytes) -> Flush:
    return Flush(reader_id)


def _decode_flush_complete(reader_id: int, _payload: bytes) -> FlushComplete:
    return FlushComplete(reader_id)


def _protocol(name: str, payload: bytes) -> TransmissionProtocol:
    (value,) = _U32.unpack(payload)
    protocol = _PROTOCOLS.get(value)
    if protocol is None:
        raise RemoteProtocolError(
            "protocol must be 0 (T=0) or 1 (T=1)", field=f"{name}.protocol", value=value
        )
    return protocol


def _decode_card_reset(reader_id: int, payload: bytes) -> CardReset:
    return CardReset(reader_id, _protocol("CardReset", payload))


def _decode_card_protocol(reader_id: int, payload: bytes) -> CardProtocol:
    return CardProtocol(reader_id, _protocol("CardProtocol", payload))


def _decode_response_chain(reader_id: int, payload: bytes) -> ResponseChain:
    return ResponseChain(reader_id, payload[:-2], int.from_bytes(payload[-2:], "big"))


def _encode_read_ahead(message: ReadAhead) -> bytes:
    command, response = message.command, message.response
    parts = [_U16.pack(len(command)), command, _U16.pack(len(response)), response]
    if message.chain_sw is not None:
        parts += (message.chain, _U16.pack(message.chain_sw))
    return b"".join(parts)


def _read_ahead_part(payload: bytes, offset: int, name: str, least: int) -> tuple[bytes, int]:
    """The length-prefixed part of a ReadAhead at ``offset``, and the offset after it."""
    if len(payload) - offset < 2:
        raise RemoteProtocolError(
            f"ReadAhead ends before its {name} length", field=f"ReadAhead.{name}_length", value=0
        )
    (length,) = _U16.unpack_from(payload, offset)
    start = offset + 2
    if length < least or start + length > len(payload):
        raise RemoteProtocolError(
            f"ReadAhead {name} must be {least} bytes or more, within the payload",
            field=f"ReadAhead.{name}_length",
            value=length,
        )
    return payload[start : start + length], start + length


def _decode_read_ahead(reader_id: int, payload: bytes) -> ReadAhead:
    command, offset = _read_ahead_part(payload, 0, "command", 4)
    response, offset = _read_ahead_part(payload, offset, "response", 2)
    remaining = more_remaining(int.from_bytes(response[-2:], "big"))
    rest = len(payload) - offset
    if not remaining:
        if rest:
            raise RemoteProtocolError(
                "ReadAhead of a response that is not 61xx has nothing after it",
                field="ReadAhead.chain",
                value=rest,
            )
        return ReadAhead(reader_id, command, response)
    if rest < 2:
        raise RemoteProtocolError(
            "ReadAhead of a 61xx response must end with its chain's status word",
            field="ReadAhead.chain_sw",
            value=rest,
        )
    (chain_sw,) = _U16.unpack_from(payload, len(payload) - 2)
    if more_remaining(chain_sw):
        raise RemoteProtocolError(
            "ReadAhead chain must be complete: its status word cannot be 61xx",
            field="ReadAhead.chain_sw",
            value=chain_sw,
        )
    return ReadAhead(reader_id, command, response, payload[offset:-2], chain_sw)


# APDU frames are built without APDU.__init__ (see cardfloor.frozen): everything __post_init__
# checks is already guaranteed by the wire (reader_id is a u32 read from the header). In Python
# through the slot setters; where this module and the messages are both compiled, the class is
# native and a store to its field is a plain store (cardfloor.native.is_native).
_new_apdu: Final = APDU.__new__
_set_apdu_reader_id, _set_apdu_data = slot_setters(APDU, ("reader_id", "data"))


def _build_apdu(reader_id: int, data: bytes) -> APDU:
    """``APDU(reader_id, data)`` for a ``reader_id`` read as a u32 (see above)."""
    message = _new_apdu(APDU)
    if _NATIVE:
        message.reader_id = reader_id  # type: ignore[misc]
        message.data = data  # type: ignore[misc]
        return message
    _set_apdu_reader_id(message, reader_id)
    _set_apdu_data(message, data)
    return message


_NATIVE: Final = is_compiled(_build_apdu) and is_native(APDU)


_DECODERS: Final[dict[int, Callable[[int, bytes], Message]]] = {
    int(MessageType.INIT): _decode_init,
    int(MessageType.ERROR): _decode_error,
    int(MessageType.READER_ADD): _decode_reader_add,
    int(MessageType.READER_REMOVE): _decode_reader_remove,
    int(MessageType.ATR): ATR,
    int(MessageType.CARD_REMOVE): _decode_card_remove,
    int(MessageType.APDU): _build_apdu,
    int(MessageType.FLUSH): _decode_flush,
    int(MessageType.FLUSH_COMPLETE): _decode_flush_complete,
    int(MessageType.CARD_RESET): _decode_card_reset,
    int(MessageType.CARD_PROTOCOL): _decode_card_protocol,
    int(MessageType.RESPONSE_CHAIN): _decode_response_chain,
    int(MessageType.READ_AHEAD): _decode_read_ahead,
}


def _check_header(msg_type: int, length: int, max_payload: int) -> None:
    if msg_type not in _DECODERS:
        raise RemoteProtocolError("unknown message type", field="header.type", value=msg_type)
    if length > max_payload:
        raise RemoteProtocolError(
            f"frame exceeds max_frame_size={max_payload + HEADER_SIZE}",
            field="header.length",
            value=length,
        )
    expected = _FIXED_LENGTH.get(msg_type)
    if expected is not None and length != expected:
        name = _CLASS_NAMES[msg_type]
        raise RemoteProtocolError(
            f"{name} payload must be {expected} bytes", field=f"{name}.length", value=length
        )
    if msg_type == MessageType.RESPONSE_CHAIN and length < 2:
        raise RemoteProtocolError(
            "ResponseChain payload must end with a 2-byte status word",
            field="ResponseChain.length",
            value=length,
        )
    if msg_type == MessageType.INIT and (length < 12 or length % 4):
        raise RemoteProtocolError(
            "Init payload must be magic, version and one or more u32 capability words",
            field="Init.length",
            value=length,
        )


class Decoder:
    """Turns a byte stream, split anywhere, into messages.

    A frame is checked as soon as its header is in: an unknown type, a length above
    ``max_frame_size`` or a wrong size for a fixed-size message raises
    :class:`~vscard.RemoteProtocolError` at once, so at most one frame's worth of bytes is ever
    buffered. The frames before a bad one are not lost: a :meth:`feed` that completes good
    frames and then meets a bad one returns the good ones, and the error is raised by the next
    :meth:`feed` (``feed(b"")`` will do; :attr:`error` shows it meanwhile). After the error the
    stream is out of sync and every later :meth:`feed` raises it again.

    With ``max_messages`` a :meth:`feed` returns at most that many messages and keeps the rest
    of the bytes undecoded (no copy): while :attr:`pending`, ``feed(b"")`` returns the next ones.
    A caller that must stay fair to others (one read can hold thousands of frames) handles a
    batch, yields, and goes on.
    """

    __slots__ = ("_buffer", "_error", "_held", "_held_offset", "_max_messages", "_max_payload")

    def __init__(
        self, *, max_frame_size: int = MAX_FRAME_SIZE, max_messages: int | None = None
    ) -> None:
        if max_frame_size < HEADER_SIZE + 12:
            raise ValueError(f"max_frame_size={max_frame_size} cannot hold an Init frame")
        if max_messages is not None and max_messages < 1:
            raise ValueError(f"max_messages={max_messages} must be at least 1")
        self._max_payload = max_frame_size - HEADER_SIZE
        self._max_messages = max_messages
        self._buffer = bytearray()
        # Bytes a feed stopped in at max_messages, and where it stopped.
        self._held: bytes | None = None
        self._held_offset = 0
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded: an incomplete frame, or frames :attr:`pending`."""
        held = 0 if self._held is None else len(self._held) - self._held_offset
        return len(self._buffer) + held

    @property
    def pending(self) -> bool:
        """True when a :meth:`feed` stopped at ``max_messages`` with bytes left: ``feed(b"")``
        goes on with them."""
        return self._held is not None

    @property
    def error(self) -> RemoteProtocolError | None:
        """The :class:`RemoteProtocolError` met so far, or None; once set, :meth:`feed` raises
        it."""
        return self._error

    def fail(self, error: RemoteProtocolError) -> None:
        """Put the stream in ``error`` (found above the framing): every later :meth:`feed`
        raises it."""
        self._error = error

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add received bytes; return every message they complete, in order (at most
        ``max_messages``: see :attr:`pending`).

        Raises :class:`RemoteProtocolError` on a bad frame, unless good frames came before it
        in ``data``: those are returned and the next call raises.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            source = bytes(buffer)
            buffer.clear()
        elif self._held is not None:
            source, offset = self._held, self._held_offset
            self._held = None
            if data:  # more bytes before the held ones were all returned: join them (a copy)
                source, offset = source[offset:] + data, 0
            return self._decode(source, offset)
        elif isinstance(data, bytes):
            # Common case: nothing pending, so frames are cut straight out of ``data``.
            source = data
            # Commonest: exactly one whole APDU frame (one APDU per read, as QEMU sends them).
            if len(source) >= HEADER_SIZE:
                msg_type, reader_id, length = _unpack_header(source)
                if (
                    msg_type == _APDU_TYPE
                    and length == len(source) - HEADER_SIZE
                    and length <= self._max_payload
                ):
                    return [_build_apdu(reader_id, source[HEADER_SIZE:])]
        else:
            source = bytes(data)
        return self._decode(source, 0)

    def _decode(self, source: bytes, offset: int) -> list[Message]:
        end = len(source)
        messages: list[Message] = []
        append = messages.append
        max_payload = self._max_payload
        # Frames are at least HEADER_SIZE bytes, so without a limit the loop always ends at a
        # break; a for over a range costs less per frame than counting down by hand.
        limit = self._max_messages
        turns = (end - offset) // HEADER_SIZE + 1 if limit is None else limit
        try:
            for _ in range(turns):
                if end - offset < HEADER_SIZE:
                    break
                msg_type, reader_id, length = _unpack_header(source, offset)
                start = offset + HEADER_SIZE
                stop = start + length
                if msg_type == _APDU_TYPE and length <= max_payload:
                    if stop > end:
                        break
                    append(_build_apdu(reader_id, source[start:stop]))
                else:
                    _check_header(msg_type, length, max_payload)
                    if stop > end:
                        break
                    append(_DECODERS[msg_type](reader_id, source[start:stop]))
                offset = stop
            else:  # max_messages reached: keep the rest undecoded for the next feed
                if end - offset >= HEADER_SIZE:
                    self._held, self._held_offset = source, offset
                    return messages
        except RemoteProtocolError as error:
            self._error = error
            if messages:
                return messages  # the good frames first; the next feed raises
            raise
        if offset < end:
            self._buffer += memoryview(source)[offset:]
        return messages
