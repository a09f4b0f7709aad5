"""A card directory's lock on every platform: flock (POSIX), msvcrt.locking (Windows, through a
stand-in with its documented behaviour) and the O_EXCL pid file (neither), each exclusive,
non-blocking and free again once released; the pid file's dead holders are taken over."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from cacard import lockfile
from cacard.store import CardInUseError, CardStore

from . import cards

card_dir = cards.card_dir

MECHANISMS = ["flock", "msvcrt", "pidfile"]


def fake_msvcrt() -> types.ModuleType:
    """Windows' msvcrt.locking as documented: a byte range per handle; a range another handle
    holds makes LK_NBLCK fail at once with EACCES. Built on flock, which is per handle too."""
    import fcntl

    module = types.ModuleType("msvcrt")
    module.LK_NBLCK = 2  # type: ignore[attr-defined]
    module.LK_UNLCK = 0  # type: ignore[attr-defined]

    def locking(fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the first byte, as store's lock asks
        if mode == module.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PermissionError(errno.EACCES, "Permission denied") from None

    module.locking = locking  # type: ignore[attr-defined]
    return module


def as_platform_with(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a platform with that mechanism only (None in sys.modules: no module)."""
    if name != "flock":
        msvcrt = fake_msvcrt()  # made while fcntl can still be imported
        monkeypatch.setitem(sys.modules, "fcntl", None)
        monkeypatch.setitem(sys.modules, "msvcrt", msvcrt if name == "msvcrt" else None)
    assert lockfile.mechanism() == name


@pytest.fixture(params=MECHANISMS)
def mechanism(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    as_platform_with(request.param, monkeypatch)
    return str(request.param)


@pytest.fixture
def pid_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform with neither flock nor msvcrt."""
    as_platform_with("pidfile", monkeypatch)


@pytest.fixture
def card(card_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "card"
    target.mkdir()
    for entry in card_dir.iterdir():
        if not entry.name.startswith(".lock"):
            (target / entry.name).write_bytes(entry.read_bytes())
    return target


def dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    return int(done.stdout)


def test_one_holder_at_a_time_and_free_once_released(mechanism: str, card: Path) -> None:
    with CardStore(card).lock():
        with pytest.raises(CardInUseError) as refused, CardStore(card).lock():
            pass
        assert str(card) in str(refused.value)
        assert "another process is serving this card" in str(refused.value)
    with CardStore(card).lock():
        pass


@pytest.mark.usefixtures("pid_files")
def test_the_pid_file_says_who_holds_the_card_and_goes_with_it(card: Path) -> None:
    with CardStore(card).lock():
        assert (card / ".lock.pid").read_text() == f"{os.getpid()} {socket.gethostname()}\n"
        with (
            pytest.raises(CardInUseError, match=f"process {os.getpid()}; if it has gone"),
            CardStore(card).lock(),
        ):
            pass
    assert not (card / ".lock.pid").exists()


@pytest.mark.usefixtures("pid_files")
def test_a_dead_holders_pid_file_is_taken_over(card: Path) -> None:
    (card / ".lock.pid").write_text(f"{dead_pid()} {socket.gethostname()}\n")
    with CardStore(card).lock():
        assert (card / ".lock.pid").read_text().split()[0] == str(os.getpid())
    assert [entry.name for entry in card.iterdir() if entry.name.startswith(".lock")] == []


@pytest.mark.parametrize(
    ("holder", "message"),
    [
        ("{pid} another-host", "process {pid} on another-host; if it has gone, remove"),
        ("", "if no process does, remove"),  # its writer died between creating and writing
    ],
)
@pytest.mark.usefixtures("pid_files")
def test_a_holder_that_cannot_be_checked_is_left_to_the_user(
    card: Path, holder: str, message: str
) -> None:
    pid = dead_pid()
    (card / ".lock.pid").write_text(holder.format(pid=pid))
    with pytest.raises(CardInUseError) as refused, CardStore(card).lock():
        pass
    assert message.format(pid=pid) in str(refused.value)
    assert str(card / ".lock.pid") in str(refused.value)


@pytest.mark.usefixtures("pid_files")
def test_where_pids_cannot_be_checked_a_pid_file_is_never_taken_over(
    card: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    (card / ".lock.pid").write_text(f"{dead_pid()} {socket.gethostname()}\n")
    with pytest.raises(CardInUseError, match="if it has gone, remove"), CardStore(card).lock():
        pass


def test_a_takeover_that_lost_the_race_puts_the_winners_file_back(tmp_path: Path) -> None:
    """Two processes saw the same dead holder; the other one already replaced its file."""
    path = tmp_path / ".lock.pid"
    dead = f"{dead_pid()} {socket.gethostname()}\n"
    winner = f"{os.getppid()} {socket.gethostname()}\n"
    path.write_text(winner)
    lockfile._take_over(path, dead)
    assert path.read_text() == winner
    assert os.listdir(tmp_path) == [".lock.pid"]


def test_a_state_temporary_is_kept_when_its_writer_cannot_be_checked(
    card: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows cannot tell whether a pid exists: a leftover file costs less than a lost one."""
    leftover = card / f".state.json.{dead_pid()}.tmp"
    leftover.write_text("{}")
    monkeypatch.setattr(sys, "platform", "win32")
    with CardStore(card).lock():
        pass
    assert leftover.exists()
    monkeypatch.undo()
    with CardStore(card).lock():
        pass
    assert not leftover.exists()


def test_process_exists() -> None:
    assert lockfile.process_exists(os.getpid()) is True
    assert lockfile.process_exists(dead_pid()) is False
