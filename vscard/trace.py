"""Moved to :mod:`cardfloor.iso7816.trace`; this name stays until no module imports it."""

from cardfloor.iso7816.trace import Trace, apdu_trace, command_trace, response_trace

__all__ = ["Trace", "apdu_trace", "command_trace", "response_trace"]
