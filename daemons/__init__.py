"""The command-line daemons: ``vscclient`` (local cards to a VSCard host) and ``ccid-passthru``
(VSCard clients' readers exported as USB CCID readers over USB/IP). They parse options and
compose the packages; the protocols live in ``vscard``, ``ccid`` and ``cacard``."""
