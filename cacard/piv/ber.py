"""BER-TLV reading for PIV data (ISO/IEC 7816-4 §5.2.2, SP 800-73-4 Part 2 §3): tags of one to
three bytes, definite lengths of up to three bytes.

Writing goes through :func:`cacard.tlv.ber_tlv`; this module adds the reader and the typed error
that PIV parsers raise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..tlv import ber_tlv

#: The longest tag a PIV structure uses is three bytes (``5FC107`` in a GET DATA tag list).
MAX_TAG_BYTES: Final = 3


class PIVFormatError(ValueError):
    """Bytes that are not the PIV structure expected; ``field`` says which part, ``value`` what
    it held."""

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        shown = value.hex() if isinstance(value, bytes) else repr(value)
        super().__init__(f"{reason}: {field}={shown}")
        self.reason = reason
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class BerTLV:
    """One BER-TLV item; ``value`` is its content (for a constructed tag, more items)."""

    tag: int
    value: bytes

    def to_bytes(self) -> bytes:
        return ber_tlv(self.tag, self.value)


def _read_tag(data: bytes, offset: int) -> tuple[int, int]:
    first = data[offset]
    if first in (0x00, 0xFF):
        # ISO 7816-4 lets 00/FF pad between items; no PIV structure does, so they mean garbage.
        raise PIVFormatError("invalid BER-TLV tag", field="tag", value=first)
    tag, offset = first, offset + 1
    if first & 0x1F != 0x1F:
        return tag, offset
    while True:
        if offset >= len(data):
            raise PIVFormatError("BER-TLV tag cut short", field="tag", value=tag)
        byte = data[offset]
        tag, offset = (tag << 8) | byte, offset + 1
        if tag.bit_length() > 8 * MAX_TAG_BYTES:
            raise PIVFormatError("BER-TLV tag longer than three bytes", field="tag", value=tag)
        if not byte & 0x80:
            return tag, offset


def _read_length(data: bytes, offset: int) -> tuple[int, int]:
    if offset >= len(data):
        raise PIVFormatError("BER-TLV length missing", field="offset", value=offset)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    if not 1 <= size <= 3:
        raise PIVFormatError("BER-TLV length form not supported", field="length", value=first)
    end = offset + 1 + size
    if end > len(data):
        raise PIVFormatError("BER-TLV length cut short", field="offset", value=offset)
    return int.from_bytes(data[offset + 1 : end], "big"), end


def _items(data: bytes) -> list[tuple[int, bytes]]:
    """Every ``(tag, value)`` of ``data``; raise :class:`PIVFormatError` unless it is exactly
    BER-TLV. Plain tuples: this runs on every GENERAL AUTHENTICATE (twice), where building
    an object per item was a measurable part of a P-256 signature's time."""
    items: list[tuple[int, bytes]] = []
    offset, size = 0, len(data)
    while offset < size:
        first = data[offset]
        if first & 0x1F != 0x1F and first not in (0x00, 0xFF) and offset + 1 < size:
            # The common case inline: a one-byte tag (and a short length, just below).
            tag, offset = first, offset + 1
        else:
            tag, offset = _read_tag(data, offset)
        length = data[offset] if offset < size else 0x80
        if length < 0x80:
            offset += 1
        else:
            length, offset = _read_length(data, offset)
        end = offset + length
        if end > size:
            raise PIVFormatError("BER-TLV value runs past the end", field="length", value=length)
        items.append((tag, data[offset:end]))
        offset = end
    return items


def decode(data: bytes) -> list[BerTLV]:
    """Every item of ``data``; raise :class:`PIVFormatError` unless it is exactly BER-TLV."""
    return [BerTLV(tag, value) for tag, value in _items(data)]


def decode_one(data: bytes, tag: int) -> bytes:
    """The content of ``data``, which must be exactly one item tagged ``tag``."""
    items = _items(data)
    if len(items) != 1:
        raise PIVFormatError(f"expected one item tagged {tag:X}", field="items", value=len(items))
    found, value = items[0]
    if found != tag:
        raise PIVFormatError(f"expected tag {tag:X}", field="tag", value=found)
    return value


def decode_fields(data: bytes, *, where: str) -> dict[int, bytes]:
    """The items of ``data`` by tag; a repeated tag is an error. Tags the caller does not know
    stay in the result for it to ignore: newer cards may carry them."""
    fields: dict[int, bytes] = {}
    for tag, value in _items(data):
        if tag in fields:
            raise PIVFormatError(f"{where}: tag repeated", field="tag", value=tag)
        fields[tag] = value
    return fields


def decode_template(data: bytes, tag: int, *, where: str) -> dict[int, bytes]:
    """``decode_fields(decode_one(data, tag))`` in one call: every GENERAL AUTHENTICATE
    parses its template this way."""
    fields: dict[int, bytes] = {}
    for item_tag, value in _items(decode_one(data, tag)):
        if item_tag in fields:
            raise PIVFormatError(f"{where}: tag repeated", field="tag", value=item_tag)
        fields[item_tag] = value
    return fields


def require(fields: Mapping[int, bytes], tag: int, *, where: str) -> bytes:
    """``fields[tag]``, or a :class:`PIVFormatError` naming the missing tag."""
    try:
        return fields[tag]
    except KeyError:
        raise PIVFormatError(f"{where}: tag missing", field="tag", value=tag) from None


def encode(items: Iterable[tuple[int, bytes]]) -> bytes:
    """``(tag, value)`` pairs as consecutive BER-TLV items."""
    return b"".join(ber_tlv(tag, value) for tag, value in items)
