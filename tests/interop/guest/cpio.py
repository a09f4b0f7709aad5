"""A deterministic writer for the ``newc`` cpio format the kernel unpacks as an initramfs.

Our own writer instead of GNU cpio: it needs no root for device nodes (``/dev/console`` must exist
before ``/init`` runs, or init starts without a console), and every header is reproducible
(owner root, mtime 0), so the same inputs give the same bytes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class DeviceNode:
    """A character device to create in the archive, e.g. ``dev/console`` (5, 1)."""

    path: str
    major: int
    minor: int
    mode: int = 0o600


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


class CpioWriter:
    """Writes entries one by one; ``close`` appends the trailer."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._ino = 0

    def _entry(
        self,
        name: str,
        mode: int,
        data: bytes = b"",
        *,
        nlink: int = 1,
        rdev: tuple[int, int] = (0, 0),
    ) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (
            self._ino,
            mode,
            0,  # uid
            0,  # gid
            nlink,
            0,  # mtime
            len(data),
            0,  # devmajor
            0,  # devminor
            rdev[0],
            rdev[1],
            len(encoded),
            0,  # check
        )
        header = NEWC_MAGIC + b"".join(b"%08X" % field for field in fields)
        self._out.write(header + encoded + _pad4(len(header) + len(encoded)))
        self._out.write(data + _pad4(len(data)))

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def device(self, node: DeviceNode) -> None:
        self._entry(node.path, stat.S_IFCHR | node.mode, rdev=(node.major, node.minor))

    def close(self) -> None:
        self._entry(TRAILER, 0, nlink=1)


def write_tree(root: Path, out: BinaryIO, devices: Iterable[DeviceNode] = ()) -> None:
    """Archive everything under ``root`` (names relative to it), then ``devices``.

    Entries are sorted so that a directory always precedes its contents. Symlinks are stored as
    links, never followed; file modes keep only the permission bits.
    """
    writer = CpioWriter(out)
    paths: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        paths.extend(base / name for name in dirnames)
        paths.extend(base / name for name in filenames)
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        name = path.relative_to(root).as_posix()
        info = path.lstat()
        permissions = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            writer.symlink(name, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            writer.directory(name, permissions)
        elif stat.S_ISREG(info.st_mode):
            writer.file(name, path.read_bytes(), permissions)
        else:
            raise ValueError(f"cannot archive {path}: not a file, directory or symlink")
    for node in devices:
        writer.device(node)
    writer.close()
