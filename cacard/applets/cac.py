"""What every CAC applet does (GSC-IS 2.1 §5.3): objects made of a T-buffer and a V-buffer,
SELECT of an object (P1=02), GET PROPERTIES and READ BUFFER.

Properties objects differ from libcacard's on purpose. OpenSC accepts a TV object (tag 50) or a
PKI object (tag 51) only when it is exactly 17 bytes long, and otherwise treats the object as
unreadable ("Data object read failed"). libcacard's are 14 and 20 bytes. Here every object is
``41`` object id, ``42`` buffer properties and ``43`` PKI properties (all zero for an object
without a key): 17 bytes, so OpenSC can read data objects as well as certificates.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from cardfloor.iso7816.apdu import (
    CommandAPDU,
    Response,
    StatusWord,
    status,
    success,
    wrong_le,
)
from cardfloor.iso7816.instructions import (
    INS_CHANGE_REFERENCE_DATA,
    INS_GET_CHALLENGE,
    INS_MANAGE_CHANNEL,
    INS_SELECT,
    INS_VERIFY,
)

from ..select_commands import SelectForm
from ..tlv import TLV, encode, split_buffers
from .acr import ACRID, APPLET_WIDE, AccessRule, ObjectRules
from .applet import Applet, CardServices, Selection

INS_READ_BUFFER: Final = 0x52
INS_UPDATE_BUFFER: Final = 0x58
INS_GET_PROPERTIES: Final = 0x56

#: SELECT P1 of an object of the applet: ISO/IEC 7816-4's EF under the current DF.
P1_SELECT_OBJECT: Final = SelectForm.EF_UNDER_CURRENT_DF

#: Instructions a CAC applet leaves to the card's ISO/IEC 7816-4 layer.
ISO_INSTRUCTIONS: Final = frozenset(
    {INS_VERIFY, INS_CHANGE_REFERENCE_DATA, INS_GET_CHALLENGE, INS_MANAGE_CHANNEL}
)

#: GSC-IS applet family of CAC applets.
APPLET_FAMILY: Final = 0x10
#: A buffer whose content is SimpleTLV (the first byte of buffer properties).
BUFFER_SIMPLE_TLV: Final = 0x00
#: PKI properties of an object without a key.
NO_KEY: Final = bytes(4)


class BufferType(enum.IntEnum):
    """The first data byte of READ BUFFER."""

    TAG = 0x01
    VALUE = 0x02


class PropertiesTag(enum.IntEnum):
    """Tags of a GET PROPERTIES answer."""

    APPLET_INFORMATION = 0x01
    NUMBER_OF_OBJECTS = 0x40
    TV_OBJECT = 0x50
    PKI_OBJECT = 0x51
    OBJECT_ID = 0x41
    BUFFER_PROPERTIES = 0x42
    PKI_PROPERTIES = 0x43
    # Only in libcacard's undocumented "long" form (P1=40) of a PKI applet.
    LONG_39 = 0x39
    LONG_ACA_AID = 0x3A


class PropertiesP1(enum.IntEnum):
    ALL = 0x01
    BY_TAG = 0x02
    LONG = 0x40


@dataclass(frozen=True, slots=True)
class CardObject:
    """One object of an applet: its id and its two buffers, each with its length prefix.

    ``pki`` is the 4-byte PKI properties value of an object that holds a key.
    """

    object_id: bytes
    tag_buffer: bytes
    value_buffer: bytes
    pki: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.object_id) != 2:
            raise ValueError(f"an object id is 2 bytes, got {self.object_id.hex()}")

    @classmethod
    def from_items(
        cls, object_id: bytes, items: Iterable[TLV], pki: bytes | None = None
    ) -> CardObject:
        tag_buffer, value_buffer = split_buffers(items)
        return cls(object_id, tag_buffer, value_buffer, pki)

    def buffer(self, which: BufferType) -> bytes:
        return self.tag_buffer if which is BufferType.TAG else self.value_buffer

    def properties(self) -> TLV:
        """The object's entry in GET PROPERTIES: always 17 bytes (see the module docstring)."""
        buffers = (
            bytes((BUFFER_SIMPLE_TLV,))
            + len(self.tag_buffer).to_bytes(2, "little")
            + len(self.value_buffer).to_bytes(2, "little")
        )
        body = encode(
            (
                TLV(PropertiesTag.OBJECT_ID, self.object_id),
                TLV(PropertiesTag.BUFFER_PROPERTIES, buffers),
                TLV(PropertiesTag.PKI_PROPERTIES, self.pki or NO_KEY),
            )
        )
        tag = PropertiesTag.PKI_OBJECT if self.pki else PropertiesTag.TV_OBJECT
        return TLV(tag, body)


