"""Exceptions raised by the VSCard codec, connections and adapters."""

from __future__ import annotations

from cardfloor.errors import field_message


class VSCardError(Exception):
    """Base class of every exception this package raises on purpose."""


class ProtocolError(VSCardError):
    """The peer sent bytes that break the protocol; the connection cannot go on.

    ``field`` names what was wrong (``"header.type"``, ``"Init.magic"``...) and ``value``
    is what the peer sent there.
    """

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        super().__init__(field_message(reason, field, value))
        self.reason = reason
        self.field = field
        self.value = value


class LocalProtocolError(VSCardError):
    """This side asked for something the protocol state does not allow."""


class UnknownReaderError(LocalProtocolError):
    """No reader with this id exists on the connection."""

    def __init__(self, reader_id: int) -> None:
        super().__init__(f"no reader with reader_id={reader_id}")
        self.reader_id = reader_id


class NoCardError(LocalProtocolError):
    """The reader has no card inserted."""

    def __init__(self, reader_id: int) -> None:
        super().__init__(f"no card in reader_id={reader_id}")
        self.reader_id = reader_id


class ReaderBusyError(LocalProtocolError):
    """The reader already has an APDU in flight; VSCard allows one at a time."""

    def __init__(self, reader_id: int) -> None:
        super().__init__(f"an APDU is already in flight on reader_id={reader_id}")
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
