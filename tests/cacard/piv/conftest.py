"""Fixtures shared by the PIV host replays."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacard import CardRequest, generate_card
from cacard.profile import Applications


@pytest.fixture(scope="module")
def card_directories(tmp_path_factory: pytest.TempPathFactory) -> dict[Applications, Path]:
    """A card directory of each profile with PIV, as ``cacard new`` makes it (1024-bit keys,
    one-round PIN hash), one set per test module."""
    made = {}
    for applications in (Applications.PIV, Applications.CAC_PIV):
        directory = tmp_path_factory.mktemp("piv") / applications.value
        request = CardRequest(key_size=1024, pin_iterations=1, applications=applications)
        generate_card(directory, request)
        made[applications] = directory
    return made
