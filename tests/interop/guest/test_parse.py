"""The console protocol, the guest script and the image's pure helpers: fast, no QEMU."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .checks import Check, guest_script, sign_verify
from .console import (
    Begin,
    CheckLine,
    ConsoleParser,
    End,
    LogLine,
    Malformed,
    WaitLine,
    go_line,
    parse_line,
)
from .cpio import DeviceNode, write_tree
from .host import ImageBuildError, is_static_elf
from .kernel import has_pvh_entry, module_load_order, parse_modules_dep
from .runner import CheckResult, EmulatedSetup, GuestResult


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_check_line_gives_name_verdict_time_and_output() -> None:
    line = f"@@CHECK atr PASS 130 {b64('3b:7a:18')}@@\r\n"
    assert parse_line(line) == [CheckLine("atr", True, 130, "3b:7a:18")]


def test_a_failed_check_with_empty_output() -> None:
    assert parse_line("@@CHECK sign.SHA256-RSA-PKCS FAIL 7 @@") == [
        CheckLine("sign.SHA256-RSA-PKCS", False, 7, "")
    ]


def test_begin_end_wait_and_log_markers() -> None:
    assert parse_line("@@BEGIN@@") == [Begin()]
    assert parse_line("@@END@@\r") == [End()]
    assert parse_line("@@WAIT remove-card@@") == [WaitLine("remove-card")]
    assert parse_line(f"@@LOG pcscd {b64('hello')}@@") == [LogLine("pcscd", "hello")]


def test_kernel_text_around_a_marker_is_ignored() -> None:
    line = f"[    3.1] usb 1-1: reset @@CHECK x PASS 1 {b64('ok')}@@ trailing"
    assert parse_line(line) == [CheckLine("x", True, 1, "ok")]


def test_plain_console_lines_give_nothing() -> None:
    assert parse_line("[    2.55] usb 1-1: new full-speed USB device number 2\r\n") == []
    assert parse_line("guest# @@GO remove-card@@") == []  # our own answer, echoed


@pytest.mark.parametrize(
    "line",
    [
        "@@CHECK atr MAYBE 1 @@",
        "@@CHECK atr PASS x @@",
        "@@CHECK at r PASS 1 @@",
        "@@CHECK atr PASS 1 !!!@@",
        "@@WAIT two tokens@@",
        "@@LOG pcscd@@",
    ],
)
def test_malformed_markers_are_reported_not_dropped(line: str) -> None:
    [event] = parse_line(line)
    assert isinstance(event, Malformed)
    assert event.line == line


def test_bad_base64_is_malformed() -> None:
    [event] = parse_line("@@CHECK atr PASS 1 abc@@")
    assert isinstance(event, Malformed)
    assert "base64" in event.reason


def test_parser_joins_lines_split_across_reads() -> None:
    parser = ConsoleParser()
    data = f"boot\r\n@@CHECK reader-listed PASS 140 {b64('0 Yes reader')}@@\r\n@@END@@\r\n".encode()
    events = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    assert events == [CheckLine("reader-listed", True, 140, "0 Yes reader"), End()]
    assert parser.text == data.decode()


def test_parser_handles_utf8_split_inside_a_character() -> None:
    parser = ConsoleParser()
    data = f"@@CHECK n PASS 1 {b64('é')}@@\n".encode()
    text = "é€\n".encode()
    assert parser.feed(text[:1]) == []
    assert parser.feed(text[1:]) == []
    assert parser.feed(data) == [CheckLine("n", True, 1, "é")]
    assert parser.text.startswith("é€\n")


def test_close_parses_a_last_line_without_newline() -> None:
    parser = ConsoleParser()
    assert parser.feed(b"@@END@@") == []
    assert parser.close() == [End()]


@given(st.text(), st.integers(0, 10**9), st.booleans())
def test_any_output_survives_the_round_trip(output: str, ms: int, passed: bool) -> None:
    verdict = "PASS" if passed else "FAIL"
    line = f"@@CHECK c.1 {verdict} {ms} {b64(output)}@@\r\n"
    # The guest sends UTF-8; lone surrogates cannot occur there.
    expected = output.encode("utf-8", "replace").decode("utf-8", "replace")
    assert ConsoleParser().feed(line.encode()) == [CheckLine("c.1", passed, ms, expected)]


def test_go_line_is_what_the_guest_waits_for() -> None:
    assert go_line("insert-card") == b"@@GO insert-card@@\n"


# --- the guest script -------------------------------------------------------------------------


def test_check_names_are_validated() -> None:
    with pytest.raises(ValueError, match="check name"):
        Check("has space", "true")


def test_duplicate_check_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        guest_script([Check("a", "true"), Check("a", "false")])


def test_unknown_mechanism_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot verify"):
        sign_verify("ECDSA")


needs_busybox = pytest.mark.skipif(shutil.which("busybox") is None, reason="no busybox")


def run_on_host(checks: list[Check], scratch: Path) -> list[CheckLine]:
    """Run the guest script under the host's busybox, /run/vscard moved to ``scratch``."""
    script = guest_script(checks).replace("/run/vscard", str(scratch))
    script = script.replace("stty -echo", "true").replace("</dev/console", "</dev/null")
    completed = subprocess.run(
        ["busybox", "sh", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    events = ConsoleParser().feed(completed.stdout.encode())
    assert isinstance(events[0], Begin)
    assert isinstance(events[-1], End)
    return [event for event in events if isinstance(event, CheckLine)]


@needs_busybox
def test_script_is_valid_sh_and_runs_checks_in_order(tmp_path: Path) -> None:
    checks = run_on_host(
        [Check("one", "echo first"), Check("two", "echo second; exit 3"), Check("three", "true")],
        tmp_path,
    )
    assert [(c.name, c.passed) for c in checks] == [("one", True), ("two", False), ("three", True)]
    assert checks[0].output == "first\n"
    assert "exit status 3" in checks[1].output


@needs_busybox
def test_a_fatal_failure_skips_the_rest(tmp_path: Path) -> None:
    checks = run_on_host([Check("setup.x", "exit 1", fatal=True), Check("after", "true")], tmp_path)
    assert [c.name for c in checks] == ["setup.x"]


@needs_busybox
def test_a_check_killed_for_its_time_stops_the_run(tmp_path: Path) -> None:
    checks = run_on_host([Check("slow", "sleep 5", seconds=1), Check("after", "true")], tmp_path)
    assert [(c.name, c.passed) for c in checks] == [("slow", False)]
    assert "killed after 1 s" in checks[0].output


# --- results ----------------------------------------------------------------------------------


def _result(**changes: object) -> GuestResult:
    fields: dict[str, object] = {
        "setup": "emulated",
        "expected": ("a", "b"),
        "checks": (CheckResult("a", True, "", 0.1), CheckResult("b", True, "", 0.2)),
        "logs": (),
        "completed": True,
        "timed_out": False,
        "returncode": 0,
        "seconds": 12.0,
        "boot_seconds": 5.0,
        "console": "",
        "stderr": "",
        "host_errors": (),
    }
    fields.update(changes)
    return GuestResult(**fields)  # type: ignore[arg-type]


def test_a_result_passes_only_if_every_expected_check_passed() -> None:
    assert _result().passed
    assert not _result(checks=(CheckResult("a", True, "", 0.1),)).passed
    assert not _result(timed_out=True).passed
    assert not _result(completed=False).passed
    assert not _result(host_errors=("x",)).passed


def test_report_shows_missing_checks_and_failed_output() -> None:
    result = _result(checks=(CheckResult("a", False, "boom", 0.1),), completed=False)
    report = result.report()
    assert "FAIL    a" in report
    assert "MISSING b" in report
    assert "boom" in report
    assert result.verdict("b") == "MISSING"


def test_emulated_setup_refuses_a_db_path_qemu_would_truncate() -> None:
    with pytest.raises(ValueError, match="200-byte"):
        EmulatedSetup(Path("/" + "x" * 150))


# --- image helpers ----------------------------------------------------------------------------

MODULES_DEP = """\
kernel/drivers/usb/host/xhci-pci.ko: kernel/drivers/usb/host/xhci-hcd.ko kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/host/xhci-hcd.ko: kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/core/usbcore.ko: kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/common/usb-common.ko:
kernel/drivers/usb/usbip/vhci-hcd.ko: kernel/drivers/usb/usbip/usbip-core.ko kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/usbip/usbip-core.ko: kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
"""  # noqa: E501


def test_modules_load_after_their_dependencies() -> None:
    order = module_load_order(parse_modules_dep(MODULES_DEP), ["xhci-pci", "vhci-hcd"])
    names = [path.rsplit("/", 1)[1] for path in order]
    assert names == [
        "usb-common.ko",
        "usbcore.ko",
        "xhci-hcd.ko",
        "xhci-pci.ko",
        "usbip-core.ko",
        "vhci-hcd.ko",
    ]


def test_unknown_module_is_an_error() -> None:
    with pytest.raises(ImageBuildError, match="not found"):
        module_load_order(parse_modules_dep(MODULES_DEP), ["e1000"])


@needs_busybox
def test_cpio_archive_lists_files_links_and_devices(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "init").write_text("#!/bin/sh\n")
    (tmp_path / "bin").symlink_to("usr/bin")
    out = io.BytesIO()
    write_tree(tmp_path, out, [DeviceNode("dev/console", 5, 1)])
    listing = subprocess.run(
        ["busybox", "cpio", "-tv"],
        input=out.getvalue(),
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout.decode()
    assert "bin -> usr/bin" in listing
    assert "init" in listing
    assert any(line.startswith("crw") and "dev/console" in line for line in listing.splitlines())


def test_elf_helpers_on_host_binaries() -> None:
    python = Path(sys.executable).resolve().read_bytes()
    assert not is_static_elf(python)
    assert not has_pvh_entry(python)
    assert not is_static_elf(b"#!/bin/sh\n")
    busybox = shutil.which("busybox")
    if busybox is not None:
        assert is_static_elf(Path(busybox).read_bytes())