class CACApplet(Applet):
    """A GSC-IS applet holding zero or more objects."""

    #: Version in the applet information of GET PROPERTIES.
    applet_version: ClassVar[bytes] = bytes.fromhex("02060203")
    #: What UPDATE BUFFER answers: this card's objects are read-only (libcacard's codes).
    update_buffer_status: ClassVar[int] = StatusWord.COMMAND_NOT_ALLOWED

    def __init__(self, aid: bytes, name: str, objects: Sequence[CardObject] = ()) -> None:
        super().__init__(aid, name)
        self.objects = {obj.object_id: obj for obj in objects}
        if len(self.objects) != len(objects):
            raise ValueError(f"{name}: object ids must be unique")

    def select(self) -> Selection:
        return Selection(self, next(iter(self.objects), None))

    # -- what the ACA and the CCC learn about this applet ----------------------------------

    def object_rules(self, object_id: bytes) -> tuple[AccessRule, ...]:
        """The rules guarding one object: anyone reads it, nobody updates it."""
        return (
            AccessRule(INS_READ_BUFFER, ACRID.ALWAYS),
            AccessRule(INS_UPDATE_BUFFER, ACRID.NEVER),
        )

    def access_rules(self) -> list[ObjectRules]:
        """The rules this applet enforces, per object and applet-wide."""
        applet_wide = (
            AccessRule(INS_VERIFY, ACRID.ALWAYS),
            AccessRule(INS_CHANGE_REFERENCE_DATA, ACRID.ALWAYS),
            AccessRule(INS_GET_CHALLENGE, ACRID.ALWAYS),
        )
        objects = [ObjectRules(oid, self.object_rules(oid)) for oid in self.objects]
        return [*objects, ObjectRules(APPLET_WIDE, applet_wide)]

    def properties(self, *, long: bool = False) -> list[TLV]:
        """The top-level items of GET PROPERTIES."""
        info = TLV(PropertiesTag.APPLET_INFORMATION, bytes((APPLET_FAMILY,)) + self.applet_version)
        count = TLV(PropertiesTag.NUMBER_OF_OBJECTS, bytes((len(self.objects),)))
        return [info, count, *(obj.properties() for obj in self.objects.values())]

    # -- commands ----------------------------------------------------------------------------

    def process(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        ins = command.ins
        if ins == INS_SELECT:
            return self._select_object(command, selection)
        if ins == INS_GET_PROPERTIES:
            return self._get_properties(command)
        if ins == INS_READ_BUFFER:
            return self.read_buffer(command, selection)
        if ins == INS_UPDATE_BUFFER:
            return status(self.update_buffer_status)
        if ins in ISO_INSTRUCTIONS:
            return None
        return self.process_other(command, selection, card)

    def process_other(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        """Instructions particular to one kind of applet; the rest is not supported."""
        return status(StatusWord.INS_NOT_SUPPORTED)

    def _select_object(self, command: CommandAPDU, selection: Selection) -> Response:
        if command.p1 != P1_SELECT_OBJECT:
            return status(StatusWord.FUNCTION_NOT_SUPPORTED)
        if len(command.data) != 2:
            return status(StatusWord.DATA_INVALID)
        if command.data not in self.objects:
            return status(StatusWord.FILE_NOT_FOUND)
        selection.object_id = command.data
        selection.chain.clear()
        return status(StatusWord.SUCCESS)

    def _get_properties(self, command: CommandAPDU) -> Response:
        if command.p2 != 0x00:
            return status(StatusWord.INCORRECT_P1_P2)
        if command.p1 in (PropertiesP1.ALL, PropertiesP1.LONG):
            if command.data:
                return status(StatusWord.DATA_INVALID)
            data = encode(self.properties(long=command.p1 == PropertiesP1.LONG))
        elif command.p1 == PropertiesP1.BY_TAG:
            if not command.data:
                return status(StatusWord.DATA_INVALID)
            items: dict[int, TLV] = {}
            for item in self.properties(long=True):
                items.setdefault(item.tag, item)
            wanted = [items.get(tag) for tag in command.data]
            if None in wanted:
                return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
            data = b"".join(item.to_bytes() for item in wanted if item is not None)
        else:
            return status(StatusWord.INCORRECT_P1_P2)
        # libcacard and real cards answer a short Le that is too large with 6Cxx (the exact Le);
        # OpenSC's reader layer resends the command with it.
        if command.le is not None and not command.extended and command.le > len(data):
            return status(wrong_le(len(data)))
        return success(data)

    def read_buffer(self, command: CommandAPDU, selection: Selection) -> Response:
        """READ BUFFER ``xx 52 <offset> 02 <01=T|02=V> <count>``; the offset counts the
        2-byte length prefix."""
        if len(command.data) != 2 or command.data[0] not in BufferType._value2member_map_:
            return status(StatusWord.DATA_INVALID)
        which = BufferType(command.data[0])
        count = command.data[1]
        obj = self.objects.get(selection.object_id) if selection.object_id else None
        buffer = obj.buffer(which) if obj is not None else b""
        offset = command.p1 << 8 | command.p2
        if offset > len(buffer):
            return status(StatusWord.INCORRECT_P1_P2)
        return success(buffer[offset : offset + count])
