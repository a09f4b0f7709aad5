"""Read-ahead between our two daemons: the card's answers to the reads a guest sends next.

Over a WAN every APDU is a round trip. Some reads come in runs that the answer before them
foretells, and read nothing but the card's data:

* a short read answered ``6Cxx`` (wrong Le, ISO/IEC 7816-4 §5.1.3) comes again with Le = xx,
  as T=0 requires (ISO/IEC 7816-3, case 2 procedure bytes) and OpenSC's ``apdu.c``
  (``sc_get_response``'s caller, ``sc_transmit``) does under either protocol;
* a CAC READ BUFFER of a buffer's 2-byte length (GSC-IS 2.1; offset 0, 2 bytes) comes before
  reads of the rest of that buffer in 240-byte pieces, and a T-buffer's before its object's
  V-buffer's (OpenSC's ``card-cac.c``: ``cac_read_file``, ``CAC_MAX_CHUNK_SIZE``, called by
  ``cac_read_binary`` for the T-buffer and then the V-buffer);
* a GET DATA answered with its first Ne bytes and ``61xx`` (more than Ne; T=1 response
  chaining) is asked again whole, Le = the object's length, 256 at most (OpenSC's
  ``card-piv.c`` reads 8 bytes of an object for its length, then the object);
* a CAC GET PROPERTIES of the selected object comes before the read of its T-buffer's length
  (``cac_select_file`` asks the properties, ``cac_read_binary`` reads next), which is asked as
  OpenSC's ``cac_apdu_io`` asks it: Le = 2 under T=1, and no Le under T=0, where OpenSC's
  ``apdu.c`` sends a case 4 command as case 3 and fetches the data with GET RESPONSE. This one
  needs the protocol the reader runs (:class:`Planner`'s ``protocol``).

The client (next to the card) sends such commands to the card right after the guest's, with
:class:`Planner`, and sends the host each answer as a ReadAhead before the guest's response;
the host answers from them with :class:`Lookahead` while the guest's commands match one byte
for byte, and drops them all at any other command, a reset or a removal (the command then goes
to the card). Only commands that change nothing on the card are read ahead (:func:`reads_only`),
so the card is in the state it would be in without them whatever the guest sends next, and a
hit answers what the card would have answered. Both sides must announce
:attr:`~vscard.Capability.READ_AHEAD`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from cardfloor.iso7816.apdu import (
    SHORT_MAX,
    APDUFormatError,
    CommandAPDU,
    StatusWord,
    instruction,
    plain_class,
)
from cardfloor.iso7816.instructions import INS_GET_DATA, INS_GET_DATA_ODD

from .messages import ReadAhead

#: ReadAheads one response may bring at most: a 4 KiB CAC object read 240 bytes at a time
#: takes 20 (OpenSC's ``CAC_MAX_SIZE`` is 4096).
MAX_READ_AHEAD: Final = 32
#: Their payload bytes at most (:attr:`ReadAhead.size`), what a host keeps per reader.
MAX_READ_AHEAD_BYTES: Final = 16384

#: GSC-IS READ BUFFER and GET PROPERTIES (CAC applets).
INS_READ_BUFFER: Final = 0x52
INS_GET_PROPERTIES: Final = 0x56
INS_READ_BINARY: Final = 0xB0
#: READ BINARY P1 bit 8: P1 names a short EF identifier, which selects that EF.
_P1_SHORT_EF: Final = 0x80
#: GET PROPERTIES P1: every property of the selected object.
_PROPERTIES_ALL: Final = 0x01
#: READ BUFFER's first data byte: the T-buffer or the V-buffer.
_TAG_BUFFER: Final = 0x01
_VALUE_BUFFER: Final = 0x02
#: What OpenSC's CAC driver asks of a buffer per READ BUFFER (``CAC_MAX_CHUNK_SIZE``).
CAC_CHUNK: Final = 240
#: A buffer's length prefix: 2 bytes, least significant first.
_LENGTH_PREFIX: Final = 2

_SW_SUCCESS: Final = int(StatusWord.SUCCESS)
_SW1_WRONG_LE: Final = StatusWord.WRONG_LE >> 8
_SW1_BYTES_REMAINING: Final = StatusWord.BYTES_REMAINING >> 8
_READS: Final = frozenset({INS_READ_BUFFER, INS_GET_PROPERTIES, INS_GET_DATA, INS_GET_DATA_ODD})
#: Instructions whose success foretells a read (:func:`foreseeable`).
_FORETELLING: Final = frozenset({INS_READ_BUFFER, INS_GET_PROPERTIES})
#: Reads of a whole data object, asked again whole when cut at Ne.
_DATA_OBJECT_READS: Final = frozenset({INS_GET_DATA, INS_GET_DATA_ODD})


def reads_only(command: CommandAPDU) -> bool:
    """Whether ``command`` only reads: sending it early, or once more, changes nothing on the
    card. GET DATA, READ BINARY without a short EF identifier (which would select the EF),
    and the CAC applets' READ BUFFER and GET PROPERTIES; never a chained command or one with
    secure messaging (its class bits say so), whose repetition the card would not take as
    the same."""
    cla = command.cla
    if cla < 0x80 and plain_class(cla) != cla:
        return False
    ins = command.ins
    return ins in _READS or (ins == INS_READ_BINARY and not command.p1 & _P1_SHORT_EF)


def foreseeable(command: bytes, response: bytes) -> bool:
    """A cheap first test, without parsing: whether :meth:`Planner.start` may find a command
    to read ahead after ``response`` to ``command`` (False: it will not)."""
    if len(response) < 2:
        return False
    sw1 = response[-2]
    if sw1 == _SW1_WRONG_LE:
        return True
    ins = instruction(command)
    if sw1 == _SW1_BYTES_REMAINING:
        return ins in _FORETELLING or ins in _DATA_OBJECT_READS
    return sw1 == 0x90 and ins in _FORETELLING


def _parse(raw: bytes) -> CommandAPDU | None:
    try:
        return CommandAPDU.from_bytes(raw)
    except APDUFormatError:
        return None


class Planner:
    """The client's side: which command to read ahead next, within bounds.

    :meth:`start` takes the guest's command and the card's whole answer to it (the data of
    every GET RESPONSE and the last status word, as one response) and returns the first
    command to read ahead, or None. :meth:`take` counts each ReadAhead before it is sent
    (False: it would pass :data:`MAX_READ_AHEAD` or ``max_bytes``; send nothing more), and
    :meth:`step` takes its whole answer and returns the next command, or None when done.
    """

    __slots__ = (
        "_bytes",
        "_chunk",
        "_count",
        "_end",
        "_kind",
        "_max_bytes",
        "_max_count",
        "_protocol",
    )

    def __init__(
        self,
        *,
        max_count: int = MAX_READ_AHEAD,
        max_bytes: int = MAX_READ_AHEAD_BYTES,
        chunk: int = CAC_CHUNK,
        protocol: int | None = None,
    ) -> None:
        if not 1 <= max_count <= MAX_READ_AHEAD:
            raise ValueError(f"max_count={max_count} must be 1..{MAX_READ_AHEAD}")
        if not 1 <= max_bytes <= MAX_READ_AHEAD_BYTES:
            raise ValueError(f"max_bytes={max_bytes} must be 1..{MAX_READ_AHEAD_BYTES}")
        if not 1 <= chunk <= SHORT_MAX - 1:
            raise ValueError(f"chunk={chunk} must be 1..{SHORT_MAX - 1}")
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._chunk = chunk
        self._protocol = protocol
        self._count = 0
        self._bytes = 0
        # The READ BUFFER run under way: the buffer read (1 T, 2 V) and where it ends.
        self._kind = 0
        self._end = 0

    def start(self, command: bytes, answer: bytes) -> bytes | None:
        """The first command to read ahead after ``answer`` to the guest's ``command``."""
        self._count = self._bytes = 0
        self._kind = self._end = 0
        return self._next(command, answer)

    def take(self, entry: ReadAhead) -> bool:
        """Count ``entry`` in; False (and nothing counted) when it would pass a bound."""
        size = self._bytes + entry.size
        if self._count >= self._max_count or size > self._max_bytes:
            return False
        self._count += 1
        self._bytes = size
        return True

    def step(self, command: bytes, answer: bytes) -> bytes | None:
        """The next command after ``answer`` to the read-ahead ``command``, or None."""
        return self._next(command, answer)

    def _next(self, raw: bytes, answer: bytes) -> bytes | None:
        if len(answer) < 2 or self._count >= self._max_count:
            return None
        command = _parse(raw)
        if command is None or not reads_only(command):
            return None
        sw = int.from_bytes(answer[-2:], "big")
        if sw >> 8 == _SW1_WRONG_LE:
            return _with_le(command, sw & 0xFF or SHORT_MAX)
        if sw != _SW_SUCCESS:
            return None
        ins = command.ins
        if ins in _DATA_OBJECT_READS:
            size = len(answer) - 2
            if command.le is None or size <= command.le:
                return None  # the guest has it all
            return _with_le(command, min(size, SHORT_MAX))
        if command.ins == INS_READ_BUFFER:
            return self._next_read(command, answer[:-2])
        if command.ins == INS_GET_PROPERTIES and command.p1 == _PROPERTIES_ALL:
            return self._first_read(command)
        return None

    def _first_read(self, properties: CommandAPDU) -> bytes | None:
        """The T-buffer's length read after the object's ``properties``, when the protocol
        says how it is asked (see the module docstring)."""
        if self._protocol is None:
            return None
        le = None if self._protocol == 0 else _LENGTH_PREFIX
        length = bytes((_TAG_BUFFER, _LENGTH_PREFIX))
        return CommandAPDU(properties.cla, INS_READ_BUFFER, 0, 0, length, le).to_bytes()

    def _next_read(self, command: CommandAPDU, data: bytes) -> bytes | None:
        """The READ BUFFER after ``command`` answered ``data`` (see the module docstring)."""
        if len(command.data) != 2:
            return None
        kind, count = command.data
        if kind not in (_TAG_BUFFER, _VALUE_BUFFER):
            return None
        offset = command.p1 << 8 | command.p2
        if offset == 0 and count == _LENGTH_PREFIX and len(data) == _LENGTH_PREFIX:
            self._kind = kind
            self._end = _LENGTH_PREFIX + int.from_bytes(data, "little")
            offset = _LENGTH_PREFIX
        elif kind == self._kind and offset >= _LENGTH_PREFIX and len(data) == count:
            offset += count
        else:
            return None
        if offset < self._end:
            return _read(command, kind, offset, min(self._end - offset, self._chunk))
        self._kind = self._end = 0
        if kind == _TAG_BUFFER:  # the object's V-buffer next: its length first
            return _read(command, _VALUE_BUFFER, 0, _LENGTH_PREFIX)
        return None


