"""libcacard's C reference client ``vscclient`` as a real peer, built from Debian's source."""
