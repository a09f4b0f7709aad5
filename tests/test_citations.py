"""Code and docs cite what a reader of this repository can open: upstream sources (project,
file, function), the specifications, or the project's own docs/, never private notes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]
# Any Markdown file named in a tracked file must be one of ours (docs/, README.md, ...).
CITATION = re.compile(r"([\w./-]+\.md)\b")


def tracked_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "*.py", "*.md", "*.toml", "*.sh", "*.service"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [ROOT / name for name in names]


def test_every_cited_markdown_file_is_in_the_repository() -> None:
    missing = []
    for path in tracked_files():
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for cited in CITATION.findall(line):
                name = Path(cited).name
                if not any(ROOT.glob(f"**/{name}")):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {cited}")
    assert not missing, "\n".join(missing)
