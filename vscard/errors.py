"""Exceptions raised by the VSCard codec, connections and adapters.

The tree, shaped like h11's (one abstract :class:`ProtocolError`, a Local and a Remote side)::

    VSCardError                     everything this package raises on purpose
    ├── ProtocolError               abstract: someone broke the protocol (.field, .value)
    │   ├── RemoteProtocolError     the peer sent bytes that break it; the connection is over
    │   └── LocalProtocolError      this side (the caller of the sans-IO API) asked for
    │       │                       something the protocol state does not allow; nothing was
    │       │                       sent, the connection goes on
    │       ├── UnknownReaderError  no reader with that id on the connection
    │       ├── NoCardError         the reader has no card
    │       └── ReaderBusyError     an APDU is already in flight on the reader
    ├── RequestRefusedError         the host answered a request with a VSC_Error code
    ├── APDUFailedError             the card side answered an APDU with VSC_Error
    ├── CardRemovedError            the card went away while an APDU was in flight
    └── ConnectionClosedError       the connection ended before the operation completed

``except vscard.ProtocolError`` catches both sides; a read loop catches
:class:`RemoteProtocolError` only, so that a bug on our side is never blamed on the peer. The
last four are outcomes of a protocol followed correctly, not protocol errors.
"""

from __future__ import annotations

from cardfloor.errors import field_message


class VSCardError(Exception):
    """Base class of every exception this package raises on purpose."""


class ProtocolError(VSCardError):
    """Someone broke the VSCard protocol: raise :class:`RemoteProtocolError` or
    :class:`LocalProtocolError`, never this class itself (it is abstract, as h11's is).

    ``field`` names what was wrong (``"header.type"``, ``"Init.magic"``, ``"reader_id"``...)
    and ``value`` is what was there.
    """

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        if type(self) is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError"
            )
        super().__init__(field_message(reason, field, value))
        self.reason = reason
        self.field = field
        self.value = value


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol; the connection cannot go on."""


class LocalProtocolError(ProtocolError):
    """This side asked for something the protocol state does not allow; nothing was queued."""


class UnknownReaderError(LocalProtocolError):
    """No reader with this id exists on the connection."""

    def __init__(self, reader_id: int) -> None:
        super().__init__("no such reader", field="reader_id", value=reader_id)
        self.reader_id = reader_id


class NoCardError(LocalProtocolError):
    """The reader has no card inserted."""

    def __init__(self, reader_id: int) -> None:
        super().__init__("no card in the reader", field="reader_id", value=reader_id)
        self.reader_id = reader_id


class ReaderBusyError(LocalProtocolError):
    """The reader already has an APDU in flight; VSCard allows one at a time."""

    def __init__(self, reader_id: int) -> None:
        super().__init__("an APDU is already in flight", field="reader_id", value=reader_id)
        self.reader_id = reader_id


class RequestRefusedError(VSCardError):
    """The host answered a request with a VSC_Error code other than success."""

    def __init__(self, request: str, reader_id: int, code: int) -> None:
        super().__init__(f"host refused {request} on reader_id={reader_id} with code={code}")
        self.request = request
        self.reader_id = reader_id
        self.code = code


class APDUFailedError(VSCardError):
    """The card side answered an APDU with VSC_Error instead of a response."""

    def __init__(self, reader_id: int, code: int) -> None:
        super().__init__(f"APDU failed on reader_id={reader_id}: peer sent VSC_Error code={code}")
        self.reader_id = reader_id
        self.code = code


class CardRemovedError(VSCardError):
    """The card (or its reader) went away while an APDU was in flight."""

    def __init__(self, reader_id: int) -> None:
        super().__init__(f"card removed from reader_id={reader_id} during an APDU")
        self.reader_id = reader_id


class ConnectionClosedError(VSCardError):
    """The connection ended before the operation completed."""
