"""What a host answers for one reader without asking the client: sans-IO.

Our client sends, before a response, the rest of a ``61xx`` answer (a ResponseChain,
:mod:`vscard.response_chain`) and the answers to the reads it expects next (ReadAheads,
:mod:`vscard.read_ahead`). :class:`LocalAnswers` holds both for one reader and decides, for
each command of the reader's guest, whether it is answered here or goes to the client.
"""

from __future__ import annotations

from collections.abc import Sequence

from .messages import ReadAhead, ResponseChain
from .read_ahead import Lookahead
from .response_chain import ChainHolder, Continue


class LocalAnswers:
    """One reader's held answers: a GET RESPONSE chain and ReadAheads.

    :meth:`answer` returns the local answer to a command, a :class:`Continue` (send its
    command, put its prefix before the answer) or None (send the command as it is); :meth:`took`
    keeps what came with the client's response to a command; :meth:`drop` forgets everything
    (a reset, a removal).
    """

    __slots__ = ("_ahead", "_chain")

    def __init__(self) -> None:
        self._chain = ChainHolder()
        self._ahead = Lookahead()

    @property
    def held(self) -> bool:
        """Whether anything is held."""
        return self._chain.held is not None or self._ahead.held > 0

    def answer(self, command: bytes) -> bytes | Continue | None:
        """The answer to ``command`` from what is held, or what the client must be sent."""
        chain = self._chain
        if chain.held is not None:
            local = chain.answer(command)  # anything but the GET RESPONSE it awaits drops it
            if isinstance(local, Continue):
                self._ahead.drop()  # never both: the client reads ahead after a whole chain
                return local
            if local is not None:
                return local
        ahead = self._ahead
        if not ahead.held:
            return None
        entry = ahead.answer(command)  # any other command drops them all
        if entry is None:
            return None
        if entry.chain_sw is not None:
            chain.hold(entry.command, entry.chain, entry.chain_sw)
        return entry.response

    def took(self, command: bytes, chain: ResponseChain | None, ahead: Sequence[ReadAhead]) -> None:
        """Keep the ``chain`` and the ``ahead`` the client's response to ``command`` came with
        (anything held before was dropped when ``command`` was sent)."""
        if chain is not None:
            self._chain.hold(command, chain.data, chain.sw)
        if ahead:
            self._ahead.hold(ahead)

    def drop(self) -> None:
        """Forget everything held."""
        self._chain.drop()
        self._ahead.drop()
