"""The guest's kernel: Debian's package, unpacked, its modules in load order, booted via PVH."""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import re
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .host import COMMAND_TIMEOUT, ImageBuildError, file_stamp, run

#: The meta package whose dependency names the kernel package to download.
KERNEL_META_PACKAGE = "linux-image-amd64"

#: Module groups the guest script loads by name (``load-modules usb``). The dependencies of
#: each listed module are added depth-first from ``modules.dep``. EHCI comes before its
#: UHCI/OHCI companions, as the kernel asks.
MODULE_GROUPS: Mapping[str, tuple[str, ...]] = {
    "fw_cfg": ("qemu_fw_cfg",),
    "usb": ("ehci-pci", "uhci-hcd", "ohci-pci", "xhci-pci"),
    "usbip": ("vhci-hcd", "usbip-host"),
    "net": ("virtio_pci", "virtio_net"),
}

#: Module trees extracted from the kernel package (a superset, so modules.dep is complete).
KERNEL_MEMBERS: tuple[str, ...] = (
    "kernel/drivers/usb/*",
    "kernel/drivers/firmware/qemu_fw_cfg.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/virtio/*",
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
)


@dataclass(frozen=True)
class KernelPackage:
    name: str
    version: str

    @property
    def deb_name(self) -> str:
        # Debian file names replace ':' (an epoch) with '%3a'.
        return f"{self.name}_{self.version.replace(':', '%3a')}_amd64.deb"


def _apt_lists_stamp() -> str:
    """Changes whenever ``apt-get update`` brings new package lists."""
    lists = sorted(Path("/var/lib/apt/lists").glob("*_Packages*"))
    return hashlib.sha256("".join(file_stamp(str(p)) for p in lists).encode()).hexdigest()


def kernel_package(cache_dir: Path) -> KernelPackage:
    """The versioned kernel package that ``linux-image-amd64`` currently depends on.

    apt-cache takes about 0.6 s here (no pkgcache.bin), so the answer is remembered in
    ``cache_dir`` until the package lists change.
    """
    memo = cache_dir / "kernel-package.json"
    stamp = _apt_lists_stamp()
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(memo.read_text())
        if data["stamp"] == stamp:
            return KernelPackage(str(data["name"]), str(data["version"]))
    show = run(["apt-cache", "show", "--no-all-versions", KERNEL_META_PACKAGE])
    match = re.search(r"^Depends:.*?\b(linux-image-[^\s,]+)(?: \(= ([^)\s]+)\))?", show, re.M)
    if match is None:
        raise ImageBuildError(f"{KERNEL_META_PACKAGE} names no linux-image package: {show}")
    name, version = match.group(1), match.group(2)
    if version is None:
        detail = run(["apt-cache", "show", "--no-all-versions", name])
        found = re.search(r"^Version:\s*(\S+)", detail, re.MULTILINE)
        if found is None:
            raise ImageBuildError(f"apt-cache show {name} gives no version")
        version = found.group(1)
    memo.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=memo.parent, delete=False) as scratch:
        scratch.write(json.dumps({"stamp": stamp, "name": name, "version": version}) + "\n")
    Path(scratch.name).replace(memo)  # atomic: concurrent readers never see half of it
    return KernelPackage(name, version)


def download_kernel(package: KernelPackage, downloads: Path) -> Path:
    """The kernel .deb, downloaded once into ``downloads``."""
    deb = downloads / package.deb_name
    if deb.exists():
        return deb
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".download-") as scratch:
        run(["apt-get", "download", f"{package.name}={package.version}"], cwd=Path(scratch))
        fetched = list(Path(scratch).glob("*.deb"))
        if len(fetched) != 1:
            raise ImageBuildError(f"apt-get download {package.name} gave {fetched}")
        fetched[0].rename(deb)
    for stale in downloads.glob("linux-image-*.deb"):
        if stale != deb:
            stale.unlink()
    return deb


def extract_kernel(deb: Path, into: Path, busybox: str) -> tuple[Path, Path, str]:
    """Unpack vmlinuz and the module trees; returns (vmlinuz, modules dir, version)."""
    patterns = ["./boot/vmlinuz-*", *(f"./lib/modules/*/{member}" for member in KERNEL_MEMBERS)]
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    ) as deb_tar:
        try:
            tar = subprocess.run(
                ["tar", "-x", "--wildcards", "-C", str(into), *patterns],
                stdin=deb_tar.stdout,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        finally:
            deb_tar.kill()
    if tar.returncode != 0:
        raise ImageBuildError(f"unpacking {deb.name} failed: {tar.stderr.strip()}")
    kernels = list((into / "boot").glob("vmlinuz-*"))
    trees = list((into / "lib" / "modules").iterdir())
    if len(kernels) != 1 or len(trees) != 1:
        raise ImageBuildError(f"{deb.name}: expected one kernel and module tree, got {kernels}")
    version = trees[0].name
    run([busybox, "depmod", "-b", str(into), version])
    return kernels[0], trees[0], version


_XEN_ELFNOTE_PHYS32_ENTRY = 18
_PT_NOTE = 4


def has_pvh_entry(elf: bytes) -> bool:
    """Whether an ELF64 kernel carries the PVH entry note QEMU needs to boot it directly."""
    if elf[:5] != b"\x7fELF\x02":
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", elf, phoff + index * phentsize
        )
        if p_type != _PT_NOTE:
            continue
        position, end = p_offset, p_offset + p_filesz
        while position + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, position)
            name = elf[position + 12 : position + 12 + namesz]
            if name == b"Xen\0" and note_type == _XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            position += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def uncompressed_kernel(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside a bzImage (XZ or gzip payload), if QEMU can boot it with PVH.

    Booting that directly skips the kernel's self-decompression, which takes about 2.5 s of
    the guest's ~4.5 s boot under TCG.
    """
    formats: tuple[tuple[bytes, Callable[[], lzma.LZMADecompressor | zlib._Decompress]], ...] = (
        (b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)),
        (b"\x1f\x8b\x08", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    )
    for magic, decompressor in formats:
        start = bzimage.find(magic)
        for _ in range(8):  # the magic may also occur by chance before the payload
            if start < 0:
                break
            try:
                elf = decompressor().decompress(bzimage[start:])
            except (lzma.LZMAError, zlib.error):
                elf = b""
            if has_pvh_entry(elf):
                return elf
            start = bzimage.find(magic, start + 1)
    return None


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``modules.dep``: module path -> the paths it depends on."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            module, _, needed = line.partition(":")
            deps[module.strip()] = needed.split()
    return deps


def module_load_order(deps: Mapping[str, Sequence[str]], wanted: Iterable[str]) -> list[str]:
    """Module paths for ``wanted`` names, dependencies first (depth-first, no repeats)."""
    by_name = {PurePosixPath(path).name.removesuffix(".ko"): path for path in deps}
    order: list[str] = []

    def visit(path: str, trail: tuple[str, ...]) -> None:
        if path in order:
            return
        if path in trail:
            raise ImageBuildError(f"module dependency cycle: {' -> '.join((*trail, path))}")
        for needed in deps.get(path, ()):
            if needed not in deps:
                raise ImageBuildError(f"{path} needs {needed}, which was not extracted")
            visit(needed, (*trail, path))
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise ImageBuildError(f"kernel module {name} not found")
        visit(by_name[name], ())
    return order
