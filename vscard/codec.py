"""Sans-IO codec: messages to bytes with :func:`encode`, bytes to messages with :class:`Decoder`."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from .constants import HEADER_SIZE, MAX_FRAME_SIZE, VSCARD_MAGIC, ErrorCode, MessageType
from .errors import ProtocolError
from .messages import (
    APDU,
    ATR,
    CardRemove,
    Error,
    Flush,
    FlushComplete,
    Init,
    Message,
    ReaderAdd,
    ReaderRemove,
)

_HEADER: Final = struct.Struct(">III")
_U32: Final = struct.Struct(">I")
_INIT_FIXED: Final = struct.Struct(">4sI")

# Exact payload sizes of the fixed-size messages; Init is checked on its own (12 + 4n).
_FIXED_LENGTH: Final[dict[int, int]] = {
    MessageType.ERROR: 4,
    MessageType.READER_REMOVE: 0,
    MessageType.CARD_REMOVE: 0,
    MessageType.FLUSH: 0,
    MessageType.FLUSH_COMPLETE: 0,
}
_APDU_TYPE: Final = int(MessageType.APDU)
_ERROR_CODES: Final = {code.value: code for code in ErrorCode}
_CLASS_NAMES: Final[dict[int, str]] = {
    cls.TYPE: cls.__name__
    for cls in (Init, Error, ReaderAdd, ReaderRemove, ATR, CardRemove, APDU, Flush, FlushComplete)
}


def encode(message: Message, *, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """Return the wire bytes of ``message``: its 12-byte header followed by the payload.

    Raises :class:`ValueError` when the frame would exceed ``max_frame_size`` (QEMU's
    65,536 bytes by default: a bigger frame wedges QEMU's chardev for good).
    """
    payload: bytes
    if isinstance(message, APDU):
        payload = message.data
    elif isinstance(message, Error):
        payload = _U32.pack(message.code)
    elif isinstance(message, ATR):
        payload = message.atr
    elif isinstance(message, Init):
        payload = _INIT_FIXED.pack(VSCARD_MAGIC, message.version) + struct.pack(
            f">{len(message.capabilities)}I", *message.capabilities
        )
    elif isinstance(message, ReaderAdd):
        payload = message.name.encode()
    else:
        payload = b""
    if HEADER_SIZE + len(payload) > max_frame_size:
        raise ValueError(
            f"{type(message).__name__} frame of {HEADER_SIZE + len(payload)} bytes exceeds "
            f"max_frame_size={max_frame_size}"
        )
    return _HEADER.pack(message.TYPE, message.reader_id, len(payload)) + payload


def _decode_init(reader_id: int, payload: bytes) -> Init:
    magic, version = _INIT_FIXED.unpack_from(payload)
    if magic != VSCARD_MAGIC:
        raise ProtocolError("wrong Init magic", field="Init.magic", value=magic)
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


_DECODERS: Final[dict[int, Callable[[int, bytes], Message]]] = {
    int(MessageType.INIT): _decode_init,
    int(MessageType.ERROR): _decode_error,
    int(MessageType.READER_ADD): _decode_reader_add,
    int(MessageType.READER_REMOVE): lambda reader_id, _: ReaderRemove(reader_id),
    int(MessageType.ATR): ATR,
    int(MessageType.CARD_REMOVE): lambda reader_id, _: CardRemove(reader_id),
    int(MessageType.APDU): APDU,
    int(MessageType.FLUSH): lambda reader_id, _: Flush(reader_id),
    int(MessageType.FLUSH_COMPLETE): lambda reader_id, _: FlushComplete(reader_id),
}


def _check_header(msg_type: int, length: int, max_payload: int) -> None:
    if msg_type not in _DECODERS:
        raise ProtocolError("unknown message type", field="header.type", value=msg_type)
    if length > max_payload:
        raise ProtocolError(
            f"frame exceeds max_frame_size={max_payload + HEADER_SIZE}",
            field="header.length",
            value=length,
        )
    expected = _FIXED_LENGTH.get(msg_type)
    if expected is not None and length != expected:
        name = _CLASS_NAMES[msg_type]
        raise ProtocolError(
            f"{name} payload must be {expected} bytes", field=f"{name}.length", value=length
        )
    if msg_type == MessageType.INIT and (length < 12 or length % 4):
        raise ProtocolError(
            "Init payload must be magic, version and one or more u32 capability words",
            field="Init.length",
            value=length,
        )


class Decoder:
    """Turns a byte stream, split anywhere, into messages.

    A frame is checked as soon as its header is in: an unknown type, a length above
    ``max_frame_size`` or a wrong size for a fixed-size message raises :class:`ProtocolError`
    at once, so at most one frame's worth of bytes is ever buffered. After a
    :class:`ProtocolError` the stream is out of sync and every later :meth:`feed` raises it again.
    """

    __slots__ = ("_buffer", "_error", "_max_payload")

    def __init__(self, *, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if max_frame_size < HEADER_SIZE + 12:
            raise ValueError(f"max_frame_size={max_frame_size} cannot hold an Init frame")
        self._max_payload = max_frame_size - HEADER_SIZE
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held until the rest arrives."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add received bytes; return every message they complete, in order."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            source = bytes(buffer)
            buffer.clear()
        elif isinstance(data, bytes):
            # Common case: nothing pending, so frames are cut straight out of ``data``.
            source = data
        else:
            source = bytes(data)
        end = len(source)
        offset = 0
        messages: list[Message] = []
        max_payload = self._max_payload
        try:
            while end - offset >= HEADER_SIZE:
                msg_type, reader_id, length = _HEADER.unpack_from(source, offset)
                if msg_type != _APDU_TYPE or length > max_payload:
                    _check_header(msg_type, length, max_payload)
                start = offset + HEADER_SIZE
                if end - start < length:
                    break
                offset = start + length
                messages.append(_DECODERS[msg_type](reader_id, source[start:offset]))
        except ProtocolError as error:
            self._error = error
            raise
        if offset < end:
            buffer += memoryview(source)[offset:]
        return messages
