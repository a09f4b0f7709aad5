"""``--version`` says which build runs: pure Python prints the version alone."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES

import pytest

from cardfloor import version
from cardfloor.iso7816 import apdu


def test_pure_python_prints_the_version_alone() -> None:
    if apdu.__file__.endswith(tuple(EXTENSION_SUFFIXES)):
        pytest.skip("this is the compiled build")
    assert version.build() == "pure Python"
    assert version.version_text() == version.distribution_version()


def test_a_compiled_apdu_module_makes_it_say_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apdu, "__file__", "/x/cardfloor/iso7816/apdu" + EXTENSION_SUFFIXES[0])
    assert version.build() == "compiled (mypyc)"
    assert version.version_text() == f"{version.distribution_version()}, compiled (mypyc)"
