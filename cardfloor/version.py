"""The distribution's version for the commands' ``--version``.

pyproject.toml is its one source: it is read from the installed distribution's metadata, so
vscclient, ccid-passthru and cacard always print the version that was installed. It lives on
the floor because all three commands print it and the floor imports none of their packages.
A compiled build (``scripts/build-compiled``, docs/compiled.md) says so after the version.
"""

from __future__ import annotations

import argparse
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "vscard"


def distribution_version() -> str:
    """The installed distribution's version, or ``unknown`` when run from a tree that was
    never installed (there is no metadata to read)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def build() -> str:
    """``compiled (mypyc)`` when the hot path runs compiled, else ``pure Python``.

    The APDU parser is in every compiled build (scripts/build-compiled), and it is the floor's
    own module, so its file tells."""
    from cardfloor.iso7816 import apdu

    path = getattr(apdu, "__file__", None) or ""
    return "compiled (mypyc)" if path.endswith(tuple(EXTENSION_SUFFIXES)) else "pure Python"


def version_text() -> str:
    """The version, and ``, compiled (mypyc)`` on a compiled build; pure Python adds nothing."""
    text = distribution_version()
    return text if build() == "pure Python" else f"{text}, {build()}"


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` that prints ``PROG VERSION`` (and the build, when it is
    compiled) and exits 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version_text()}")
