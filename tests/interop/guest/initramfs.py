"""The guest's initramfs: busybox, the host's smart-card tools with their libraries, our /init.

Host files keep their paths (Debian's merged /usr included): a file reached through a symlink on
the host is reached through the same symlink in the guest, so SONAME links and plugin paths
compiled into the binaries (libccid's bundle, OpenSC's PKCS#11 module) just work.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .cpio import DeviceNode
from .host import (
    HOST_PACKAGES,
    ImageBuildError,
    MissingHostPackageError,
    is_static_elf,
    ldconfig_paths,
    ldd,
    run,
)

#: Binaries copied from the host, each with its ``ldd`` libraries.
GUEST_BINARIES: tuple[str, ...] = (
    "/usr/sbin/pcscd",
    "/usr/sbin/usbip",
    "/usr/sbin/usbipd",
    "/usr/bin/opensc-tool",
    "/usr/bin/pkcs15-tool",
    "/usr/bin/pkcs11-tool",
    "/usr/bin/pcsc_scan",
    "/usr/bin/openssl",
)

#: libccid's bundle; pcscd dlopens the library. Info.plist is a symlink into /etc on Debian.
CCID_BUNDLE = "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents"

#: Shared objects loaded with dlopen, which ``ldd`` of the binaries cannot see.
DLOPEN_SONAMES: tuple[str, ...] = ("libpcsclite.so.1", "libgcc_s.so.1")
PKCS11_MODULE = "opensc-pkcs11.so"

#: Data files copied as they are (usb.ids only if present: usbip prints names from it).
GUEST_DATA: tuple[str, ...] = ("/etc/opensc/opensc.conf",)
OPTIONAL_DATA: tuple[str, ...] = ("/usr/share/misc/usb.ids",)

#: Where the host's script reaches the guest (QEMU ``-fw_cfg name=...``).
FW_CFG_SCRIPT = "opt/vscard/script"

INIT = f"""#!/bin/sh
# /init of the vscard test guest: mount, run the script the host passed through fw_cfg,
# power off. Without a script it starts an interactive shell.
export PATH=/usr/sbin:/usr/bin HOME=/root TERM=linux
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
# Kernel messages would interleave with result lines on the same console: emergencies only.
echo 1 >/proc/sys/kernel/printk
ip link set lo up
load-modules fw_cfg
script=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_SCRIPT}/raw
if [ -r "$script" ]; then
    cp "$script" /run/script.sh
    sh /run/script.sh
else
    echo "vscard guest: no script given; a shell (exit it to power off)"
    setsid cttyhack sh -l
