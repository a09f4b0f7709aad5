"""A process killed while writing ``state.json`` leaves its temporary file; the next process that
takes the card (``cacard unblock``, ``serve-vpcd``, the daemons) removes it, and never the file
of a writer still running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cacard.store import STATE_FILE, CardStore, CredentialFiles, NewCard, create

from .cards import CARD_ID, credential, pin_state, private_key

#: A bound on a wedged child, not a synchronisation.
TIMEOUT = 60

#: Rewrites the card's state, stopping between the written temporary file and its rename:
#: killed there (``kill``) or waiting for a line on stdin (``wait``).
WRITER = """
import os, signal, sys
from cacard.store import CardStore

directory, how = sys.argv[1:]
rename = os.replace

def interrupted(source, target):
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("written", flush=True)
    sys.stdin.readline()
    rename(source, target)

os.replace = interrupted
store = CardStore(directory)
store.save_state(store.load_state())
"""


@pytest.fixture
def card(tmp_path: Path) -> Path:
    files = [CredentialFiles(credential(0).certificate, private_key(0))]
    return create(tmp_path / "card", NewCard(files, CARD_ID, pin_state())).path


def temporaries(card: Path) -> list[str]:
    return sorted(p.name for p in card.iterdir() if p.name.endswith(".tmp"))


def unblock(card: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cacard", "unblock", str(card)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done


def test_a_writer_killed_mid_write_leaves_a_file_the_next_holder_removes(card: Path) -> None:
    state = (card / STATE_FILE).read_bytes()
    with subprocess.Popen([sys.executable, "-c", WRITER, str(card), "kill"]) as crashed:
        assert crashed.wait(TIMEOUT) == -signal.SIGKILL  # reaped: its pid names no process now
    assert temporaries(card) == [f".{STATE_FILE}.{crashed.pid}.tmp"]
    assert (card / STATE_FILE).read_bytes() == state  # the old state, whole

    unblock(card)
    assert temporaries(card) == []
    assert CardStore(card).load_state().pin.tries_remaining == 3


def test_the_file_of_a_writer_still_running_stays(card: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(card), "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None
        assert writer.stdin is not None
        assert writer.stdout.readline() == "written\n"  # stopped before its rename
        unblock(card)
        assert temporaries(card) == [f".{STATE_FILE}.{writer.pid}.tmp"]
        writer.stdin.write("\n")
        writer.stdin.close()
        assert writer.wait(TIMEOUT) == 0  # its rename found its file
    assert temporaries(card) == []
