"""``vscclient HOST PORT`` with no card option uses PC/SC; without pyscard or without a PC/SC
service it stops at once with one line that says what to install or start, or which option
gives a card instead (the process, as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemons.vscclient import parse_args, plan_from_args

ROOT = Path(__file__).parents[2]


def vscclient(args: list[str], *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemons.vscclient", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_card_option_means_every_pcsc_reader() -> None:
    plan = plan_from_args(parse_args(["host", "2001"]))
    assert plan.pcsc == ""
    assert plan.pcsc_by_default


def test_without_pyscard_one_line_names_the_package_and_the_card_options(tmp_path: Path) -> None:
    # A "smartcard" package first on the path that fails to import, as when pyscard is absent.
    (tmp_path / "smartcard").mkdir()
    (tmp_path / "smartcard" / "__init__.py").write_text("raise ImportError('no pyscard here')\n")
    result = vscclient(
        ["127.0.0.1", "1"], env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'vscard[pcsc]'" in result.stderr
    assert "--card DIR" in result.stderr


def test_without_a_pcsc_service_one_line_says_start_pcscd(tmp_path: Path) -> None:
    pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")
    # libpcsclite reads the daemon's socket path from here: nothing listens there.
    env = {"PCSCLITE_CSOCK_NAME": str(tmp_path / "pcscd.comm")}
    result = vscclient(["127.0.0.1", "1"], env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "start pcscd" in result.stderr
    assert "--card DIR" in result.stderr
    # Asked for by name, the error says the same without offering other options.
    named = vscclient(["--pcsc=Gemalto", "127.0.0.1", "1"], env=env)
    assert named.returncode == 2
    assert named.stderr == "vscclient: --pcsc: no PC/SC service is running: start pcscd " + (
        "(Debian: apt install pcscd)\n"
    )
