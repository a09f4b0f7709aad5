"""The bits of TCP the server and the client share: socket options and a bounded read size."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def peer_name(writer: asyncio.StreamWriter) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of the other end, for logs."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


def peer_address(writer: asyncio.StreamWriter) -> IPAddress | None:
    """The other end's IP address (an IPv4-mapped IPv6 one as IPv4), if it has one."""
    peer = writer.get_extra_info("peername")
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
