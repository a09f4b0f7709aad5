"""A reader whose card side the tests read back: every event any input returned, in order."""

from __future__ import annotations

from ccid import CCIDReader, ReaderConfiguration
from ccid.events import CCIDReaderEvent


class RecordingReader(CCIDReader):
    """A :class:`CCIDReader` that also keeps what each input returns, for :meth:`take_events`.

    Tests then check the card side's whole story across inputs, however an event came about.
    """

    def __init__(self, config: ReaderConfiguration | None = None) -> None:
        super().__init__(config)
        self.recorded: list[CCIDReaderEvent] = []

    def take_events(self) -> list[CCIDReaderEvent]:
        """The events returned since the last call, oldest first."""
        events, self.recorded = self.recorded, []
        return events

    def _keep(self, events: list[CCIDReaderEvent]) -> list[CCIDReaderEvent]:
        self.recorded += events
        return events

    def receive_bulk_out(
        self, data: bytes | bytearray | memoryview, now: float
    ) -> list[CCIDReaderEvent]:
        return self._keep(super().receive_bulk_out(data, now))

    def abort_request(self, bSlot: int, bSeq: int) -> list[CCIDReaderEvent]:
        return self._keep(super().abort_request(bSlot, bSeq))

    def reset(self) -> list[CCIDReaderEvent]:
        return self._keep(super().reset())

    def insert_card(self, atr: bytes) -> list[CCIDReaderEvent]:
        return self._keep(super().insert_card(atr))

    def remove_card(self) -> list[CCIDReaderEvent]:
        return self._keep(super().remove_card())

    def apdu_response(self, request: int, response: bytes) -> list[CCIDReaderEvent]:
        return self._keep(super().apdu_response(request, response))

    def apdu_failed(self, request: int) -> list[CCIDReaderEvent]:
        return self._keep(super().apdu_failed(request))

    def handle_timer(self, now: float) -> list[CCIDReaderEvent]:
        return self._keep(super().handle_timer(now))
