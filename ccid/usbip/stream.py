"""The bits of TCP the server and the client share: socket options, a bounded read size and
the peer helpers (VSCard's)."""

from __future__ import annotations

import asyncio
import socket
from typing import Final

# The peer helpers are VSCard's: the same addresses, the same log format.
from vscard.asyncio.stream import IPAddress, IPNetwork, peer_address, peer_name

__all__ = ["READ_SIZE", "IPAddress", "IPNetwork", "peer_address", "peer_name", "set_nodelay"]

#: Bytes asked of the socket per read. A read never holds more than this plus one message.
READ_SIZE: Final = 65536

# Keepalive probes after 60 s of silence, every 10 s, 3 of them: an importer that vanished
# without a FIN (a Windows host with usbip-win2 that lost power) frees its device in about
# 90 s, so its re-attach loop does not meet "device busy" for the kernel's default 2 hours.
_KEEPALIVE: Final = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))


def set_nodelay(writer: asyncio.StreamWriter, *, keepalive: bool = False) -> None:
    """Turn Nagle off (URBs are latency-bound: libccid gives its first GetSlotStatus 100 ms)
    and, with ``keepalive``, probe an idle peer so a vanished one is noticed."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE:
            if hasattr(socket, name):  # Linux names; other systems keep their defaults
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
