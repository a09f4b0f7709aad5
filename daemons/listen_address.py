"""``[HOST:]PORT`` options (``2001``, ``127.0.0.1:3240``, ``[::1]:2001``), parsed strictly."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ListenAddress:
    host: str | None
    """None: every interface."""
    port: int

    def __str__(self) -> str:
        host = self.host or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def listen_address(default_host: str | None) -> Callable[[str], ListenAddress]:
    """An argparse ``type=`` that fills in ``default_host`` when only a port is given."""

    def parse(text: str) -> ListenAddress:
        host: str | None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if not rest.startswith(":"):
                raise argparse.ArgumentTypeError(f"{text!r}: expected [IPv6]:PORT")
            port_text = rest[1:]
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
        else:
            host, port_text = default_host, text
        try:
            port = int(port_text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: port {port_text!r} is not a number"
            ) from None
        if not 0 <= port <= 65535:
            raise argparse.ArgumentTypeError(f"{text!r}: port {port} is out of range")
        return ListenAddress(host or default_host, port)

    return parse
