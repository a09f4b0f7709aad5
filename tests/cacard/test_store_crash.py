"""A process killed while writing ``state.json`` (or what a card's PIV application keeps) leaves
its temporary file; the next process that takes the card (``cacard unblock``, ``serve-vpcd``, the
daemons) removes it, and never the file of a writer still running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cacard.profile import Applications
from cacard.store import (
    LOCK_FILE,
    PIV_FILE,
    STATE_FILE,
    CardStore,
    CredentialFiles,
    NewCard,
    create,
)

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


#: Keeps a generated key as the PIV application would (its ``on_change``), killed at the rename
#: of the file named by argv[2]'s prefix: the key file or ``piv.json``.
PIV_WRITER = """
import os, signal, sys
from cryptography.hazmat.primitives.asymmetric import ec
from cacard.piv.applet import KeyGenerated
from cacard.piv.objects import KeyReference
from cacard.store import CardStore

directory, target = sys.argv[1:]
rename = os.replace

def interrupted(source, destination):
    if os.path.basename(destination).startswith(target):
        os.kill(os.getpid(), signal.SIGKILL)
    rename(source, destination)

store = CardStore(directory)
store.open_card()
os.replace = interrupted
store._piv_changed(
    KeyGenerated(KeyReference.PIV_AUTHENTICATION, ec.generate_private_key(ec.SECP256R1()))
)
"""


@pytest.fixture
def piv_card(tmp_path: Path) -> Path:
    files = [CredentialFiles(credential(0).certificate, private_key(0))]
    new = NewCard(files, CARD_ID, pin_state(), applications=Applications.PIV, puk=pin_state())
    return create(tmp_path / "card", new).path


@pytest.mark.parametrize(
    ("target", "left"),
    [
        ("piv-key-9a.1.pem", [".piv-key-9a.1.pem.{pid}.tmp"]),
        (PIV_FILE, [".piv.json.{pid}.tmp", "piv-key-9a.1.pem"]),
    ],
)
def test_a_piv_writer_killed_mid_write_leaves_the_old_card_and_files_the_next_holder_removes(
    piv_card: Path, target: str, left: list[str]
) -> None:
    before = sorted(p.name for p in piv_card.iterdir())
    with subprocess.Popen([sys.executable, "-c", PIV_WRITER, str(piv_card), target]) as crashed:
        assert crashed.wait(TIMEOUT) == -signal.SIGKILL
    leftovers = sorted(set(p.name for p in piv_card.iterdir()) - set(before))
    assert leftovers == sorted(name.format(pid=crashed.pid) for name in left)
    assert CardStore(piv_card).load_piv().keys == {}  # the old card, whole

    unblock(piv_card)
    assert sorted(p.name for p in piv_card.iterdir() if p.name != LOCK_FILE) == before
