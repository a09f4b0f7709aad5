"""SimpleTLV (ISO/IEC 7816-4 §5.2.1, GSC-IS 2.1 §8.4) and the CAC object buffers built from it.

A SimpleTLV tag is one byte, 01 to FE. A length under 255 is one byte; 255 to 65535 is written
``FF`` followed by the length as **little-endian** 16 bits: that is what CAC cards, libcacard
and OpenSC use, where ISO/IEC 7816-4's SimpleTLV would be big-endian.

A CAC object keeps its items in two buffers: the T-buffer holds every tag and length, the
V-buffer every value, in the same order. Each buffer starts with its content length as two
little-endian bytes that do not count themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

#: Lengths from this value up are written ``FF lo hi``.
LONG_FORM: Final = 0xFF
MAX_LENGTH: Final = 0xFFFF


class TLVError(ValueError):
    """Bytes that are not SimpleTLV; ``field`` says which part, ``value`` what it held."""

    def __init__(self, reason: str, *, field: str, value: int) -> None:
        super().__init__(f"{reason}: {field}={value}")
        self.reason = reason
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class TLV:
    """One SimpleTLV item."""

    tag: int
    value: bytes = b""

    def __post_init__(self) -> None:
        if not 0x01 <= self.tag <= 0xFE:
            raise ValueError(f"a SimpleTLV tag is 0x01..0xFE, got {self.tag:#04x}")
        if len(self.value) > MAX_LENGTH:
            raise ValueError(f"a SimpleTLV value holds at most {MAX_LENGTH} bytes")

    def to_bytes(self) -> bytes:
        return encode_header(self.tag, len(self.value)) + self.value


def encode_header(tag: int, length: int) -> bytes:
    """The tag and length bytes of an item."""
    if length < LONG_FORM:
        return bytes((tag, length))
    return bytes((tag, LONG_FORM)) + length.to_bytes(2, "little")


def encode(items: Iterable[TLV]) -> bytes:
    return b"".join(item.to_bytes() for item in items)


def _read_header(data: bytes, offset: int) -> tuple[int, int, int]:
    """Return tag, length and the offset after the header at ``offset``."""
    end = len(data)
    tag = data[offset]
    if tag in (0x00, 0xFF):
        raise TLVError("invalid SimpleTLV tag", field="tag", value=tag)
    if offset + 1 >= end:
        raise TLVError("SimpleTLV header cut after the tag", field="offset", value=offset)
    length = data[offset + 1]
    if length != LONG_FORM:
        return tag, length, offset + 2
    if offset + 4 > end:
        raise TLVError("SimpleTLV long length cut short", field="offset", value=offset)
    return tag, int.from_bytes(data[offset + 2 : offset + 4], "little"), offset + 4


def iter_headers(data: bytes) -> Iterator[tuple[int, int]]:
    """Tags and lengths of a T-buffer's content, which carries no values."""
    offset = 0
    while offset < len(data):
        tag, length, offset = _read_header(data, offset)
        yield tag, length


def decode(data: bytes) -> list[TLV]:
    """Every item of ``data``; raise :class:`TLVError` unless it is exactly a SimpleTLV list."""
    items: list[TLV] = []
    offset = 0
    while offset < len(data):
        tag, length, start = _read_header(data, offset)
        offset = start + length
        if offset > len(data):
            raise TLVError("SimpleTLV value runs past the end", field="length", value=length)
        items.append(TLV(tag, data[start:offset]))
    return items


def _with_length_prefix(content: bytes) -> bytes:
    if len(content) > MAX_LENGTH:
        raise ValueError(f"a CAC buffer holds at most {MAX_LENGTH} bytes, got {len(content)}")
    return len(content).to_bytes(2, "little") + content


def split_buffers(items: Iterable[TLV]) -> tuple[bytes, bytes]:
    """The T-buffer and V-buffer of an object holding ``items``, each with its length prefix."""
    items = list(items)
    tags = b"".join(encode_header(item.tag, len(item.value)) for item in items)
    values = b"".join(item.value for item in items)
    return _with_length_prefix(tags), _with_length_prefix(values)


def join_buffers(tag_buffer: bytes, value_buffer: bytes) -> list[TLV]:
    """The items of an object from its two buffers (with their length prefixes)."""
    for name, buffer in (("T-buffer", tag_buffer), ("V-buffer", value_buffer)):
        if len(buffer) < 2 or int.from_bytes(buffer[:2], "little") != len(buffer) - 2:
            raise TLVError(f"{name} length prefix is wrong", field=name, value=len(buffer))
    values = value_buffer[2:]
    items: list[TLV] = []
    offset = 0
    for tag, length in iter_headers(tag_buffer[2:]):
        if offset + length > len(values):
            raise TLVError("V-buffer shorter than the T-buffer says", field="length", value=length)
        items.append(TLV(tag, values[offset : offset + length]))
        offset += length
    if offset != len(values):
        raise TLVError("V-buffer longer than the T-buffer says", field="V-buffer", value=offset)
    return items


def ber_tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV item (ISO/IEC 7816-4 §5.2.2) with a one- or two-byte ``tag`` and a definite
    length: what FCI templates and GlobalPlatform data use."""
    tag_bytes = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    size = len(value)
    if size < 0x80:
        length = bytes((size,))
    elif size <= 0xFF:
        length = bytes((0x81, size))
    elif size <= MAX_LENGTH:
        length = b"\x82" + size.to_bytes(2, "big")
    else:
        raise ValueError(f"BER-TLV value of {size} bytes is too long for this card")
    return tag_bytes + length + value
