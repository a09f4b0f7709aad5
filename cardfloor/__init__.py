"""The floor under the four packages: what :mod:`vscard`, :mod:`ccid`, :mod:`cacard` and
:mod:`daemons` share and none of them owns.

- :mod:`cardfloor.iso7816`: the smart-card primitives every package reads the same way: command
  and response APDUs (:mod:`~cardfloor.iso7816.apdu`), the INS constants
  (:mod:`~cardfloor.iso7816.instructions`), the ATR (:mod:`~cardfloor.iso7816.atr`) and APDUs
  as logs show them (:mod:`~cardfloor.iso7816.trace`).
- :mod:`cardfloor.log`: key-value events through the standard library's :mod:`logging`,
  silent until the application configures it.
- :mod:`cardfloor.errors` and :mod:`cardfloor.frozen`: one error-message shape, and frozen
  dataclasses built fast on the codecs' hot paths.
- :mod:`cardfloor.aio`: the asyncio helpers both servers use (socket options, admission,
  eager start, rate-limited warnings).

Nothing here imports the packages above it; importing this package imports nothing.
"""
