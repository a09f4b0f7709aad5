"""Stable USB/IP bus ids: a reader that comes back is exported under the bus id it had.

A host that attached ``usbip attach -r HOST -b 1-1`` (a script, a systemd unit) can only find
its reader again if the reader keeps ``1-1`` across ``vscclient --reconnect``. Linux vhci never
re-attaches by itself: when the connection ends it unplugs the device
(drivers/usb/usbip/vhci_hcd.c, vhci_shutdown_connection), so the host runs ``usbip attach``
again, in a retry loop or as a unit with ``Restart=always``
(``examples/usbip-attach@.service``), and the bus id it asks for must still be the reader's.

The identity of a reader is the VSCard client's and the reader's name. VSCard carries no client
id, so the client is its IP address (:func:`reader_identity`): a client that reconnects from
the same address with the same reader name is the same reader. Two clients behind one NAT with
equally named readers share an identity; each still gets a bus id of its own (the first free
of those remembered, then a new one), they may only swap.

:class:`BusidMemory` keeps, for at most ``capacity`` identities and ``keep`` seconds after they
were last seen, the bus ids their readers had. A returning reader gets its bus id back while no
other reader holds it; a new reader takes the lowest ``1-N`` that is neither exported nor
remembered, so a storm of reconnects gives each reader its own id back, whatever the order.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Container, Hashable
from dataclasses import dataclass, field
from typing import Final

#: Identities remembered: every reader of a large deployment, with room for churn.
DEFAULT_CAPACITY: Final = 4096
#: Seconds an identity's bus ids stay reserved after its reader left: a laptop that sleeps
#: over a weekend comes back to the same bus id.
DEFAULT_KEEP: Final = 7 * 24 * 3600.0
#: Bus ids remembered per identity (readers of one name on one address, at once).
_PER_IDENTITY: Final = 4


def reader_identity(peer: str, name: str) -> tuple[str, str]:
    """The identity of reader ``name`` of the VSCard client at ``peer`` (``host:port`` or
    ``[v6host]:port``, as ``vscard.Session.peer``): its address without the port, and the name."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.removeprefix("[").removesuffix("]"), name


@dataclass(slots=True)
class _Entry:
    busids: list[str] = field(default_factory=list)  # most recently used first
    seen: float = 0.0


class BusidMemory:
    """Which bus ids each reader identity had; :meth:`allocate` and :meth:`release` them."""

    def __init__(
        self,
        *,
        busnum: int = 1,
        capacity: int = DEFAULT_CAPACITY,
        keep: float = DEFAULT_KEEP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be at least 1")
        if keep <= 0:
            raise ValueError(f"keep={keep} must be positive")
        self._busnum = busnum
        self._capacity = capacity
        self._keep = keep
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recently seen first
        self._owners: dict[str, Hashable] = {}

    def __len__(self) -> int:
        """Identities remembered now."""
        return len(self._entries)

    def remembered(self, identity: Hashable) -> tuple[str, ...]:
        """The bus ids remembered for ``identity``, most recently used first."""
        entry = self._entries.get(identity)
        return tuple(entry.busids) if entry is not None else ()

    def allocate(self, identity: Hashable, in_use: Container[str]) -> str:
        """The bus id to export a reader of ``identity`` under; ``in_use`` are those exported.

        Its own remembered bus id when one is free, else the lowest ``BUSNUM-N`` that is
        neither in use nor remembered for another identity.
        """
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(identity)
        if entry is None:
            entry = self._entries[identity] = _Entry()
        busid = next((known for known in entry.busids if known not in in_use), "")
        if busid:
            entry.busids.remove(busid)
        else:
            number = 1
            while (busid := f"{self._busnum}-{number}") in in_use or busid in self._owners:
                number += 1
            self._owners[busid] = identity
        entry.busids.insert(0, busid)
        self._trim(entry)
        self._touch(identity, entry, now)
        return busid

    def release(self, identity: Hashable, busid: str) -> None:
        """The reader of ``identity`` exported under ``busid`` is gone: keep the id for it."""
        now = self._clock()
        self._expire(now)
        if self._owners.get(busid, identity) != identity:
            return  # not ours (add_device got it from elsewhere): nothing to keep
        entry = self._entries.get(identity)
        if entry is None:  # forgotten while it was exported (capacity, keep): remember anew
            entry = self._entries[identity] = _Entry()
        if busid not in entry.busids:
            entry.busids.insert(0, busid)
            self._owners[busid] = identity
            self._trim(entry)
        self._touch(identity, entry, now)

    def _trim(self, entry: _Entry) -> None:
        for dropped in entry.busids[_PER_IDENTITY:]:
            del self._owners[dropped]
        del entry.busids[_PER_IDENTITY:]

    def _touch(self, identity: Hashable, entry: _Entry, now: float) -> None:
        entry.seen = now
        self._entries.move_to_end(identity)
        while len(self._entries) > self._capacity:
            self._forget_oldest()

    def _expire(self, now: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.seen < self._keep:
                return
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        for busid in entry.busids:
            del self._owners[busid]
