"""Build and drive libcacard's reference VSCard client, ``vscclient``.

Debian ships libcacard (``libcacard0``, ``libcacard-dev``) but no ``vscclient`` binary. Its source
package has ``src/vscclient.c``, which compiles on its own against the installed library and glib:
no ``config.h`` is needed (upstream's meson build does not give it one either, so ``ENABLE_PCSC``
stays off there too, and ``-p`` answers "No PCSC support").

:func:`build_vscclient` fetches the source of exactly the installed version (``apt-get source
libcacard=<version>``, which needs a deb-src entry: :data:`DEB_SRC_SETUP`, or
:func:`enable_deb_src`), compiles it with gcc, and caches the binary under
``.cache/vscclient/<version>-<recipe>/``. The build runs in a temporary directory that is renamed
into place, under a lock, so concurrent or interrupted builds never leave half a binary.

One addition of ours is linked in: a constructor that makes stdout line-buffered. vscclient
prints with stdio and flushes only after its prompt, so on a pipe the ``-d`` trace (``Header:
type=...``) would otherwise sit in a 4 KiB buffer.

:func:`run_vscclient` runs it against a host and port with an ``-e`` string. Its traps
(libcacard's ``src/vscclient.c``, ``do_command``): stdin must stay an open pipe (it spins at EOF),
and ``exit`` calls exit(0) before the queued CardRemove/ReaderRemove are flushed, so the host
sees only a TCP close.

Run ``python -m tests.interop.libcacard.vscclient [--enable-deb-src] [--force]`` to build by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: Debian packages this module needs on the host (QEMU and certutil for its tests).
HOST_PACKAGES: Final[tuple[str, ...]] = (
    "dpkg-dev",
    "gcc",
    "libc6-dev",
    "pkg-config",
    "libcacard-dev",
    "libglib2.0-dev",
    "libnss3-tools",
    "qemu-system-x86",
    "util-linux",
)

SOURCE_PACKAGE: Final = "libcacard"
#: The binary package whose headers we compile against; its source version is the cache key.
DEV_PACKAGE: Final = "libcacard-dev"

#: Where :func:`enable_deb_src` writes the deb-src entries.
DEB_SRC_FILE: Final = Path("/etc/apt/sources.list.d/vscard-deb-src.sources")
_DEB_SRC_TEMPLATE: Final = """\
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: {codename} {codename}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: {codename}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

#: The deb-src step as shell commands, safe to repeat (run as root).
DEB_SRC_SETUP: Final = f"""\
. /etc/os-release
cat > {DEB_SRC_FILE} <<EOF
{_DEB_SRC_TEMPLATE.replace("{codename}", "$VERSION_CODENAME")}EOF
apt-get update
"""

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
DEFAULT_CACHE_DIR: Final = REPO_ROOT / ".cache" / "vscclient"

_LINE_BUFFERED_STDOUT: Final = """\
#include <stdio.h>
__attribute__((constructor)) static void vscard_line_buffered_stdout(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
}
"""
_CFLAGS: Final[tuple[str, ...]] = ("-O2", "-g", "-Wall")
_PKG_CONFIG_MODULES: Final[tuple[str, ...]] = ("libcacard", "glib-2.0")
# Changing how we build changes the cache key.
_RECIPE: Final = json.dumps([_CFLAGS, _PKG_CONFIG_MODULES, _LINE_BUFFERED_STDOUT])

_PDEATHSIG: Final[tuple[str, ...]] = ("setpriv", "--pdeathsig", "KILL", "--")


class VscclientBuildError(RuntimeError):
    """vscclient could not be fetched or compiled; the message says which step and why."""


def missing_host_prerequisites() -> list[str]:
    """Tools this host lacks to build and run vscclient (empty when all is there)."""
    tools = ("apt-get", "dpkg-source", "dpkg-query", "gcc", "pkg-config", "setpriv")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        probe = subprocess.run(
            ["pkg-config", "--exists", *_PKG_CONFIG_MODULES], check=False, timeout=30
        )
        if probe.returncode != 0:
            missing.append("pkg-config modules " + " ".join(_PKG_CONFIG_MODULES))
    return missing