def _with_le(command: CommandAPDU, le: int) -> bytes | None:
    """``command`` again with Le = ``le``: a short command that had another Le."""
    if command.extended or command.le is None or command.le == le:
        return None
    again = CommandAPDU(command.cla, command.ins, command.p1, command.p2, command.data, le)
    return again.to_bytes()


def _read(like: CommandAPDU, kind: int, offset: int, count: int) -> bytes:
    """A READ BUFFER of ``count`` bytes at ``offset``, asked the way ``like`` was: the same
    class, and Le only if it had one (its count when Le was its count)."""
    le = like.le
    if le is not None and le == like.data[1]:
        le = count
    return CommandAPDU(
        like.cla, like.ins, offset >> 8, offset & 0xFF, bytes((kind, count)), le, like.extended
    ).to_bytes()


class Lookahead:
    """The host's side, one per reader: answers a command from the ReadAheads held for it.

    :meth:`hold` keeps the ReadAheads that came with a response; :meth:`answer` returns the
    one whose command is the given command byte for byte, or None after dropping them all
    (that command then goes to the card). A held one answers any number of times, in any
    order: none of them changed the card. Memory: what one response brought, which the
    connection bounds (:data:`MAX_READ_AHEAD`, :data:`MAX_READ_AHEAD_BYTES`).
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[bytes, ReadAhead] = {}

    @property
    def held(self) -> int:
        """How many commands it can answer."""
        return len(self._held)

    def hold(self, entries: Iterable[ReadAhead]) -> None:
        """Keep ``entries`` in place of any held before."""
        self._held = {entry.command: entry for entry in entries}

    def drop(self) -> None:
        """Forget them all (another command, a reset, a removal)."""
        self._held = {}

    def answer(self, command: bytes) -> ReadAhead | None:
        """The ReadAhead for ``command``, or None (all dropped: ``command`` goes to the card)."""
        held = self._held
        if not held:
            return None
        entry = held.get(command)
        if entry is None:
            self._held = {}
        return entry
