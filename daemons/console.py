"""vscclient's interactive commands on stdin: insert, remove, reset, select, list, debug, exit.

Commands act on local readers by their console index (0, 1, ...: the order they appeared),
which is also the reader id our own ``ccid-passthru`` assigns; QEMU calls every reader 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .local_readers import HostMirror

HELP = """\
commands:
  insert [id]   put the card back into reader id (default: the selected reader)
  remove [id]   take the card out of reader id
  reset [id]    reset the card in reader id (nothing verified) and show the host it was
                taken out and put back: what a guest reboot through QEMU does not do
  select id     make reader id the default
  list          show the readers and their cards
  debug [level] show or set the log level (0: state changes, 1 and up: every APDU)
  exit, quit    remove cards and readers from the host, then stop
  help          this text"""

_TAKES_ID = frozenset({"insert", "remove", "reset", "select", "debug"})
_COMMANDS = _TAKES_ID | {"list", "exit", "quit", "help"}


@dataclass(frozen=True)
class Command:
    name: str
    argument: int | None = None


def parse_command(line: str) -> Command | str:
    """A :class:`Command`, or the text of an error to show."""
    words = line.split()
    if not words:
        return Command("")
    name, *rest = words
    if name not in _COMMANDS:
        return f"unknown command {name!r}; type help"
    if len(rest) > 1 or (rest and name not in _TAKES_ID):
        return f"{name}: too many arguments"
    if not rest:
        return Command(name)
    try:
        return Command(name, int(rest[0]))
    except ValueError:
        return f"{name}: {rest[0]!r} is not a number"


class Console:
    """Runs commands against the readers; ``write`` shows their output to the user."""

    def __init__(
        self,
        mirror: HostMirror,
        write: Callable[[str], None],
        *,
        on_exit: Callable[[], None],
        set_debug: Callable[[int], None],
    ) -> None:
        self._mirror = mirror
        self._write = write
        self._on_exit = on_exit
        self._set_debug = set_debug
        self.selected = 0
        self.debug = 0

    async def execute(self, line: str) -> None:
        command = parse_command(line)
        if isinstance(command, str):
            self._write(command)
            return
        match command.name:
            case "":
                pass
            case "help":
                self._write(HELP)
            case "exit" | "quit":
                self._on_exit()
            case "list":
                self._list()
            case "select":
                index = self.selected if command.argument is None else command.argument
                reader = self._mirror.find(index)
                if reader is None:
                    self._write(f"no reader {index}")
                else:
                    self.selected = reader.index
                    self._write(f"selected reader {reader.index}, {reader.name}")
            case "debug":
                if command.argument is not None:
                    self.debug = command.argument
                    self._set_debug(self.debug)
                self._write(f"debug level = {self.debug}")
            case "insert" | "remove" | "reset":
                index = self.selected if command.argument is None else command.argument
                reader = self._mirror.find(index)
                if reader is None:
                    self._write(f"no reader {index}")
                elif command.name == "reset":
                    ok = await self._mirror.reset(reader)
                    self._write(f"reset {reader.name}: {'ok' if ok else 'no card in this reader'}")
                elif command.name == "insert":
                    ok = await self._mirror.insert(reader)
                    self._write(
                        f"insert {reader.name}: {'ok' if ok else 'no card for this reader'}"
                    )
                else:
                    await self._mirror.remove(reader)
                    self._write(f"remove {reader.name}: ok")

    def _list(self) -> None:
        if not self._mirror.readers:
            self._write("no readers")
        for reader in self._mirror.readers:
            state = "CARD_PRESENT" if reader.inserted else "no card     "
            host = "not on host" if reader.remote is None else f"host id {reader.remote.reader_id}"
            mark = "*" if reader.index == self.selected else " "
            self._write(f"{mark}{reader.index:3} {state} {reader.name} ({host})")


def stdin_lines(
    loop: asyncio.AbstractEventLoop, stream: TextIO | None = sys.stdin
) -> asyncio.Queue[str | None]:
    """Lines from ``stream``, read by a daemon thread; None marks end of file.

    A thread, because no loop can watch every stdin: asyncio's cannot watch /dev/null, and on
    Windows neither a console nor a pipe (the Proactor has no ``add_reader``, select takes
    sockets only). A daemon one, because a read blocked on a terminal must not hold up exit.
    No stream (``pythonw``, some Windows services) reads as an empty one.
    """
    lines: asyncio.Queue[str | None] = asyncio.Queue(16)

    def read() -> None:
        try:
            for line in stream or ():
                asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
        except (OSError, ValueError):  # a terminal that went away (EIO), a closed stream
            pass
        except RuntimeError:  # the loop closed: nobody reads on
            return
        with contextlib.suppress(RuntimeError):  # end of file after the loop closed
            asyncio.run_coroutine_threadsafe(lines.put(None), loop)

    threading.Thread(target=read, name="vscclient-stdin", daemon=True).start()
    return lines
