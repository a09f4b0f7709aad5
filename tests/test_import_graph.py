"""Who may import whom: the floor imports none of the packages, the CCID reader and the card
never import VSCard, and each sans-IO core imports alone, without asyncio servers, ssl or
structlog."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vscard", "ccid", "cacard", "daemons", "cardfloor")


def imported_packages(path: Path) -> set[str]:
    """The top-level packages ``path`` imports by absolute name (relative imports stay inside
    its own package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found & set(PACKAGES)


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("cardfloor", {"cardfloor"}),
        ("ccid", {"ccid", "cardfloor"}),
        ("cacard", {"cacard", "cardfloor"}),
        ("vscard", {"vscard", "cardfloor"}),
    ],
)
def test_a_package_imports_only_itself_and_the_floor(package: str, allowed: set[str]) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - allowed)
        for path in modules_of(package)
        if imported_packages(path) - allowed
    }
    assert wrong == {}


#: Modules a sans-IO core must not load: no event loop, no TLS, no structlog, no adapters.
FORBIDDEN = (
    "asyncio",
    "ssl",
    "structlog",
    "vscard.asyncio",
    "ccid.device",
    "ccid.usbip.server",
    "ccid.usbip.client",
)
CORES = (
    "vscard",
    "vscard.codec",
    "vscard.host",
    "vscard.client",
    "ccid",
    "ccid.reader",
    "ccid.usbip",
    "ccid.usbip.connection",
    "cacard.card",
    "cardfloor.iso7816.apdu",
    "cardfloor.iso7816.atr",
    "cardfloor.iso7816.trace",
    "cardfloor.log",
)


def loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after ``statement``."""
    script = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


@pytest.mark.parametrize("core", CORES)
def test_each_core_imports_alone(core: str) -> None:
    loaded = loaded_after(f"import {core}")
    assert sorted(name for name in FORBIDDEN if name in loaded) == []
    if core.startswith(("ccid", "cacard")):
        assert not any(name == "vscard" or name.startswith("vscard.") for name in loaded)


def test_the_asyncio_adapters_load_on_first_use() -> None:
    loaded = loaded_after("import vscard, ccid, ccid.usbip; vscard.serve; ccid.usbip.serve_usbip")
    assert {"vscard.asyncio.server", "ccid.usbip.server", "asyncio"} <= loaded
    assert "ccid.device" not in loaded
