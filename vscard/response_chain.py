"""GET RESPONSE prefetch between our two daemons: sans-IO, bytes in, decisions out.

A card that has more data than one response carries answers ``61xx`` (ISO/IEC 7816-4 §5.3.4)
and waits for GET RESPONSE. Over a WAN each GET RESPONSE is a round trip, so the client (next
to the card) reads the rest at once with :class:`Prefetch` and sends it as one ResponseChain;
the host answers the guest's GET RESPONSEs from it with :class:`ChainHolder`. Both sides must
announce :attr:`~vscard.Capability.RESPONSE_CHAIN`.

The card drops its pending data at the next command whatever it is, so reading them early
changes nothing for a command that is not GET RESPONSE: the holder drops the chain at any such
command and forwards it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardfloor.iso7816.apdu import (
    EXTENDED_MAX,
    SHORT_MAX,
    APDUFormatError,
    CommandAPDU,
    StatusWord,
    bytes_remaining,
    get_response_class,
    logical_channel,
    more_remaining,
)
from cardfloor.iso7816.instructions import INS_GET_RESPONSE

from .constants import HEADER_SIZE, MAX_FRAME_SIZE

_SW1_BYTES_REMAINING: Final = StatusWord.BYTES_REMAINING >> 8

#: GET RESPONSEs a prefetch sends at most: a 3 KiB certificate takes 12 at 256 bytes each.
MAX_PREFETCH_STEPS: Final = 64
#: Chain bytes at most: what one ResponseChain frame carries beside its status word.
MAX_CHAIN_BYTES: Final = MAX_FRAME_SIZE - HEADER_SIZE - 2


def _parse(raw: bytes) -> CommandAPDU | None:
    try:
        return CommandAPDU.from_bytes(raw)
    except APDUFormatError:
        return None


def more_to_get(response: bytes) -> bool:
    """Whether ``response`` ends in ``61xx``: the card holds more of it for GET RESPONSE."""
    return len(response) >= 2 and response[-2] == _SW1_BYTES_REMAINING  # no int built per APDU


def _remaining_sw(response: bytes) -> int | None:
    """SW2 of a ``61xx`` response, or None for any other status."""
    return response[-1] if more_to_get(response) else None


class Prefetch:
    """The client's side: read a ``61xx`` answer's data ahead, within bounds.

    :meth:`start` takes the command and the card's response and returns the first GET
    RESPONSE to send (None: nothing to prefetch); :meth:`step` takes each answer and returns
    the next command, or None when done. :attr:`data` and :attr:`sw` then hold the chain (None
    when nothing was read). Past ``max_steps`` GET RESPONSEs or ``max_bytes`` the prefetch
    stops early: the chain ends with the card's own ``61xx`` and the host's later GET RESPONSEs
    reach the card, which still holds the rest.
    """

    __slots__ = ("_cla", "_data", "_max_bytes", "_max_steps", "_steps", "sw")

    def __init__(
        self, *, max_steps: int = MAX_PREFETCH_STEPS, max_bytes: int = MAX_CHAIN_BYTES
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps} must be at least 1")
        if not 0 < max_bytes <= MAX_CHAIN_BYTES:
            raise ValueError(f"max_bytes={max_bytes} must be 1..{MAX_CHAIN_BYTES}")
        self._max_steps = max_steps
        self._max_bytes = max_bytes
        self._cla = 0
        self._steps = 0
        self._data = bytearray()
        self.sw: int | None = None
        """The chain's final status word once a GET RESPONSE was answered."""

    @property
    def data(self) -> bytes:
        """The bytes read ahead so far."""
        return bytes(self._data)

    def start(self, command: bytes, response: bytes) -> bytes | None:
        """The first GET RESPONSE for ``response`` to ``command``, or None."""
        self._steps = 0
        self._data.clear()
        self.sw = None
        parsed = _parse(command)
        if parsed is None:
            return None
        self._cla = get_response_class(parsed.cla)
        return self._next(_remaining_sw(response))

    def step(self, response: bytes) -> bytes | None:
        """Take the card's answer to the last GET RESPONSE; the next one, or None when done.

        An answer that is not data with a status word (shorter than 2 bytes) ends the chain
        with no status: :attr:`sw` stays None and nothing is sent to the host.
        """
        if len(response) < 2:
            self.sw = None
            self._data.clear()
            return None
        self._data += response[:-2]
        self.sw = int.from_bytes(response[-2:], "big")
        if len(self._data) > self._max_bytes:  # a card that sent more than it announced
            self.sw = None
            self._data.clear()
            return None
        return self._next(_remaining_sw(response))

    def _next(self, sw2: int | None) -> bytes | None:
        if sw2 is None or self._steps >= self._max_steps:
            return None
        if len(self._data) + (sw2 or SHORT_MAX) > self._max_bytes:
            return None
        self._steps += 1
        return bytes((self._cla, INS_GET_RESPONSE, 0, 0, sw2))


