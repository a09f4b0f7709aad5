"""What users get from the distribution: ``--version`` on every command, and (marked
``packaging``) the sdist and wheel as pip and PyPI see them.

The package list comes from pyproject.toml (``[tool.setuptools.packages.find] include``), so a
package added there is checked without editing this file.
"""

from __future__ import annotations

import email
import fnmatch
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from cardfloor.version import build

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
NAME: str = PROJECT["name"]
VERSION: str = PROJECT["version"]
SCRIPTS: list[str] = sorted(PROJECT["scripts"])
INCLUDE: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
# Directories of the repository that are not installed and stay out of the sdist too.
NOT_SHIPPED = {"tests", "benchmarks", "examples", "scripts"}


def top_level_packages() -> list[str]:
    """The repository's top-level packages that the find include selects."""
    return sorted(
        path.name
        for path in ROOT.iterdir()
        if (path / "__init__.py").is_file()
        and any(fnmatch.fnmatchcase(path.name, pattern) for pattern in INCLUDE)
    )


def source_modules() -> set[str]:
    """Every .py file of those packages, as a path relative to the repository."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in top_level_packages()
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }


@pytest.mark.parametrize("command", SCRIPTS)
def test_version_option_prints_the_installed_version(command: str) -> None:
    done = subprocess.run(
        [Path(sys.executable).parent / command, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The compiled build says so after the version (tests/test_compiled.py checks that side).
    suffix = "" if build() == "pure Python" else f", {build()}"
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{command} {VERSION}{suffix}\n", "")


def test_every_package_of_the_repository_is_shipped() -> None:
    # A package left out of pyproject's find include installs without it, and its importers fail.
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - NOT_SHIPPED
    assert set(top_level_packages()) == packages
    assert {"vscard", "ccid", "cacard", "daemons"} <= packages


# --- The built distributions -------------------------------------------------------------


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a build or install step; its output is the failure message."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _working_tree_copy(dest: Path) -> None:
    """Copy the files git tracks or would track, as a fresh checkout has them: the build must
    need nothing ignored, and writes its egg-info there instead of into the shared checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in listed.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():  # tracked files deleted in the tree are listed too
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built as ``python -m build`` does (the wheel from the sdist)."""
    tmp = tmp_path_factory.mktemp("dist")
    _working_tree_copy(tmp / "src")
    _run(sys.executable, "-m", "build", "--outdir", tmp / "out", tmp / "src")
    sdist = tmp / "out" / f"{NAME}-{VERSION}.tar.gz"
    wheel = tmp / "out" / f"{NAME}-{VERSION}-py3-none-any.whl"
    assert sorted((tmp / "out").iterdir()) == sorted([sdist, wheel])
    return sdist, wheel


@pytest.mark.packaging
def test_twine_accepts_both(dists: tuple[Path, Path]) -> None:
    _run(sys.executable, "-m", "twine", "check", "--strict", *dists)


@pytest.mark.packaging
def test_wheel_holds_the_packages_and_their_type_marks(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[1]) as wheel:
        names = set(wheel.namelist())
        info = f"{NAME}-{VERSION}.dist-info"
        metadata = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
        licence = wheel.read(f"{info}/licenses/LICENSE")
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()

    packages = top_level_packages()
    assert {name.split("/")[0] for name in names} == {*packages, info}
    assert {f"{package}/py.typed" for package in packages} <= names
    assert {name for name in names if name.endswith(".py")} == source_modules()

    assert (metadata["Name"], metadata["Version"]) == (NAME, VERSION)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert licence == (ROOT / "LICENSE").read_bytes()
    for script in SCRIPTS:
        assert f"{script} = {PROJECT['scripts'][script]}" in entry_points


@pytest.mark.packaging
def test_sdist_holds_the_sources_licence_and_changelog(dists: tuple[Path, Path]) -> None:
    prefix = f"{NAME}-{VERSION}/"
    with tarfile.open(dists[0]) as sdist:
        names = {member.name.removeprefix(prefix) for member in sdist.getmembers()}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO"} <= names
    assert source_modules() <= names
    assert not {name.split("/")[0] for name in names} & NOT_SHIPPED


def _optional_imports() -> set[str]:
    """Import names of distributions that only extras bring (pyscard's ``smartcard``, ...),
    as far as this environment has them installed."""
    required = {_dist_name(spec) for spec in PROJECT["dependencies"]}
    optional = {
        _dist_name(spec) for specs in PROJECT["optional-dependencies"].values() for spec in specs
    } - required
    return {
        module
        for module, dists in packages_distributions().items()
        if any(_normalise(dist) in optional for dist in dists)
    }


def _dist_name(spec: str) -> str:
    end = next((i for i, c in enumerate(spec) if not (c.isalnum() or c in "-_.")), len(spec))
    return _normalise(spec[:end])


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# Run by the fresh venv's interpreter: import every module of the installed packages from the
# venv itself, so a module the wheel lacks, or a dependency pyproject does not declare, fails.
IMPORT_ALL = """
import importlib, pkgutil, sys
packages, optional, venv = sys.argv[1].split(","), set(sys.argv[2].split(",")), sys.argv[3]
for package in packages:
    module = importlib.import_module(package)
    assert module.__file__.startswith(venv), module.__file__
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # runs its command
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] not in optional:
                raise
"""


@pytest.mark.packaging
def test_sdist_installs_into_a_fresh_venv(dists: tuple[Path, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # venv builds on the base interpreter: on Debian 12 its own pip, as a user has it.
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", "--quiet", dists[0], cwd=tmp_path)

    packages = top_level_packages()
    _run(
        venv / "bin" / "python",
        "-I",
        "-c",
        IMPORT_ALL,
        ",".join(packages),
        ",".join(sorted(_optional_imports())),
        str(venv),
        cwd=tmp_path,
    )
    for command in SCRIPTS:
        assert _run(venv / "bin" / command, "--version", cwd=tmp_path) == f"{command} {VERSION}\n"
