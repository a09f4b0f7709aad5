"""Build the test guest: a Debian kernel and a busybox initramfs with the host's smart-card tools.

Everything comes from Debian packages: the kernel package that ``linux-image-amd64`` depends on
(``apt-get download``, only the kernel and a few modules kept), ``busybox-static``, and the
installed binaries of pcscd, libccid, OpenSC, usbip, pcsc-tools and openssl with the libraries
``ldd`` lists, plus those they ``dlopen``.

The result is cached under ``.cache/guest/images/<key>/``; the key hashes the builder's source,
the kernel package version, the installed versions of :data:`HOST_PACKAGES` and the path, size
and mtime of every host file copied in, so a second build with the same inputs does nothing.
A build happens in a temporary directory renamed into place, under a lock, so concurrent builds
and interrupted ones leave no half-made image behind.

Run ``python -m tests.interop.guest.image [--force]`` to build it by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import initramfs, kernel
from .cpio import write_tree
from .host import (
    HOST_PACKAGES,
    ImageBuildError,
    MissingHostPackageError,
    file_stamp,
    installed_versions,
)
from .initramfs import DEVICE_NODES, FW_CFG_SCRIPT, INIT, LOAD_MODULES, PROFILE, Staging
from .kernel import MODULE_GROUPS, KernelPackage, kernel_package, module_load_order

__all__ = [
    "FW_CFG_SCRIPT",
    "HOST_PACKAGES",
    "GuestImage",
    "ImageBuildError",
    "MissingHostPackageError",
    "build_image",
    "default_cache_dir",
]


@dataclass(frozen=True)
class GuestImage:
    """A built guest: boot ``kernel`` (an uncompressed PVH ELF, or a bzImage) with ``initramfs``."""

    kernel: Path
    initramfs: Path
    kernel_version: str
    key: str

    @property
    def directory(self) -> Path:
        return self.kernel.parent


def default_cache_dir() -> Path:
    """``$VSCARD_GUEST_CACHE``, else ``.cache/guest`` at the repository root."""
    override = os.environ.get("VSCARD_GUEST_CACHE")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / ".cache" / "guest"


#: The builder's own modules: a change to any of them makes a new image.
BUILDER_SOURCES = ("image.py", "cpio.py", "host.py", "kernel.py", "initramfs.py")


@dataclass(frozen=True)
class BuildInputs:
    kernel: KernelPackage
    packages: Mapping[str, str]
    busybox: str
    userspace: initramfs.Userspace

    def key(self) -> str:
        digest = hashlib.sha256()
        for source in BUILDER_SOURCES:
            digest.update((Path(__file__).parent / source).read_bytes())
        digest.update(f"{self.kernel.name} {self.kernel.version}\n".encode())
        for name, version in sorted(self.packages.items()):
            digest.update(f"{name} {version}\n".encode())
        for path in [self.busybox, *self.userspace.files, *self.userspace.dereferenced]:
            digest.update(file_stamp(path).encode() + b"\n")
        return digest.hexdigest()[:16]


def collect_inputs(cache_dir: Path) -> BuildInputs:
    return BuildInputs(
        kernel=kernel_package(cache_dir),
        packages=installed_versions(HOST_PACKAGES),
        busybox=initramfs.busybox_path(),
        userspace=initramfs.userspace(),
    )


# --- building -----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(inputs: BuildInputs, scratch: Path, downloads: Path) -> str:
    """Build into ``scratch`` (kernel, initramfs.cpio); returns the kernel version."""
    deb = kernel.download_kernel(inputs.kernel, downloads)
    unpacked = scratch / "deb"
    unpacked.mkdir()
    vmlinuz, modules, kernel_version = kernel.extract_kernel(deb, unpacked, inputs.busybox)
    elf = kernel.uncompressed_kernel(vmlinuz.read_bytes())
    if elf is None:  # not PVH-bootable: boot the bzImage (slower, same kernel)
        shutil.copyfile(vmlinuz, scratch / "kernel")
    else:
        (scratch / "kernel").write_bytes(elf)

    tree = Staging(scratch / "root")
    deps = kernel.parse_modules_dep((modules / "modules.dep").read_text())
    for group, wanted in MODULE_GROUPS.items():
        order = module_load_order(deps, wanted)
        for module in order:
            target = tree.root / "usr/lib/modules/vscard" / module
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(modules / module, target)
        tree.write(f"/usr/lib/modules/vscard/{group}.order", "".join(f"{m}\n" for m in order))
    shutil.rmtree(unpacked)

    for path in inputs.userspace.files:
        tree.add(path)
    for path in inputs.userspace.dereferenced:
        tree.add_dereferenced(path)
    tree.install_busybox(inputs.busybox)
    tree.write("/init", INIT, 0o755)
    tree.write("/usr/bin/load-modules", LOAD_MODULES, 0o755)
    tree.write("/etc/profile", PROFILE)
    tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    tree.write("/etc/group", "root:x:0:\n")

    with (scratch / "initramfs.cpio").open("wb") as out:
        write_tree(tree.root, out, DEVICE_NODES)
    shutil.rmtree(tree.root)
    return kernel_version


def _image_at(directory: Path, key: str) -> GuestImage | None:
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    image = GuestImage(
        kernel=directory / "kernel",
        initramfs=directory / "initramfs.cpio",
        kernel_version=str(data["kernel_version"]),
        key=key,
    )
    if not (image.kernel.exists() and image.initramfs.exists()):
        return None
    return image


def build_image(*, force: bool = False, cache_dir: Path | None = None) -> GuestImage:
    """The guest image for the current host packages, built only when its inputs changed."""
    cache = cache_dir or default_cache_dir()
    inputs = collect_inputs(cache)
    key = inputs.key()
    images = cache / "images"
    final = images / key
    if not force and (image := _image_at(final, key)) is not None:
        return image
    with _locked(cache / ".lock"):
        if not force and (image := _image_at(final, key)) is not None:
            return image  # another process built it while we waited
        images.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=images, prefix=".build-"))
        try:
            kernel_version = _build(inputs, scratch, cache / "downloads")
            manifest = {
                "key": key,
                "kernel_package": f"{inputs.kernel.name}={inputs.kernel.version}",
                "kernel_version": kernel_version,
                "packages": dict(inputs.packages),
                "files": list(inputs.userspace.files),
            }
            (scratch / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            scratch.chmod(0o755)  # mkdtemp made it private
            if final.exists():
                shutil.rmtree(final)
            scratch.rename(final)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch)
        for other in images.iterdir():
            if other != final:
                shutil.rmtree(other, ignore_errors=True)
    image = _image_at(final, key)
    if image is None:
        raise ImageBuildError(f"{final} is incomplete after the build")
    return image


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.interop.guest.image", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--cache-dir", type=Path, help="default: .cache/guest in the repository")
    options = parser.parse_args(argv)
    started = time.monotonic()
    try:
        image = build_image(force=options.force, cache_dir=options.cache_dir)
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201
        return 1
    elapsed = time.monotonic() - started
    size = image.initramfs.stat().st_size / 1e6
    print(f"kernel    {image.kernel} ({image.kernel_version})")  # noqa: T201
    print(f"initramfs {image.initramfs} ({size:.1f} MB)")  # noqa: T201
    print(f"key       {image.key}, {elapsed:.1f} s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
