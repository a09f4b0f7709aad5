"""The bits of TCP the server and the client share: socket options, a bounded read size and
the peer helpers (VSCard's)."""

from __future__ import annotations

from typing import Final

# The peer helpers and socket options are VSCard's: the same addresses, the same log format,
# the same keepalive.
from cardfloor.aio.stream import IPAddress, IPNetwork, peer_address, peer_name, set_nodelay

__all__ = ["READ_SIZE", "IPAddress", "IPNetwork", "peer_address", "peer_name", "set_nodelay"]

#: Bytes asked of the socket per read. A read never holds more than this plus one message.
READ_SIZE: Final = 65536
