"""A VSCard host for tests against vicc: it queues what it hears and SELECTs each card's MF."""

from __future__ import annotations

import asyncio
from typing import Final, TypeVar

import vscard
from vscard import CardInserted

#: SELECT MF with P2=0C (no FCI): vicc's iso7816 card breaks on P2=00.
SELECT_MF: Final = bytes.fromhex("00A4000C023F00")

_T = TypeVar("_T")


class SelectingHost:
    """Queues every session event and, after each :class:`CardInserted`, the card's answer to
    :data:`SELECT_MF`; serve :meth:`handle`."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[object] = asyncio.Queue()

    async def handle(self, session: vscard.Session) -> None:
        async for event in session.events():
            await self.events.put(event)
            if isinstance(event, CardInserted):
                await self.events.put(await session.transmit(event.reader_id, SELECT_MF))

    async def next_of(self, kind: type[_T]) -> _T:
        """The next queued item of type ``kind``; those before it are dropped."""
        while True:
            event = await asyncio.wait_for(self.events.get(), 20)
            if isinstance(event, kind):
                return event
