"""Who may connect to a server: a cap on connections, an allow list, a cap per source address.

Both servers (VSCard here, USB/IP in :mod:`ccid.usbip.server`) ask :meth:`Admission.refusal`
for every new connection, then :meth:`Admission.opened` and :meth:`Admission.closed` as it
lives and ends, so the per-source counts never outlive their connections.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .stream import IPAddress, IPNetwork


class Admission:
    """The connection limits of one server and the counts they are checked against."""

    def __init__(
        self,
        *,
        max_connections: int,
        allow: Sequence[IPNetwork] | None = None,
        max_connections_per_source: int | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._allow = None if allow is None else tuple(allow)
        self._max_per_source = max_connections_per_source
        self._per_source: Counter[IPAddress] = Counter()
        self.connections = 0
        """Connections open now."""

    def refusal(self, address: IPAddress | None) -> dict[str, object] | None:
        """Why a new connection from ``address`` must be closed at once (log fields), or None."""
        if self.connections >= self._max_connections:
            return {"reason": "max_connections", "max_connections": self._max_connections}
        if self._allow is not None and (
            address is None or not any(address in network for network in self._allow)
        ):
            return {"reason": "not in the allow list"}
        if (
            self._max_per_source is not None
            and address is not None
            and self._per_source[address] >= self._max_per_source
        ):
            return {"reason": "max_connections_per_source", "limit": self._max_per_source}
        return None

    def opened(self, address: IPAddress | None) -> None:
        """Count a connection that was let in."""
        self.connections += 1
        if address is not None:
            self._per_source[address] += 1

    def closed(self, address: IPAddress | None) -> None:
        """Uncount a connection :meth:`opened` counted."""
        self.connections -= 1
        if address is not None:
            self._per_source[address] -= 1
            if not self._per_source[address]:
                del self._per_source[address]
