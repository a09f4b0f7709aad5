"""Small host-side helpers for the image builder: bounded commands, errors, ELF and ldd facts."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Debian packages the guest test rig needs on the host (the CI setup installs them):
#: files for the initramfs, ``certutil`` for the reference card's NSS DB, and QEMU itself.
HOST_PACKAGES: tuple[str, ...] = (
    "busybox-static",
    "pcscd",
    "libccid",
    "opensc",
    "opensc-pkcs11",
    "pcsc-tools",
    "usbip",
    "openssl",
    "libnss3-tools",
    "qemu-system-x86",
)

COMMAND_TIMEOUT = 120.0
"""Bound for each host command the builder runs (downloads included)."""


class ImageBuildError(RuntimeError):
    """A build step failed."""


class MissingHostPackageError(ImageBuildError):
    """The host lacks a package of :data:`HOST_PACKAGES` (tests skip on this one)."""


def run(args: Sequence[str], *, cwd: Path | None = None) -> str:
    try:
        completed = subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as error:
        raise MissingHostPackageError(f"{args[0]} is not installed: {error}") from error
    except subprocess.TimeoutExpired as error:
        raise ImageBuildError(f"{' '.join(args)} took longer than {COMMAND_TIMEOUT} s") from error
    if completed.returncode != 0:
        raise ImageBuildError(
            f"{' '.join(args)} failed ({completed.returncode}): {completed.stderr.strip()}"
        )
    return completed.stdout


def installed_versions(packages: Iterable[str]) -> dict[str, str]:
    """``dpkg-query`` versions; raises naming every package that is not installed."""
    names = list(packages)
    out = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status} ${Version}\n", *names])
    versions: dict[str, str] = {}
    for line in out.splitlines():
        package, status, *version = line.split()
        if status == "installed" and version:
            versions[package] = version[0]
    missing = [name for name in names if name not in versions]
    if missing:
        raise MissingHostPackageError(
            f"missing host packages: {' '.join(missing)} "
            f"(apt-get install {' '.join(HOST_PACKAGES)})"
        )
    return versions


def ldconfig_paths() -> dict[str, str]:
    paths: dict[str, str] = {}
    for line in run(["ldconfig", "-p"]).splitlines():
        match = re.match(r"\s*(\S+) \((libc6,x86-64)[^)]*\) => (\S+)", line)
        if match:
            paths.setdefault(match.group(1), match.group(3))
    return paths


def ldd(path: str) -> list[str]:
    libraries: list[str] = []
    for line in run(["ldd", path]).splitlines():
        # "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" or "/lib64/ld-linux... (0x...)"
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libraries.append(match.group(1))
        elif "not found" in line:
            raise ImageBuildError(f"ldd {path}: {line.strip()}")
    return libraries


_PT_INTERP = 3


def is_static_elf(data: bytes) -> bool:
    """An ELF64 executable without a program interpreter (no dynamic loader needed)."""
    if data[:5] != b"\x7fELF\x02":
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return _PT_INTERP not in types


def file_stamp(path: str) -> str:
    info = os.stat(path)
    return f"{path} {info.st_size} {info.st_mtime_ns}"
