"""What every harness shares: how an input is cut up, and what counts as a bug.

An input is a *control byte* followed by a *payload*. The control byte steers how the payload
reaches the code under test (how a stream is split into ``feed`` calls, which limits are
configured); the payload is what a hostile peer sends. A harness raises only on a real bug:
an exception other than the decoder's typed error, or :class:`FuzzBug` for a broken bound or
invariant. A typed error is the decoder doing its job and is swallowed.
"""

from __future__ import annotations

import logging
import struct
import sys
import types
from collections.abc import Iterator
from typing import Any, Final

import structlog

from tests.logs import ErrorWatch

_U16: Final = struct.Struct(">H")
_ERROR_AND_UP: Final = structlog.make_filtering_bound_logger(logging.ERROR)


class FuzzBug(AssertionError):
    """The code under test broke a bound or an invariant its documentation promises."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`FuzzBug` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise FuzzBug(message)


def split_input(data: bytes) -> tuple[int, bytes]:
    """The control byte (0 for an empty input) and the payload."""
    if not data:
        return 0, b""
    return data[0], data[1:]


def chunks(control: int, payload: bytes) -> Iterator[bytes]:
    """``payload`` cut into the pieces a socket might deliver, as ``control`` bits 0-4 say.

    Bits 0-3 = 0 deliver it whole; n > 0 cuts it into pieces of at most 2**(n-1) bytes (1:
    byte by byte), varying in size when bit 4 is set. Bits 5-7 are the harness's to use. An
    empty payload is still delivered once.
    """
    exponent = control & 0x0F
    if exponent == 0 or not payload:
        yield payload
        return
    size = 1 << (exponent - 1)
    vary = bool(control & 0x10)
    offset = 0
    index = 0
    while offset < len(payload):
        step = 1 + (index * 7 + control) % size if vary else size
        yield payload[offset : offset + step]
        offset += step
        index += 1


def records(payload: bytes) -> Iterator[bytes]:
    """Length-prefixed records (u16 big-endian length, then that many bytes); the last one
    may be cut short by the end of the payload."""
    offset = 0
    while offset + _U16.size <= len(payload):
        (length,) = _U16.unpack_from(payload, offset)
        start = offset + _U16.size
        yield payload[start : start + length]
        offset = start + length


def record(data: bytes) -> bytes:
    """``data`` as one length-prefixed record (see :func:`records`)."""
    return _U16.pack(len(data)) + data


class ErrorLogWatch:
    """Records error-level log events (and the exception being handled) while active.

    Code that must never raise (``cacard.Card.transmit``) turns an internal exception into a
    status word and an error log line; this watch brings that exception back to the harness.
    """

    def __init__(self) -> None:
        self.errors: list[tuple[str, BaseException | None]] = []
        self._saved: dict[str, Any] | None = None
        self._handler = ErrorWatch()

    def _processor(self, logger: object, method_name: str, event_dict: Any) -> Any:
        if method_name in ("error", "exception", "critical", "fatal"):
            self.errors.append((str(event_dict.get("event")), sys.exc_info()[1]))
        raise structlog.DropEvent

    def __enter__(self) -> ErrorLogWatch:
        self.errors.clear()
        # The libraries log through the standard library; daemons' modules through structlog.
        self._handler = ErrorWatch()
        self._handler.errors = self.errors
        logging.getLogger().addHandler(self._handler)
        self._saved = structlog.get_config()
        # Error level and up reach the processor whatever the caller configured; the rest is
        # dropped before any formatting, which keeps the watch cheap.
        structlog.configure(processors=[self._processor], wrapper_class=_ERROR_AND_UP)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        assert self._saved is not None
        logging.getLogger().removeHandler(self._handler)
        structlog.configure(**self._saved)
        self._saved = None

    def raise_first(self) -> None:
        """Raise :class:`FuzzBug` for the first error logged, chained to its exception."""
        if self.errors:
            event, exception = self.errors[0]
            raise FuzzBug(f"error logged: {event}") from exception
