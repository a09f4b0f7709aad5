"""The protocols of :mod:`ccid.usb` (import them from there): :class:`UsbDevice`, the contract
between a USB device model and the transport that exports it, and :class:`ParkingDevice`.

They live apart from the value classes because this module stays Python on the compiled build
(scripts/build-compiled, docs/compiled.md): a protocol class that mypyc compiles is a native
class, which ``typing.runtime_checkable`` refuses at import ("can be only applied to protocol
classes"), and a device written in Python must be able to implement, or subclass, either one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # ccid.usb imports this module: the annotations only name its classes
    from .usb import DeviceSummary, SetupPacket

__all__ = ["ParkingDevice", "UsbDevice"]


class UsbDevice(Protocol):
    """A USB device as a transport sees it: ep0 control requests and data endpoints.

    Endpoint numbers are USB endpoint addresses (``0x81`` interrupt IN, ``0x82`` bulk IN,
    ``0x03`` bulk OUT for the CCID reader). Coroutines may be cancelled at any await (a
    CMD_UNLINK does that): an implementation must consume data only at the moment it returns
    it, with no await in between, so a cancelled IN transfer never loses data.

    A device may also have a class attribute ``start_inline = True``: a promise that its
    coroutines do not use :func:`asyncio.current_task` (``asyncio.timeout``,
    ``asyncio.TaskGroup``) before their first wait. A transport then starts each transfer inline
    and makes a task of it only if it waits (:mod:`cardfloor.aio.eager`); without it, each
    transfer is a task from the start.
    """

    @property
    def summary(self) -> DeviceSummary: ...

    async def control(self, setup: SetupPacket, data: bytes) -> bytes:
        """Handle a control transfer on ep0.

        For an IN request, return at most ``setup.wLength`` bytes; for an OUT request ``data``
        holds the data stage and the return value is ``b""``. Raise :class:`~ccid.usb.Stall` to
        refuse.
        """
        ...

    async def transfer_in(self, endpoint: int, length: int) -> bytes:
        """Wait until the IN endpoint has data; return at most ``length`` bytes of it."""
        ...

    async def transfer_out(self, endpoint: int, data: bytes) -> int:
        """Deliver OUT data; return how many bytes were accepted (the URB's actual_length)."""
        ...

    def reset(self) -> None:
        """A USB port reset: back to the default state, nothing in flight."""
        ...


@runtime_checkable
class ParkingDevice(Protocol):
    """A :class:`UsbDevice` whose IN endpoints also take a callback instead of a coroutine.

    A transport serves an IN transfer with :meth:`take_in`; when it gets None, it parks the
    transfer with :meth:`park_in` and tries again when ``wake`` is called, in the call that
    made data ready (a card's answer), with no task and no loop turn in between. Data is
    consumed only by :meth:`take_in`, which the transport completes the transfer with at once,
    so a transfer unparked by CMD_UNLINK never loses data.
    """

    def take_in(self, endpoint: int, length: int) -> bytes | None:
        """What :meth:`UsbDevice.transfer_in` would return now, or None while it would wait.
        Raises :class:`~ccid.usb.Stall` as it does."""
        ...

    def park_in(self, endpoint: int, wake: Callable[[], None]) -> None:
        """Call ``wake`` once (then forget it) when ``endpoint`` may have data: it calls
        :meth:`take_in` again, and parks again if another transfer took the data."""
        ...

    def unpark_in(self, endpoint: int, wake: Callable[[], None]) -> None:
        """Forget ``wake`` (a no-op once it was called)."""
        ...
