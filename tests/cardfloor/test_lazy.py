"""A package's lazy names load on first use, once, and old names warn."""

from __future__ import annotations

import sys
import types

import pytest

from cardfloor.lazy import lazy_exports


def package_with(
    lazy: dict[str, str], deprecated: dict[str, str] | None = None
) -> types.ModuleType:
    module = types.ModuleType("lazy_test_package")
    module.__path__ = []  # a package, so relative names resolve against it
    getattr_, dir_ = lazy_exports(module.__name__, vars(module), lazy, deprecated=deprecated)
    module.__getattr__ = getattr_  # type: ignore[method-assign]
    module.__dir__ = dir_  # type: ignore[method-assign]
    return module


def test_a_lazy_name_loads_its_module_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    package = package_with({"dumps": "json"})
    monkeypatch.delitem(sys.modules, "json", raising=False)
    assert "dumps" in dir(package)
    import json

    assert package.dumps is json.dumps
    assert vars(package)["dumps"] is json.dumps  # stored: the next access is a plain attribute


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = package_with({}).nothing


def test_an_old_name_warns_and_gives_the_new_one() -> None:
    package = package_with({"dumps": "json"}, deprecated={"to_json": "dumps"})
    import json

    with pytest.warns(DeprecationWarning, match="lazy_test_package.to_json is deprecated"):
        old = package.to_json
    assert old is json.dumps