@dataclass(frozen=True, slots=True)
class Continue:
    """A GET RESPONSE that wants more than a chain cut short at its bound holds: send
    ``command`` to the card (it still has the rest) and put ``prefix`` before its answer."""

    prefix: bytes
    command: bytes


class ChainHolder:
    """The host's side, one per reader: answers GET RESPONSE from the chain the client sent.

    :meth:`hold` keeps a chain after the response that announced it; :meth:`answer` returns
    the local answer to a command, or None after dropping the chain (the command then goes to
    the card). Only a well-formed GET RESPONSE (P1 P2 ``00 00``) on the logical channel of the
    command that produced the chain is answered, with Le honoured as the card would (Le bytes
    and ``61xx`` for the rest; what is left and the final status when Le reaches it; no Le
    means 256). Memory: one chain, at most :data:`MAX_CHAIN_BYTES`.
    """

    __slots__ = ("_channel", "_data", "_offset", "_sw")

    def __init__(self) -> None:
        self._data = b""
        self._offset = 0
        self._sw = 0
        self._channel = -1

    @property
    def held(self) -> int | None:
        """Bytes of chain left, or None when no chain is held."""
        return None if self._channel < 0 else len(self._data) - self._offset

    def drop(self) -> None:
        """Forget the chain (any command but GET RESPONSE, a reset, a removal)."""
        self._data = b""
        self._offset = 0
        self._channel = -1

    def hold(self, command: bytes, data: bytes, sw: int) -> None:
        """Keep ``data`` and the final ``sw`` read ahead for the response to ``command``."""
        if len(data) > MAX_CHAIN_BYTES:
            raise ValueError(f"chain of {len(data)} bytes exceeds {MAX_CHAIN_BYTES}")
        parsed = _parse(command)
        if parsed is None:
            self.drop()
            return
        self._data, self._offset, self._sw = data, 0, sw
        self._channel = logical_channel(parsed.cla)

    def answer(self, command: bytes) -> bytes | Continue | None:
        """The local answer to ``command``; a :class:`Continue` when the card must add to it
        (the chain was cut short and Le asks past its end); None when the chain is dropped and
        ``command`` goes to the card as it is."""
        if self._channel < 0:
            return None
        parsed = _parse(command)
        if (
            parsed is None
            or parsed.ins != INS_GET_RESPONSE
            or parsed.p1
            or parsed.p2
            or parsed.data
            or logical_channel(parsed.cla) != self._channel
        ):
            self.drop()
            return None
        count = SHORT_MAX if parsed.le is None else min(parsed.le, EXTENDED_MAX)
        start = self._offset
        chunk = self._data[start : start + count]
        self._offset = start + len(chunk)
        left = len(self._data) - self._offset
        sw = self._sw
        # A chain cut short ends with the card's own 61xx: the card holds xx more (00: 256 or
        # more), and the guest must hear the total, as the card would have said it.
        card_rest = (sw & 0xFF or SHORT_MAX) if more_remaining(sw) else 0
        if left:
            return chunk + bytes_remaining(left + card_rest).to_bytes(2, "big")
        self.drop()
        if card_rest and count > len(chunk):
            rest = CommandAPDU(
                get_response_class(parsed.cla),
                INS_GET_RESPONSE,
                0,
                0,
                le=count - len(chunk),
                extended=parsed.extended,
            )
            return Continue(chunk, rest.to_bytes())
        return chunk + sw.to_bytes(2, "big")
