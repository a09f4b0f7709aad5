"""One shape for the messages of every codec's typed errors: ``reason: field=value``."""

from __future__ import annotations


def field_message(reason: str, field: str, value: object, *, hex_digits: int = 8) -> str:
    """``reason: field=value`` as every codec's protocol error reads: integers in hex (at least
    ``hex_digits`` digits), bytes as spaced hex."""
    shown = (
        f"0x{value:0{hex_digits}X}"
        if isinstance(value, int) and not isinstance(value, bool)
        else value
    )
    if isinstance(shown, bytes | bytearray | memoryview):
        shown = bytes(shown).hex(" ").upper() or "(empty)"
    return f"{reason}: {field}={shown}"
