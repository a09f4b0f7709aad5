"""``python -m cacard``: the ``cacard`` command."""

import sys

from .cli import main

sys.exit(main())