def enable_deb_src(path: Path = DEB_SRC_FILE) -> bool:
    """Write the deb-src entries and run ``apt-get update`` if they changed; True if they did."""
    release = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", release, re.MULTILINE)
    if match is None:
        raise VscclientBuildError("no VERSION_CODENAME in /etc/os-release")
    wanted = _DEB_SRC_TEMPLATE.format(codename=match.group(1))
    if path.exists() and path.read_text() == wanted:
        return False
    _write_atomically(path, wanted.encode())
    _run(["apt-get", "update"], "apt-get update", timeout=600)
    return True


def installed_source_version(package: str = DEV_PACKAGE) -> str:
    """The Debian source version (with epoch, e.g. ``1:2.8.0-3``) of an installed package."""
    result = _run(
        ["dpkg-query", "--show", "--showformat=${source:Version}", package],
        f"{package} is not installed",
    )
    return result.stdout.strip()


def cache_key(version: str) -> str:
    recipe = hashlib.sha256(_RECIPE.encode()).hexdigest()[:10]
    return f"{SOURCE_PACKAGE}_{version.replace(':', '_')}-{recipe}"


def build_vscclient(cache_dir: Path = DEFAULT_CACHE_DIR, *, force: bool = False) -> Path:
    """Path to a vscclient built from the installed libcacard's own source; builds if needed."""
    version = installed_source_version()
    target = cache_dir / cache_key(version)
    binary = target / "vscclient"
    if binary.is_file() and not force:
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        if binary.is_file() and not force:
            return binary  # another process built it while we waited
        with tempfile.TemporaryDirectory(prefix=".build-", dir=cache_dir) as scratch:
            built = _build(version, Path(scratch))
            if force and target.exists():
                shutil.rmtree(target)
            built.rename(target)
    return binary


