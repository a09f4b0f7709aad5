"""One process at a time in a directory: an exclusive, non-blocking lock, held until released.

Three mechanisms, the first the platform has:

- ``fcntl.flock`` (Linux, macOS, the BSDs) and ``msvcrt.locking`` (Windows) lock an open
  ``.lock`` file. The kernel drops the lock when its process dies, so a crash never leaves the
  directory held.
- Elsewhere (no ``fcntl``, no ``msvcrt``), ``.lock.pid`` created with ``O_EXCL``, which every
  file system honours, holds its holder's pid and host. A holder that died leaves its file
  behind: one from this host whose pid is gone is taken over; one from another host (a shared
  directory), or whose pid cannot be checked, is refused with the file to remove named.

The mechanisms do not see each other's locks: processes sharing a directory must share a kind
of platform (two Windows clients on one share exclude each other; a Windows and a Linux one do
not).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, cast

LOCK_FILE: Final = ".lock"
PID_FILE: Final = ".lock.pid"


class LockHeld(Exception):
    """Another process holds the directory; the message says who, when that is known, and
    how to free it."""


class _Fcntl(Protocol):
    LOCK_EX: int
    LOCK_NB: int

    def flock(self, fd: int, operation: int, /) -> None: ...


class _Msvcrt(Protocol):
    LK_NBLCK: int
    LK_UNLCK: int

    def locking(self, fd: int, mode: int, nbytes: int, /) -> None: ...


def _module(name: str) -> object | None:
    # Looked up at each lock, not at import: tests stand in other platforms' modules.
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def mechanism() -> str:
    """``flock``, ``msvcrt`` or ``pidfile``: what :func:`hold` uses here."""
    if _module("fcntl") is not None:
        return "flock"
    return "msvcrt" if _module("msvcrt") is not None else "pidfile"


@contextlib.contextmanager
def hold(directory: Path) -> Iterator[None]:
    """Hold ``directory`` for this process until the block ends; raise :class:`LockHeld` at
    once if another process holds it."""
    if (fcntl := _module("fcntl")) is not None:
        lock = _flock(cast(_Fcntl, fcntl))
    elif (msvcrt := _module("msvcrt")) is not None:
        lock = _msvcrt_lock(cast(_Msvcrt, msvcrt))
    else:
        with _pid_file(directory / PID_FILE):
            yield
        return
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not lock.acquire(fd):
            raise LockHeld()
        try:
            yield
        finally:
            lock.release(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _FileLock:
    acquire: Callable[[int], bool]
    release: Callable[[int], None]


def _flock(fcntl: _Fcntl) -> _FileLock:
    def acquire(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    return _FileLock(acquire, lambda fd: None)  # closing the file releases a flock


def _msvcrt_lock(msvcrt: _Msvcrt) -> _FileLock:
    # msvcrt.locking locks bytes from the file position: always the first one, past the end of
    # the empty file, which Windows allows.
    def acquire(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as error:  # EACCES: another handle holds the byte
            if error.errno in (errno.EACCES, errno.EDEADLK):
                return False
            raise
        return True

    def release(fd: int) -> None:
        # Windows frees a closed handle's locks "when resources allow": unlock now, so a next
        # holder is not refused after this one has let go.
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    return _FileLock(acquire, release)


# -- the O_EXCL pid file -------------------------------------------------------------------


def _holder_line() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None


def _parse(line: str) -> tuple[int, str] | None:
    match line.split():
        case [pid, host] if pid.isdigit():
            return int(pid), host
    return None


def _holder_is_gone(line: str) -> bool:
    """True only when the holder surely died: same host, and its pid no longer exists."""
    holder = _parse(line)
    return (
        holder is not None
        and holder[1] == socket.gethostname()
        and process_exists(holder[0]) is False
    )


@contextlib.contextmanager
def _pid_file(path: Path) -> Iterator[None]:
    mine = _holder_line()
    for _ in range(3):  # a takeover another process won, or a holder gone meanwhile: retry
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            line = _read(path)
            if line is None:
                continue
            if not _holder_is_gone(line):
                raise LockHeld(_describe(line, path)) from None
            _take_over(path, line)
            continue
        with os.fdopen(fd, "w") as file:
            file.write(mine)
        try:
            yield
        finally:
            if _read(path) == mine:
                path.unlink()
        return
    raise LockHeld(f"others keep taking it over: see {path}")


def _describe(line: str, path: Path) -> str:
    holder = _parse(line)
    if holder is None:  # being written, or its writer died before writing
        return f"if no process does, remove {path}"
    pid, host = holder
    where = "" if host == socket.gethostname() else f" on {host}"
    return f"process {pid}{where}; if it has gone, remove {path}"


def _take_over(path: Path, stale: str) -> None:
    """Remove a dead holder's file, never a live one's.

    Another process may have taken it over and made its own since ``stale`` was read: the file
    is first renamed to a name of this process's, and put back if it is not the dead one's.
    """
    aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # another process took it over first
    if _read(aside) == stale:
        aside.unlink()
        return
    with contextlib.suppress(OSError):  # a third process made one meanwhile: it keeps it
        os.link(aside, path)
    aside.unlink()


def process_exists(pid: int) -> bool | None:
    """Whether process ``pid`` exists on this host; None when this platform cannot tell.

    Windows is one: its ``os.kill(pid, 0)`` is ``CTRL_C_EVENT``, sent to a console group.
    """
    if sys.platform != "win32" and hasattr(os, "kill"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's
        return True
    return None
