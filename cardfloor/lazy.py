"""Names a package exports but loads on first use (PEP 562), so that importing a sans-IO core
never loads the asyncio adapters, ``ssl`` or a server beside it (websockets does the same).

In the package's ``__init__``::

    __getattr__, __dir__ = lazy_exports(__name__, globals(), {"serve": ".asyncio.server"})

with the same names imported under ``if TYPE_CHECKING:`` for type checkers.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping, MutableMapping


def lazy_exports(
    package: str,
    namespace: MutableMapping[str, object],
    lazy: Mapping[str, str],
    *,
    deprecated: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``.

    ``lazy`` maps each name to the module (relative to ``package``) that defines it; a loaded
    name is stored in ``namespace`` so the next access is a plain attribute. ``deprecated`` maps
    old names to the new names they stand for; using one warns with DeprecationWarning.
    """
    renamed = dict(deprecated or {})

    def __getattr__(name: str) -> object:
        if name in renamed:
            new = renamed[name]
            warnings.warn(
                f"{package}.{name} is deprecated, use {package}.{new}",
                DeprecationWarning,
                stacklevel=2,
            )
            return namespace[new] if new in namespace else __getattr__(new)
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *lazy, *renamed})

    return __getattr__, __dir__
