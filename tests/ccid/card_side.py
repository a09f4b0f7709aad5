"""A reader whose card side the tests read back: every event any input returned, in order."""

from __future__ import annotations

from ccid import CCIDReader, ReaderConfiguration
from ccid.events import ReaderEvent


class RecordingReader(CCIDReader):
    """A :class:`CCIDReader` that also keeps what each input returns, for :meth:`take_events`.

    Tests then check the card side's whole story across inputs, however an event came about.
    """

    def __init__(self, config: ReaderConfiguration | None = None) -> None:
        super().__init__(config)
        self.recorded: list[ReaderEvent] = []

    def take_events(self) -> list[ReaderEvent]:
        """The events returned since the last call, oldest first."""
        events, self.recorded = self.recorded, []
        return events

    def _keep(self, events: list[ReaderEvent]) -> list[ReaderEvent]:
        self.recorded += events
        return events

    def receive_bulk_out(
        self, data: bytes | bytearray | memoryview, now: float
    ) -> list[ReaderEvent]:
        return self._keep(super().receive_bulk_out(data, now))

    def abort_request(self, bSlot: int, bSeq: int) -> list[ReaderEvent]:
        return self._keep(super().abort_request(bSlot, bSeq))

    def reset(self) -> list[ReaderEvent]:
        return self._keep(super().reset())

    def insert_card(self, atr: bytes) -> list[ReaderEvent]:
        return self._keep(super().insert_card(atr))

    def remove_card(self) -> list[ReaderEvent]:
        return self._keep(super().remove_card())

    def apdu_response(self, request: int, response: bytes) -> list[ReaderEvent]:
        return self._keep(super().apdu_response(request, response))

    def apdu_failed(self, request: int) -> list[ReaderEvent]:
        return self._keep(super().apdu_failed(request))

    def handle_timer(self, now: float) -> list[ReaderEvent]:
        return self._keep(super().handle_timer(now))
