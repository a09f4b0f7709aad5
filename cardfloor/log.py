"""Key-value log events through the standard library's :mod:`logging`, silent until the
application configures it.

Every library module logs the same way::

    log = get_logger("vscard.server")
    log.info("vscard.connected", peer="10.0.0.2:51234", version=3)

A record carries the event name as its ``event`` attribute and the fields as its ``fields``
attribute (a dict); its message is ``event key=value ...``, so ``logging.basicConfig()`` shows
everything. structlog renders them as its own events with :func:`add_fields` first in
``ProcessorFormatter``'s ``foreign_pre_chain`` (:mod:`daemons.logconfig` does).

The top logger of each package that logs here (``vscard``, ``ccid``, ``cacard``...) gets a
:class:`logging.NullHandler`: without a handler configured, nothing is printed, not even
warnings through :data:`logging.lastResort` (the library guidelines of the logging HOWTO).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

DEBUG = logging.DEBUG
INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR

# Top-level packages whose logger already has its NullHandler.
_quieted: set[str] = set()


class _Message:
    """A record's message, rendered only if a handler formats it."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, object]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        return " ".join([self.event, *(f"{key}={value}" for key, value in self.fields.items())])


class Logger:
    """A logger of key-value events: ``log.debug("ccid.apdu", bSeq=3, response=...)``.

    A line below the level costs one cached :meth:`logging.Logger.isEnabledFor`: the per-APDU
    debug lines stay cheap when debug is off.
    """

    __slots__ = ("_context", "_logger", "is_enabled_for")

    def __init__(self, logger: logging.Logger, context: Mapping[str, object] | None = None):
        self._logger = logger
        self._context: Mapping[str, object] = context or {}
        #: Whether an event at ``level`` would be emitted: the stdlib logger's own method,
        #: bound once, so a hot path's check costs one call, not two.
        self.is_enabled_for: Callable[[int], bool] = logger.isEnabledFor

    @property
    def name(self) -> str:
        return self._logger.name

    def bind(self, **fields: object) -> Logger:
        """The same logger, with ``fields`` added to every event."""
        return Logger(self._logger, {**self._context, **fields})

    def debug(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(DEBUG):
            self._emit(DEBUG, event, fields)

    def info(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(INFO):
            self._emit(INFO, event, fields)

    def warning(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(WARNING):
            self._emit(WARNING, event, fields)

    def error(self, event: str, /, **fields: object) -> None:
        if self._logger.isEnabledFor(ERROR):
            self._emit(ERROR, event, fields)

    def exception(self, event: str, /, **fields: object) -> None:
        """:meth:`error` with the exception being handled."""
        if self._logger.isEnabledFor(ERROR):
            self._emit(ERROR, event, fields, exc_info=True)

    def _emit(
        self, level: int, event: str, fields: dict[str, object], *, exc_info: bool = False
    ) -> None:
        if self._context:
            fields = {**self._context, **fields}
        # stacklevel 3: the record names the library line that logged, not this module.
        self._logger.log(
            level,
            _Message(event, fields),
            exc_info=exc_info,
            extra={"event": event, "fields": fields},
            stacklevel=3,
        )


def get_logger(name: str) -> Logger:
    """The key-value logger ``name`` (a dotted module or subsystem name); its package's top
    logger gets a :class:`logging.NullHandler` so that the library stays quiet by default."""
    top = name.partition(".")[0]
    if top not in _quieted:
        logging.getLogger(top).addHandler(logging.NullHandler())
        _quieted.add(top)
    return Logger(logging.getLogger(name))


def add_fields(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor for ``ProcessorFormatter(foreign_pre_chain=[add_fields, ...])``:
    a record of this module becomes the event it was (its name and fields); other records pass
    unchanged."""
    record = event_dict.get("_record")
    event = getattr(record, "event", None)
    fields = getattr(record, "fields", None)
    if isinstance(event, str) and isinstance(fields, Mapping):
        event_dict["event"] = event
        for key, value in fields.items():
            event_dict.setdefault(key, value)
    return event_dict
