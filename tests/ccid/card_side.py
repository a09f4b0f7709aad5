"""A reader whose card side the tests read back: every event any input returned, in order."""

from __future__ import annotations

from ccid import CCIDReader, ReaderConfiguration
from ccid.errors import CCIDRemoteProtocolError
from ccid.events import CCIDReaderEvent
from ccid.slot import SlotState
from ccid.transaction import Transaction


class RecordingReader:
    """A :class:`CCIDReader` (``reader``) whose inputs also keep what they return, for
    :meth:`take_events`; everything else reads the reader.

    Tests then check the card side's whole story across inputs, however an event came about.
    It wraps the reader rather than subclassing it: on the compiled build the reader is a
    native class, which a Python class cannot extend.
    """

    def __init__(self, config: ReaderConfiguration | None = None) -> None:
        self.reader = CCIDReader(config)
        self.recorded: list[CCIDReaderEvent] = []

    def take_events(self) -> list[CCIDReaderEvent]:
        """The events returned since the last call, oldest first."""
        events, self.recorded = self.recorded, []
        return events

    def _keep(self, events: list[CCIDReaderEvent]) -> list[CCIDReaderEvent]:
        self.recorded += events
        return events

    # -- the inputs, recorded -----------------------------------------------------------------

    def receive_bulk_out(
        self, data: bytes | bytearray | memoryview, now: float
    ) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.receive_bulk_out(data, now))

    def abort_request(self, bSlot: int, bSeq: int) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.abort_request(bSlot, bSeq))

    def reset(self) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.reset())

    def insert_card(self, atr: bytes) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.insert_card(atr))

    def remove_card(self) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.remove_card())

    def apdu_response(self, request: int, response: bytes) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.apdu_response(request, response))

    def apdu_failed(self, request: int) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.apdu_failed(request))

    def handle_timer(self, now: float) -> list[CCIDReaderEvent]:
        return self._keep(self.reader.handle_timer(now))

    # -- the rest, as the reader has it -------------------------------------------------------

    def read_bulk_in(self, max_length: int) -> bytes:
        return self.reader.read_bulk_in(max_length)

    def read_interrupt_in(self) -> bytes | None:
        return self.reader.read_interrupt_in()

    def discard_partial_command(self) -> None:
        self.reader.discard_partial_command()

    def get_timer(self) -> float | None:
        return self.reader.get_timer()

    @property
    def slot_state(self) -> SlotState:
        return self.reader.slot_state

    @property
    def atr(self) -> bytes | None:
        return self.reader.atr

    @property
    def transaction(self) -> Transaction:
        return self.reader.transaction

    @property
    def busy(self) -> bool:
        return self.reader.busy

    @property
    def queued_responses(self) -> int:
        return self.reader.queued_responses

    @property
    def error(self) -> CCIDRemoteProtocolError | None:
        return self.reader.error
