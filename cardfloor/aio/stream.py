"""The bits of TCP both adapters share: socket options and a bounded read size."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Final

#: Bytes asked of the socket per read: one maximal VSCard frame.
READ_SIZE = 65536


# Keepalive probes after 60 s of silence, every 10 s, 3 of them: a peer that vanished without a
# FIN (a VM host that lost power, a laptop whose network went away) is noticed in about 90 s
# instead of the kernel's default 2 hours, so its connection slot, its readers and their bus
# ids are freed for its return (and a client's --reconnect starts).
_KEEPALIVE: Final = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))


def set_nodelay(writer: asyncio.StreamWriter, *, keepalive: bool = False) -> None:
    """Turn Nagle off (every VSCard message and URB is latency-bound) and, with
    ``keepalive``, probe an idle peer so a vanished one is noticed."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE:
            if hasattr(socket, name):  # Linux names; other systems keep their defaults
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_address(writer: asyncio.StreamWriter) -> IPAddress | None:
    """The other end's IP address (IPv4-mapped IPv6 addresses as IPv4), if it has one."""
    return address_of(writer.get_extra_info("peername"))


def peer_name(writer: asyncio.StreamWriter) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of the other end, for logs."""
    return name_of(writer.get_extra_info("peername"))


def address_of(peer: object) -> IPAddress | None:
    """:func:`peer_address` of a socket address (what ``socket.getpeername`` returns)."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def name_of(peer: object) -> str:
    """:func:`peer_name` of a socket address (what ``socket.getpeername`` returns)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


#: Room in the accept queue beyond the connection limit: connections that will be refused (over
#: a limit, outside the allow list) wait there too until they are accepted and closed.
BACKLOG_HEADROOM = 128


def system_somaxconn() -> int:
    """The kernel's cap on a listen backlog (``net.core.somaxconn``); larger values are cut."""
    try:
        with open("/proc/sys/net/core/somaxconn", encoding="ascii") as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return socket.SOMAXCONN


def listen_backlog(max_connections: int) -> tuple[int, int]:
    """The backlog to listen with for a server of ``max_connections``, and the one it wants.

    A storm (every client of a restarted server reconnecting at once) fills the accept queue
    faster than one loop turn empties it; a queue that overflows makes the kernel drop or reset
    the rest. So the queue holds every connection the server may serve plus headroom, cut to
    what the kernel allows: when the two differ, the caller should say so.
    """
    wanted = max_connections + BACKLOG_HEADROOM
    return min(wanted, system_somaxconn()), wanted
