"""Write the seed corpus: ``python -m tests.fuzz.make_corpus``.

Each harness's ``seeds()`` says which valid inputs start its fuzzing; this writes them to
``tests/fuzz/corpus/<target>/<seed name>``, replacing what was there. The files are committed
so that atheris (which reads corpus directories) and the built-in driver start from the same
place; ``test_fuzz_short`` checks they still match ``seeds()``.
"""

from __future__ import annotations

import shutil
import sys

from .targets import CORPUS, TARGETS


def main() -> int:
    for target in TARGETS.values():
        directory = CORPUS / target.name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        seeds = target.harness().seeds()
        for name, data in seeds.items():
            (directory / name).write_bytes(data)
        size = sum(len(data) for data in seeds.values())
        sys.stdout.write(f"{target.name}: {len(seeds)} seeds, {size:,} bytes\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
