"""``mypyc_attr`` for the classes the compiled build compiles (scripts/build-compiled).

mypyc reads the decorator when it compiles a module, and never calls it. Pure Python calls it,
and must not need mypy_extensions (a dependency of mypy, not of this distribution): there it
returns the class unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*attrs, **kwattrs):
        return lambda cls: cls
