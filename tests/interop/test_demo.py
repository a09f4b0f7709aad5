"""The README's main command works as written: the end-to-end demo succeeds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

ROOT = Path(__file__).parents[2]


async def test_the_end_to_end_demo_succeeds() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.end_to_end_demo",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(300):
        output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "Personal Identity Verification Card" in text  # OpenSC's PIV driver
    assert "the guest used the card end to end" in text
