"""Building frozen dataclass instances field by field, for the codecs' hot paths.

A frozen dataclass's generated ``__init__`` stores each field through ``object.__setattr__``
and then runs ``__post_init__``: for a decoded APDU, XfrBlock or CMD_SUBMIT that costs more
than the rest of decoding it. A decoder whose wire format already guarantees everything
``__post_init__`` checks may instead create the instance with ``object.__new__`` and store the
fields through the class's slot setters. The result is the same object the constructor would
build (the codecs' tests check it equals one and passes ``dataclasses.replace``).
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
from collections.abc import Callable

SlotSetter = Callable[[object, object], None]


def slot_setters(cls: type, fields: tuple[str, ...]) -> tuple[SlotSetter, ...]:
    """The slot setters of ``cls``'s ``fields``, in that order.

    ``fields`` must be exactly the dataclass's fields, so a field added later is never left
    unset: otherwise :class:`TypeError` at import, naming both lists.
    """
    actual = tuple(field.name for field in dataclasses.fields(cls))
    if actual != fields:
        raise TypeError(f"{cls.__qualname__} has fields {actual}; a decoder builds {fields}")
    return tuple(vars(cls)[name].__set__ for name in fields)


def copy_by_constructor(*classes: type) -> None:
    """Let :mod:`pickle`, :func:`copy.copy` and :func:`copy.deepcopy` rebuild ``classes``
    (frozen dataclasses) through their constructors, from their ``init`` fields.

    Python's frozen slots dataclasses restore their fields with ``object.__setattr__``; the
    native classes of the compiled build (docs/compiled.md) restore them through ``setattr``,
    which their frozen ``__setattr__`` refuses. Registered with :mod:`copyreg`, both builds copy
    and pickle the same way, and a copy is checked as any new value is.
    """
    for cls in classes:
        names = tuple(field.name for field in dataclasses.fields(cls) if field.init)
        copyreg.pickle(cls, functools.partial(_reduce, names))


def _reduce(names: tuple[str, ...], value: object) -> tuple[type, tuple[object, ...]]:
    return type(value), tuple(getattr(value, name) for name in names)
