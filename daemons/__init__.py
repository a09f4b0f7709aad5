"""Command-line daemons: ``vscclient`` and ``ccid-passthru`` (in progress)."""
