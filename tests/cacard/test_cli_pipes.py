"""``cacard`` through real pipes: a reader that goes away (``cacard info DIR | head -1``) only
loses the output; the command stays silent and keeps its own exit status."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cacard.store import CardStore, CredentialFiles, NewCard, create

from .cards import CARD_ID, credential, pin_state, private_key

CACARD = [sys.executable, "-m", "cacard"]
#: A bound on a wedged child, not a synchronisation: every run here takes well under a second.
TIMEOUT = 60


@pytest.fixture
def card(tmp_path: Path) -> Path:
    files = [CredentialFiles(credential(i).certificate, private_key(i)) for i in range(2)]
    return create(tmp_path / "card", NewCard(files, CARD_ID, pin_state())).path


def run_with_reader_gone(which: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run cacard with ``which`` (stdout or stderr) a pipe whose reader has already left (like
    ``| head -0``: the first write fails, with no race against the reader), the other captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*CACARD, *args],
            stdout=write_end if which == "stdout" else subprocess.PIPE,
            stderr=write_end if which == "stderr" else subprocess.PIPE,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(write_end)


def test_info_piped_to_head_prints_one_line_and_exits_0_silently(card: Path) -> None:
    shell = f"set -o pipefail; {' '.join(CACARD)} info {card} | head -1"
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"card       {card}\n"


@pytest.mark.parametrize("command", [["info"], ["unblock"], ["new"]])
def test_a_closed_stdout_is_silent_and_the_command_still_does_its_work(
    card: Path, command: list[str]
) -> None:
    directory = card.parent / "new-card" if command == ["new"] else card
    extra = ["--certs", "1", "--key-size", "1024"] if command == ["new"] else []
    done = run_with_reader_gone("stdout", *command, str(directory), *extra)
    assert (done.returncode, done.stderr) == (0, b"")
    assert CardStore(directory).load_state().pin.tries_remaining == 3


def test_a_closed_stdout_keeps_the_commands_own_error_and_status(card: Path) -> None:
    with socket.socket() as bound:  # bound, not listening: connecting is refused at once
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        done = run_with_reader_gone(
            "stdout", "serve-vpcd", str(card), "--port", str(port), "--once"
        )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(f"cacard: [Errno {errno.ECONNREFUSED}]".encode())
    assert b"Broken pipe" not in done.stderr


def test_a_closed_stderr_only_loses_the_logs(tmp_path: Path) -> None:
    directory = tmp_path / "card"
    done = run_with_reader_gone("stderr", "-vv", "new", str(directory), "--key-size", "1024")
    assert done.returncode == 0
    assert done.stdout.startswith(f"made card {directory} ".encode())
    assert CardStore(directory).load_profile().credentials
