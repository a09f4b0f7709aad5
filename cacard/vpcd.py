"""The vpcd bridge: a card served to a local pcscd through vsmartcard's vpcd reader driver, so
every PC/SC application on the host (OpenSC, browsers, pcsc_scan) can use it.

vpcd, a reader driver inside pcscd, listens on TCP (35963 for its first slot, 35964 for the
second) and the card side connects to it. Every message is a 2-byte big-endian length and a
payload. A 1-byte payload is a control code: power off, power on and reset get no reply, get-ATR
gets the ATR. Any longer payload is a command APDU, answered with the response APDU. pcscd asks
for the ATR about every 0.4 s to see whether the card is still there.

:class:`VpcdConnection` is the protocol, sans-IO. :func:`serve_vpcd` is its asyncio adapter. It
sets TCP_NODELAY and re-arms TCP_QUICKACK after every read: vpcd writes the length and the
payload in two ``send`` calls, and with delayed ACKs on this side each APDU would wait ~44 ms for
the second half (Linux does not keep quick-ack mode on by itself).

vpcd does not say which protocol pcscd chose. pcscd chooses T=1 when the ATR offers it and the
host accepts it (yubico-piv-tool asks for T=1 only), so a card whose ATR offers T=1 runs T=1
here (:attr:`cacard.card.Card.protocol`): a command without Le gets its data at once instead of
``61xx``, as yubico-piv-tool's SELECT needs. A host that insists on T=0 gets the same answers,
which PC/SC applications take as they come.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import struct
from typing import Final

from cardfloor.log import get_logger

from .atr import preferred_protocol
from .card import Card

log = get_logger(__name__)

#: vpcd's port for its first slot; the second slot's is the next one.
VPCD_PORT: Final = 35963
_LENGTH: Final = struct.Struct(">H")


class VpcdControl(enum.IntEnum):
    """The 1-byte messages vpcd sends instead of an APDU."""

    POWER_OFF = 0x00
    POWER_ON = 0x01
    RESET = 0x02
    GET_ATR = 0x04


def frame(payload: bytes) -> bytes:
    """``payload`` with its 2-byte big-endian length in front."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"a vpcd message holds at most 65535 bytes, got {len(payload)}")
    return _LENGTH.pack(len(payload)) + payload


class VpcdConnection:
    """The card side of one vpcd connection: bytes from vpcd in, bytes for vpcd out."""

    def __init__(self, card: Card) -> None:
        self.card = card
        self._buffer = bytearray()
        card.protocol = preferred_protocol(card.atr)  # see the module docstring

    def receive_data(self, data: bytes) -> bytes:
        """Consume bytes from vpcd (split anywhere); return the replies to send, in order."""
        self._buffer += data
        replies = bytearray()
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            replies += self._handle(payload)
        return bytes(replies)

    def _handle(self, payload: bytes) -> bytes:
        if len(payload) > 1:
            return frame(self.card.transmit(payload))
        if not payload:
            log.debug("vpcd.empty_message")
            return b""
        code = payload[0]
        if code == VpcdControl.GET_ATR:
            return frame(self.card.atr)
        if code == VpcdControl.POWER_ON:
            self.card.power_on()
        elif code == VpcdControl.RESET:
            self.card.reset()
        elif code == VpcdControl.POWER_OFF:
            self.card.power_off()
        else:
            # vpcd waits for an answer only after GET_ATR, so staying silent is safe.
            log.warning("vpcd.unknown_control", code=code)
            return b""
        log.debug("vpcd.control", control=VpcdControl(code).name)
        return b""


def _quickack(sock: socket.socket | None) -> None:
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class _VpcdProtocol(asyncio.Protocol):
    def __init__(self, connection: VpcdConnection, closed: asyncio.Future[None]) -> None:
        self._connection = connection
        self._closed = closed
        self._transport: asyncio.Transport | None = None
        self._sock: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._sock = transport.get_extra_info("socket")
        if self._sock is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quickack(self._sock)

    def data_received(self, data: bytes) -> None:
        # Quick-ack mode lapses after a while; re-arm it on every read (see the module docstring).
        _quickack(self._sock)
        reply = self._connection.receive_data(data)
        if reply and self._transport is not None:
            self._transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


async def serve_vpcd(
    card: Card,
    host: str = "127.0.0.1",
    port: int = VPCD_PORT,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Connect to vpcd at ``host``:``port`` (or use the connected ``sock``) and serve ``card``
    until vpcd closes the connection. The card is inserted while connected and loses power
    when the connection ends. Raises :class:`OSError` if vpcd cannot be reached.
    """
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    connection = VpcdConnection(card)

    def protocol() -> _VpcdProtocol:
        return _VpcdProtocol(connection, closed)

    if sock is not None:
        transport, _ = await loop.create_connection(protocol, sock=sock)
    else:
        transport, _ = await loop.create_connection(protocol, host, port)
    log.info("vpcd.connected", peer=transport.get_extra_info("peername"))
    try:
        await closed
    finally:
        transport.close()
        card.power_off()
        log.info("vpcd.disconnected")