def _build(version: str, scratch: Path) -> Path:
    """Fetch, unpack and compile into ``scratch/out``; returns that directory."""
    started = time.monotonic()
    source_dir = scratch / "source"
    source_dir.mkdir()
    _run(
        ["apt-get", "source", "--only-source", f"{SOURCE_PACKAGE}={version}"],
        f"apt-get source {SOURCE_PACKAGE}={version} (deb-src entry missing? see DEB_SRC_SETUP)",
        cwd=source_dir,
        timeout=600,
    )
    sources = sorted(source_dir.glob("*/src/vscclient.c"))
    if len(sources) != 1:
        raise VscclientBuildError(f"expected one */src/vscclient.c in {source_dir}: {sources}")
    helper = scratch / "line_buffered_stdout.c"
    helper.write_text(_LINE_BUFFERED_STDOUT)
    flags = _run(
        ["pkg-config", "--cflags", "--libs", *_PKG_CONFIG_MODULES], "pkg-config"
    ).stdout.split()
    out = scratch / "out"
    out.mkdir()
    compile_argv = ["gcc", *_CFLAGS, "-o", str(out / "vscclient"), str(sources[0]), str(helper)]
    _run([*compile_argv, *flags], "gcc", timeout=300)
    info = {
        "source_package": SOURCE_PACKAGE,
        "version": version,
        "source": str(sources[0].relative_to(source_dir)),
        "command": [*compile_argv, *flags],
        "seconds": round(time.monotonic() - started, 2),
    }
    (out / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def _run(
    argv: Sequence[str], what: str, *, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise VscclientBuildError(f"{what}: {error}") from error
    if result.returncode != 0:
        raise VscclientBuildError(
            f"{what}: {' '.join(argv)} exited with {result.returncode}\n{result.stderr[-4000:]}"
        )
    return result


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --- running it -------------------------------------------------------------------------------


def soft_card_args(
    nssdb: Path,
    certificates: Sequence[str] = ("cert1", "cert2", "cert3"),
    reader_name: str = "Virtual Reader",
) -> str:
    """The ``-e`` string for one soft CAC card made of ``certificates`` from an NSS DB.

    NSS opens ``nssdb`` read-only as ``sql:``; each nickname names a certificate with its key.
    """
    db = str(nssdb)
    if '"' in db or "\n" in db:
        raise ValueError(f"vscclient cannot quote this db path: {db!r}")
    for field in (reader_name, *certificates):
        if not field or any(char in field for char in ",()\n"):
            raise ValueError(f"vscclient cannot parse this soft= field: {field!r}")
    return f'use_hw=no db="sql:{db}" soft=(,{reader_name},CAC,,{",".join(certificates)})'


@dataclass(frozen=True)
class ReaderListing:
    """One line of vscclient's ``list`` under "Active Readers" (a reader the host accepted)."""

    reader_id: int
    card_present: bool
    name: str


_LISTING: Final = re.compile(r"Active Readers:\n(.*?)Inactive Readers:\n", re.DOTALL)
_ACTIVE_READER: Final = re.compile(r"^ *(\d+) (CARD_PRESENT| {12}) (.*)$")


class Vscclient:
    """A running vscclient: its combined stdout/stderr, and its command prompt on stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._output = bytearray()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.read(4096):
            self._output += chunk
            self._changed.set()
        self._changed.set()

    @property
    def text(self) -> str:
        """Everything vscclient printed so far (stdout and stderr, interleaved as written)."""
        return self._output.decode(errors="replace")

    def mark(self) -> int:
        """A position in :attr:`text`; pass it as ``since`` to look only at newer output."""
        return len(self.text)

    async def expect(
        self, pattern: str | re.Pattern[str], *, since: int = 0, count: int = 1, timeout: float = 10
    ) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` times after ``since``; all matches so far."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._changed.clear()
                    matches = list(regex.finditer(self.text, since))
                    if len(matches) >= count:
                        return matches
                    if self._reader.done():
                        raise EOFError("vscclient closed its output")
                    await self._changed.wait()
        except (TimeoutError, EOFError) as error:
            raise AssertionError(
                f"vscclient: wanted {count}x {regex.pattern!r}; output so far:\n{self.text}"
            ) from error

    async def command(self, line: str) -> int:
        """Send one command line; returns the output position before it, for :meth:`expect`."""
        assert self.process.stdin is not None
        position = self.mark()
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        return position

    async def readers(self, timeout: float = 10) -> list[ReaderListing]:
        """Run ``list`` and parse the readers the host has accepted (those with an id)."""
        since = await self.command("list")
        (match,) = await self.expect(_LISTING, since=since, timeout=timeout)
        listing = []
        for line in match.group(1).splitlines():
            parsed = _ACTIVE_READER.match(line)
            if parsed is None:
                raise AssertionError(f"unexpected line in vscclient's list: {line!r}")
            reader_id, status, name = parsed.groups()
            listing.append(ReaderListing(int(reader_id), status == "CARD_PRESENT", name))
        return listing

    async def stop(self, timeout: float = 5) -> int:
        """``exit``, then SIGTERM and SIGKILL if it lingers; returns the exit status."""
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.command("exit")
            for escalate in (None, self.process.terminate, self.process.kill):
                if escalate is not None:
                    with contextlib.suppress(ProcessLookupError):
                        escalate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), timeout)
                    break
        if self.process.stdin is not None:
            self.process.stdin.close()
        await asyncio.wait_for(self._reader, timeout)
        return await self.process.wait()


@asynccontextmanager
async def run_vscclient(
    binary: Path,
    host: str,
    port: int,
    emul_args: str,
    *,
    debug: int = 1,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Vscclient]:
    """Run ``vscclient -d debug -e emul_args host port``; stopped (``exit``) when the block ends.

    ``host`` should be an IPv4 address: vscclient uses an AF_INET socket but tries only the first
    getaddrinfo result, so a name resolving to ``::1`` first fails to connect.
    """
    process = await asyncio.create_subprocess_exec(
        *_PDEATHSIG,
        str(binary), "-d", str(debug), "-e", emul_args, host, str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=None if env is None else dict(env),
    )  # fmt: skip
    client = Vscclient(process)
    try:
        yield client
    finally:
        await client.stop()


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="Build libcacard's vscclient into the cache.")
    parser.add_argument("--enable-deb-src", action="store_true", help="write deb-src entries")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    if args.enable_deb_src:
        enable_deb_src()
    sys.stdout.write(f"{build_vscclient(force=args.force)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
