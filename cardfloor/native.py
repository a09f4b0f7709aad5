"""What the compiled build (scripts/build-compiled, docs/compiled.md) needs from the source.

``mypyc_attr`` for the classes it compiles: mypyc reads the decorator when it compiles a
module, and never calls it. Pure Python calls it, and must not need mypy_extensions (a
dependency of mypy, not of this distribution): there it returns the class unchanged.

:func:`is_native` tells a module whether a class it builds by hand was compiled.
"""

from __future__ import annotations

from types import FunctionType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*attrs, **kwattrs):
        return lambda cls: cls


def is_native(cls: type) -> bool:
    """Whether mypyc compiled ``cls`` (a native class lists its attributes in
    ``__mypyc_attrs__``). A compiled module may store to a native frozen dataclass's fields
    directly (the frozen ``__setattr__`` guards Python callers only); a Python class needs
    :mod:`cardfloor.frozen`'s slot setters instead."""
    return "__mypyc_attrs__" in vars(cls)


def is_compiled(function: object) -> bool:
    """Whether mypyc compiled the module that defines ``function``: its functions are then
    built-in functions, not Python ones."""
    return not isinstance(function, FunctionType)