fi
poweroff -f
"""

LOAD_MODULES = """#!/bin/sh
# load-modules GROUP...: insmod a group's modules in dependency order (no kmod in the guest).
status=0
for group in "$@"; do
    order=/lib/modules/vscard/$group.order
    [ -r "$order" ] || { echo "load-modules: no group $group" >&2; status=1; continue; }
    while read -r module; do
        name=${module##*/}
        name=${name%.ko}
        [ -d "/sys/module/$(echo "$name" | tr - _)" ] && continue
        insmod "/lib/modules/vscard/$module" || status=1
    done <"$order"
done
exit $status
"""

PROFILE = """export PATH=/usr/sbin:/usr/bin HOME=/root TERM=${TERM:-linux}
export PS1='guest# '
"""

DEVICE_NODES: tuple[DeviceNode, ...] = (
    DeviceNode("dev/console", 5, 1),
    DeviceNode("dev/null", 1, 3, 0o666),
)


@dataclass(frozen=True)
class Userspace:
    """Host files to copy, each at its own path (symlinks on the way are recreated)."""

    files: tuple[str, ...]
    """ELF files and data, copied with the symlinks that lead to them."""
    dereferenced: tuple[str, ...]
    """Symlinks copied as the file they point to (libccid's Info.plist)."""


def userspace() -> Userspace:
    """Find every host file the guest's tools need."""
    sonames = ldconfig_paths()
    missing = [soname for soname in DLOPEN_SONAMES if soname not in sonames]
    if missing:
        raise ImageBuildError(f"ldconfig does not know {', '.join(missing)}")
    libdir = PurePosixPath(sonames["libpcsclite.so.1"]).parent
    plugins = [
        f"{CCID_BUNDLE}/Linux/libccid.so",
        str(libdir / PKCS11_MODULE),
        str(libdir / "pkcs11" / PKCS11_MODULE),
        *(sonames[soname] for soname in DLOPEN_SONAMES),
    ]
    elves = [*GUEST_BINARIES, *plugins]
    for path in [*elves, *GUEST_DATA, f"{CCID_BUNDLE}/Info.plist"]:
        if not os.path.exists(path):
            raise MissingHostPackageError(
                f"{path} is missing (apt-get install {' '.join(HOST_PACKAGES)})"
            )
    files: dict[str, None] = dict.fromkeys(elves)
    for path in elves:
        files.update(dict.fromkeys(ldd(path)))
    files.update(dict.fromkeys(GUEST_DATA))
    files.update(dict.fromkeys(path for path in OPTIONAL_DATA if os.path.exists(path)))
    return Userspace(tuple(files), (f"{CCID_BUNDLE}/Info.plist",))


def busybox_path() -> str:
    path = shutil.which("busybox")
    if path is None:
        raise MissingHostPackageError("busybox is missing (apt-get install busybox-static)")
    if not is_static_elf(Path(path).read_bytes()):
        raise MissingHostPackageError(f"{path} is not static: apt-get install busybox-static")
    return path


class Staging:
    """The initramfs staging tree, mirroring host paths below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in ("dev", "proc", "sys", "run", "tmp", "root", "etc", "usr/bin", "usr/sbin"):
            (root / name).mkdir(parents=True, exist_ok=True)
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
            (root / link).symlink_to(target)
        (root / "lib64").symlink_to("usr/lib64")
        (root / "usr" / "lib64").mkdir()
        (root / "var").mkdir()
        (root / "var" / "run").symlink_to("/run")

    def _inside(self, path: PurePosixPath) -> Path:
        return self.root / path.relative_to("/")

    def add(self, host_path: str) -> None:
        """Copy a host file to the same path, recreating every symlink met on the way."""
        path = PurePosixPath(os.path.normpath(host_path))
        current = PurePosixPath("/")
        for index, part in enumerate(path.parts[1:], start=1):
            current = current / part
            host = Path(current)
            inside = self._inside(current)
            if host.is_symlink():
                target = os.readlink(host)
                if not inside.is_symlink():
                    inside.parent.mkdir(parents=True, exist_ok=True)
                    if inside.exists():
                        raise ImageBuildError(f"{current} is a symlink on the host, not in guest")
                    inside.symlink_to(target)
                resolved = os.path.normpath(os.path.join(host.parent, target))
                self.add(str(PurePosixPath(resolved, *path.parts[index + 1 :])))
                return
            if index == len(path.parts) - 1:
                if not inside.exists():
                    inside.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(host, inside)
                return
            if not inside.is_dir():
                inside.mkdir(parents=True, exist_ok=True)

    def add_dereferenced(self, host_path: str) -> None:
        inside = self._inside(PurePosixPath(host_path))
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host_path, inside)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        inside = self._inside(PurePosixPath(path))
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.write_text(text)
        inside.chmod(mode)

    def install_busybox(self, busybox: str) -> None:
        self.add_dereferenced_as(busybox, "/usr/bin/busybox", 0o755)
        for applet in run([busybox, "--list-full"]).split():
            inside = self.root / applet
            # Real binaries win; merged /usr means bin/x and usr/bin/x are the same file.
            if not inside.exists() and not inside.is_symlink():
                inside.parent.mkdir(parents=True, exist_ok=True)
                inside.symlink_to("/usr/bin/busybox")

    def add_dereferenced_as(self, host_path: str, path: str, mode: int) -> None:
        inside = self._inside(PurePosixPath(path))
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host_path, inside)
        inside.chmod(mode)
