"""Log output shared by the daemons: key-value events on stderr, console or JSON.

The libraries log through the standard library (:mod:`cardfloor.log`) and print nothing by
themselves; :func:`configure_logging` (:mod:`cardfloor.stdio`'s, which the ``cacard`` command uses
too) renders their events and the daemons' own structlog events alike.
"""

from __future__ import annotations

import logging

from cardfloor.stdio import LogFormat, configure_logging

__all__ = ["LogFormat", "configure_logging", "level_from_debug"]


def level_from_debug(debug: int) -> int:
    """libcacard's ``-d N``: 0 logs state changes, 1 and above every APDU."""
    return logging.DEBUG if debug > 0 else logging.INFO
