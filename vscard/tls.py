"""TLS for the VSCard channel: contexts with modern defaults, from PEM files.

QEMU's passthru chardev speaks TLS when given ``tls-creds-x509`` (GnuTLS, TLS 1.2 and 1.3); these
contexts interoperate with it. A server context with a CA requires and verifies a client
certificate (mutual TLS), as QEMU's ``verify-peer=on`` does.
"""

from __future__ import annotations

import os
import ssl

StrPath = str | os.PathLike[str]


def server_context(cert: StrPath, key: StrPath, ca: StrPath | None = None) -> ssl.SSLContext:
    """A server context; with ``ca``, clients must present a certificate it signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca: StrPath, cert: StrPath | None = None, key: StrPath | None = None
) -> ssl.SSLContext:
    """A client context trusting ``ca`` (hostname checked), with an optional client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context
