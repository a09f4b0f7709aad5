"""libcacard's ``-p``: run every APDU on the emulated card and on a real one, answer with the
real card's response, and report where the two differ (a tool for making emulation faithful)."""

from __future__ import annotations

import structlog

from cardfloor.iso7816.trace import command_trace, response_trace

from .local_card import LocalCard, ProtocolAware

log = structlog.get_logger("daemons.vscclient")


class CompareCard:
    """The emulated card's reader, the real card's answers, and a log line per difference."""

    def __init__(self, emulated: LocalCard, real: LocalCard) -> None:
        self.emulated = emulated
        self.real = real
        self.differences = 0

    @property
    def atr(self) -> bytes:
        return self.emulated.atr

    @property
    def protocol(self) -> int:
        """The emulated card's protocol: the real card learns it from its reader."""
        return self.emulated.protocol if isinstance(self.emulated, ProtocolAware) else 0

    @protocol.setter
    def protocol(self, value: int) -> None:
        if isinstance(self.emulated, ProtocolAware):
            self.emulated.protocol = value

    def power_on(self) -> None:
        self.emulated.power_on()
        self.real.power_on()

    async def cold_reset(self) -> None:
        await self.real.cold_reset()
        await self.emulated.cold_reset()

    async def transmit(self, apdu: bytes) -> bytes:
        real = await self.real.transmit(apdu)
        emulated = await self.emulated.transmit(apdu)
        if real != emulated:
            self.differences += 1
            log.warning(
                "vscclient.compare_differs",
                command=command_trace(apdu),
                real=response_trace(real),
                emulated=response_trace(emulated),
            )
        else:
            log.debug("vscclient.compare_same", command=command_trace(apdu))
        return real
