"""The distribution's version for the commands' ``--version``.

pyproject.toml is its one source: it is read from the installed distribution's metadata, so
vscclient, ccid-passthru and cacard always print the version that was installed. It lives in
``cacard`` because the daemons build on ``cacard`` and ``cacard`` must not import ``vscard``.
"""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "vscard"


def distribution_version() -> str:
    """The installed distribution's version, or ``unknown`` when run from a tree that was
    never installed (there is no metadata to read)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` that prints ``PROG VERSION`` and exits 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {distribution_version()}")
