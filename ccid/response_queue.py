"""RDR_to_PC messages waiting for bulk-IN transfers, handed out in pieces no longer than asked.

USB/IP carries whole transfers, not packets: an IN transfer of ``length`` bytes is answered with
at most ``length`` bytes (more makes vhci drop the device), and what does not fit waits for the
next transfer. One transfer never carries bytes of two messages, because libccid checks that
what it read is exactly 10 + dwLength bytes.

No zero-length packet is ever produced. QEMU's usb-ccid sends one after a message whose last
piece filled exactly 64 bytes, and that stray empty answer then completes the host's *next*
read; libusb on Linux submits each read as one URB, so the host needs no ZLP to see the end.
"""

from __future__ import annotations

from collections import deque


class ResponseQueue:
    """A FIFO of whole messages, read from the front in pieces."""

    __slots__ = ("_messages", "_offset")

    def __init__(self) -> None:
        self._messages: deque[bytes] = deque()
        self._offset = 0  # bytes of the front message already handed out

    def __len__(self) -> int:
        """Messages not yet read to their end (a partly read one counts)."""
        return len(self._messages)

    def put(self, message: bytes) -> None:
        """Queue one whole message."""
        if not message:
            raise ValueError("a CCID message is never empty")
        self._messages.append(message)

    def read(self, max_length: int) -> bytes:
        """Hand out up to ``max_length`` bytes of the front message; b"" when there is none."""
        if not self._messages or max_length <= 0:
            return b""
        message = self._messages[0]
        start = self._offset
        end = min(len(message), start + max_length)
        if end == len(message):
            self._messages.popleft()
            self._offset = 0
        else:
            self._offset = end
        return message[start:end] if start or end < len(message) else message

    def clear(self) -> int:
        """Forget every message, a partly read one included; return how many there were."""
        dropped = len(self._messages)
        self._messages.clear()
        self._offset = 0
        return dropped
