"""The guest's serial console protocol: result lines out of the guest, go-aheads into it.

Sans-IO: feed console bytes to :class:`ConsoleParser`, get :data:`ConsoleEvent` values back.

The guest writes one marker per line (the kernel may write its own lines in between)::

    @@BEGIN@@                                   the script started
    @@CHECK <name> <PASS|FAIL> <ms> <b64>@@     one check: verdict, guest time, its output
    @@WAIT <token>@@                            the guest waits for the host to act
    @@LOG <name> <b64>@@                        a diagnostic file (pcscd log, dmesg)
    @@END@@                                     the script finished; power-off follows

The host answers a WAIT by writing ``@@GO <token>@@`` (done) or ``@@NOGO <token>@@`` (cannot)
as a line on the console's input. Names and tokens are ``[A-Za-z0-9_.:-]+``; base64 may be
empty. Nothing in this format contains ``@``, so a marker is unambiguous within a line.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass

NAME_PATTERN = r"[A-Za-z0-9_.:-]+"
_NAME = re.compile(rf"{NAME_PATTERN}\Z")
_MARKER = re.compile(r"@@(BEGIN|END|CHECK|WAIT|LOG)(?: ([^@\r\n]*))?@@")
_CHECK = re.compile(rf"({NAME_PATTERN}) (PASS|FAIL) (\d+) ([A-Za-z0-9+/=]*)\Z")
_WAIT = re.compile(rf"({NAME_PATTERN})\Z")
_LOG = re.compile(rf"({NAME_PATTERN}) ([A-Za-z0-9+/=]*)\Z")

#: A console line longer than this without a newline is flushed as it is (a runaway guest).
MAX_LINE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Begin:
    """The guest script started (the kernel booted and /init ran)."""


@dataclass(frozen=True)
class End:
    """The guest script finished."""


@dataclass(frozen=True)
class CheckLine:
    name: str
    passed: bool
    guest_ms: int
    """How long the check took, by the guest's clock."""
    output: str


@dataclass(frozen=True)
class WaitLine:
    token: str


@dataclass(frozen=True)
class LogLine:
    name: str
    text: str


@dataclass(frozen=True)
class Malformed:
    """A marker whose fields do not parse; ``line`` is the whole console line."""

    line: str
    reason: str


ConsoleEvent = Begin | End | CheckLine | WaitLine | LogLine | Malformed


def valid_name(name: str) -> bool:
    return _NAME.match(name) is not None


def _decode(field: str) -> str:
    return base64.b64decode(field, validate=True).decode("utf-8", errors="replace")


def parse_line(line: str) -> list[ConsoleEvent]:
    """Every marker in one console line (normally none or one)."""
    events: list[ConsoleEvent] = []
    for marker in _MARKER.finditer(line):
        kind, fields = marker.group(1), marker.group(2) or ""
        try:
            if kind == "BEGIN":
                events.append(Begin())
            elif kind == "END":
                events.append(End())
            elif kind == "CHECK":
                match = _CHECK.match(fields)
                if match is None:
                    events.append(Malformed(line, "CHECK needs: name PASS|FAIL ms base64"))
                    continue
                name, verdict, ms, output = match.groups()
                events.append(CheckLine(name, verdict == "PASS", int(ms), _decode(output)))
            elif kind == "WAIT":
                match = _WAIT.match(fields)
                if match is None:
                    events.append(Malformed(line, "WAIT needs: token"))
                    continue
                events.append(WaitLine(match.group(1)))
            else:
                match = _LOG.match(fields)
                if match is None:
                    events.append(Malformed(line, "LOG needs: name base64"))
                    continue
                events.append(LogLine(match.group(1), _decode(match.group(2))))
        except (binascii.Error, ValueError) as error:
            events.append(Malformed(line, f"bad base64: {error}"))
    return events


class ConsoleParser:
    """Splits console bytes into lines and returns the markers of each complete line.

    The whole console text is kept in :attr:`text` for reports.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._chunks: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self._chunks) + self._pending

    def feed(self, data: bytes) -> list[ConsoleEvent]:
        return self._feed_text(self._decoder.decode(data))

    def close(self) -> list[ConsoleEvent]:
        """End of the console: parse what is left, even without a final newline."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        rest, self._pending = self._pending, ""
        self._chunks.append(rest)
        return events + parse_line(rest)

    def _feed_text(self, text: str) -> list[ConsoleEvent]:
        events: list[ConsoleEvent] = []
        self._pending += text
        while True:
            newline = self._pending.find("\n")
            if newline < 0:
                if len(self._pending) > MAX_LINE:
                    newline = len(self._pending) - 1
                else:
                    return events
            line, self._pending = self._pending[: newline + 1], self._pending[newline + 1 :]
            self._chunks.append(line)
            events.extend(parse_line(line))


def go_line(token: str) -> bytes:
    """The host's answer to ``@@WAIT token@@`` once it has acted."""
    return f"@@GO {token}@@\n".encode()


def nogo_line(token: str) -> bytes:
    """The host's answer to ``@@WAIT token@@`` when it could not act."""
    return f"@@NOGO {token}@@\n".encode()
