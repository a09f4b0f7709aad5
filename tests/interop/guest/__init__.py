"""The Linux guest test rig: a real kernel, pcscd, libccid and OpenSC consuming a reader.

A tiny Debian guest boots under QEMU (TCG, ~2 s to its script) and runs shell checks; each
check comes back as one line on the serial console.

* :mod:`.image` builds the kernel + initramfs from Debian packages (:mod:`.kernel`,
  :mod:`.initramfs`, :mod:`.cpio`, :mod:`.host`), cached under ``.cache/guest``.
* :mod:`.setups` gives the guest its reader: (a) ``PassthruSetup`` (QEMU usb-ccid with
  ccid-card-passthru, for a VSCard client), (b) ``EmulatedSetup`` (QEMU's own CAC card, the
  reference), (c) ``UsbipSetup`` (``usbip attach`` from a host server), and
  ``UsbipExportSetup`` (a guest serving the reference card with Linux's usbipd).
* :mod:`.checks` are the verdicts (reader listed, ATR, OpenSC driver, PKCS#15/#11 objects,
  sign + verify, decrypt, card and reader removal, usbip list/detach).
* :mod:`.runner` boots, runs, collects a :class:`~.result.GuestResult`; :mod:`.console` is the
  line protocol, :mod:`.qmp` the QMP client, :mod:`.nssdb` the reference card's NSS DB.
* :mod:`.fixtures`: pytest fixtures (``guest_image``, ``run_guest``, ``start_guest``).

By hand: ``python -m tests.interop.guest.image``, ``python -m tests.interop.guest.runner
--setup emulated -v`` and ``... --shell`` for a shell in the guest.
"""
