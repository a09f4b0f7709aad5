"""Access control rules (GSC-IS 2.1 §3.3, §5.3.3.5): which condition guards which command.

Every CAC applet declares the rules it really enforces, and the ACA publishes them. This card
needs three: always, never, and "after the PIN".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class ACRType(enum.IntEnum):
    """GSC-IS 2.1 Table 3-2: the kinds of access control rule."""

    ALWAYS = 0x00
    NEVER = 0x01
    XAUTH = 0x02
    XAUTH_OR_PIN = 0x03
    SECURE_CHANNEL_GP = 0x04
    PIN_ALWAYS = 0x05
    PIN = 0x06
    XAUTH_THEN_PIN = 0x07
    UPDATE_ONCE = 0x08
    PIN_THEN_XAUTH = 0x09
    SECURE_CHANNEL_ISO = 0x0B
    XAUTH_AND_PIN = 0x0C


class ACRID(enum.IntEnum):
    """The rules in this card's ACR table, by identifier."""

    ALWAYS = 0x00
    NEVER = 0x01
    PIN = 0x06


#: Access method provider id of the PIN (served by the ACA).
AMP_PIN: Final = 0x1E
#: The card's only PIN reference.
PIN_KEY_REFERENCE: Final = 0x00
#: The object id under which an applet lists rules for commands that name no object.
APPLET_WIDE: Final = b"\xff\xff"

# Configuration bits of an INS entry: which of P1, P2 and the first data byte follow.
_CONFIG_P1: Final = 0x01
_CONFIG_P2: Final = 0x02
_CONFIG_DATA1: Final = 0x04


@dataclass(frozen=True, slots=True)
class ACR:
    """One ACR table entry: an identifier, its type and the access methods that satisfy it."""

    acrid: int
    acr_type: ACRType
    #: ``(access method provider id, key id or reference)`` pairs.
    methods: tuple[tuple[int, int], ...] = ()

    def encode(self) -> bytes:
        body = bytes((self.acrid, self.acr_type, len(self.methods)))
        return body + b"".join(bytes(method) for method in self.methods)


#: This card's ACR table.
ACR_TABLE: Final = (
    ACR(ACRID.ALWAYS, ACRType.ALWAYS),
    ACR(ACRID.NEVER, ACRType.NEVER),
    ACR(ACRID.PIN, ACRType.PIN, ((AMP_PIN, PIN_KEY_REFERENCE),)),
)


@dataclass(frozen=True, slots=True)
class AccessRule:
    """The rule guarding one instruction, optionally narrowed by P1, P2 or the first data byte."""

    ins: int
    acrid: int
    p1: int | None = None
    p2: int | None = None
    data1: int | None = None

    def encode(self) -> bytes:
        config = 0
        extra = b""
        for bit, value in (
            (_CONFIG_P1, self.p1),
            (_CONFIG_P2, self.p2),
            (_CONFIG_DATA1, self.data1),
        ):
            if value is not None:
                config |= bit
                extra += bytes((value,))
        return bytes((self.ins, config)) + extra + bytes((self.acrid,))


@dataclass(frozen=True, slots=True)
class ObjectRules:
    """The rules of one object (or, with :data:`APPLET_WIDE`, of the whole applet)."""

    object_id: bytes
    rules: tuple[AccessRule, ...]

    def encode(self) -> bytes:
        """Object id followed by each rule: the value of a Card Object ACR (tag 82)."""
        return self.object_id + b"".join(rule.encode() for rule in self.rules)
