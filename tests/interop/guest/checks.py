"""What the guest verifies: small shell snippets, each reported as one ``@@CHECK@@`` line.

A :class:`Check` is a name and a busybox ``sh`` body whose exit status is the verdict; whatever
it prints is sent back to the host. Checks run one after another in a fresh ``sh`` under a
guest-side ``timeout``, so one hanging tool does not cost the others their result. The helpers
of :data:`GUEST_LIBRARY` (``vs_poll``, ``vs_wait``, ...) are available to every body.

Checks that need the host to do something in the middle (remove the card, unplug the reader)
call ``vs_wait <token>``: the guest prints ``@@WAIT <token>@@`` and blocks until the host
answers on the console (see :mod:`.console`). The tokens used here are the constants
``REMOVE_CARD``, ``INSERT_CARD`` and ``REMOVE_READER``.
"""

from __future__ import annotations

import base64
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .console import valid_name

#: Host actions asked for by the checks below.
REMOVE_CARD = "remove-card"
INSERT_CARD = "insert-card"
REMOVE_READER = "remove-reader"
STOP_SERVING = "stop-serving"

#: OpenSC's name for the CAC driver (``opensc-tool -n``).
CAC_DRIVER = "Common Access Card (CAC)"
#: OpenSC's name for the PIV driver (OpenSC, card-piv.c, ``piv_drv``).
PIV_DRIVER = "Personal Identity Verification Card"

DEFAULT_PIN = "77777777"

#: Where the guest reaches the host's loopback under QEMU user networking.
HOST_ADDRESS = "10.0.2.2"
GUEST_ADDRESS = "10.0.2.15/24"

#: How long a check may run in the guest before it is killed and reported as failed (and the
#: run stops there). The slowest normal check, a sign with pkcs11-tool, takes about 1.5 s.
DEFAULT_CHECK_SECONDS = 45


@dataclass(frozen=True)
class Check:
    """One verdict from the guest."""

    name: str
    body: str
    """Commands for busybox ``sh``; exit status 0 means PASS. Output goes to the report."""
    fatal: bool = False
    """A failure skips every later check (used for setup steps nothing works without)."""
    seconds: int = DEFAULT_CHECK_SECONDS

    def __post_init__(self) -> None:
        if not valid_name(self.name):
            raise ValueError(f"check name {self.name!r} must match [A-Za-z0-9_.:-]+")
        if self.seconds <= 0:
            raise ValueError(f"check {self.name}: seconds must be positive, not {self.seconds}")


GUEST_LIBRARY = r"""
# Sourced by every check. Names start with vs_ to stay out of the way.
VS=/run/vscard

vs_ms() {  # milliseconds since boot
    read -r vs_up vs_rest </proc/uptime
    vs_s=${vs_up%.*}
    vs_c=${vs_up#*.}
    echo $((vs_s * 1000 + ${vs_c#0} * 10))
}

vs_poll() {  # SECONDS COMMAND...: retry COMMAND until it succeeds; prints the last try's output
    vs_deadline=$(($(vs_ms) + $1 * 1000))
    shift
    vs_tries=0
    while :; do
        vs_tries=$((vs_tries + 1))
        if "$@" >"$VS/poll.out" 2>&1; then
            cat "$VS/poll.out"
            return 0
        fi
        if [ "$(vs_ms)" -ge "$vs_deadline" ]; then
            cat "$VS/poll.out"
            echo "(still failing after $vs_tries tries: $*)"
            return 1
        fi
        sleep 0.2
    done
}

vs_wait() {  # TOKEN [SECONDS]: ask the host to act and wait for its answer on the console
    printf '@@WAIT %s@@\n' "$1" >/dev/console
    while read -r -t "${2:-120}" vs_line </dev/console; do
        case $vs_line in
            *"@@GO $1@@"*) echo "host did: $1"; return 0 ;;
            *"@@NOGO $1@@"*) echo "host could not: $1"; return 1 ;;
        esac
    done
    echo "no answer from the host to: $1"
    return 1
}

vs_ccid_interfaces() {  # sysfs USB interfaces of class 0x0B (smart card)
    for vs_class in /sys/bus/usb/devices/*/bInterfaceClass; do
        [ -r "$vs_class" ] && [ "$(cat "$vs_class")" = 0b ] && echo "${vs_class%/*}"
    done
    return 0
}

vs_ccid_present() {
    vs_found=$(vs_ccid_interfaces)
    [ -n "$vs_found" ] || { echo "no USB interface of class 0b"; return 1; }
    for vs_if in $vs_found; do
        vs_dev=${vs_if%:*}
        echo "$vs_if: $(cat "$vs_dev/idVendor"):$(cat "$vs_dev/idProduct")" \
            "$(cat "$vs_dev/manufacturer" 2>/dev/null) / $(cat "$vs_dev/product" 2>/dev/null)"
    done
}

vs_ccid_absent() {
    vs_found=$(vs_ccid_interfaces)
    [ -z "$vs_found" ] || { echo "still there: $vs_found"; return 1; }
    echo "no USB interface of class 0b"
}

vs_readers() {  # opensc-tool -l; succeeds if pcscd lists a reader whose line contains $1
    vs_out=$(opensc-tool -l 2>&1)
    echo "$vs_out"
    echo "$vs_out" | grep -E '^[0-9]+ +(Yes|No) ' | grep -qF -- "$1"
}

vs_card() {  # succeeds if a reader reports a card (Yes) or, with "No", no card
    vs_out=$(opensc-tool -l 2>&1)
    echo "$vs_out"
    echo "$vs_out" | grep -qE "^[0-9]+ +$1 "
}

vs_no_card_anywhere() {  # no reader reports a card (or there is no reader)
    vs_out=$(opensc-tool -l 2>&1)
    echo "$vs_out"
    ! echo "$vs_out" | grep -qE "^[0-9]+ +Yes "
}

vs_key_id() {  # the ID of certificate number $1 (1-based); its private key has the same ID
    pkcs11-tool -O --type cert 2>/dev/null |
        awk -v n="$1" '/ID:/ { if (++i == n) { print $2; exit } }'
}
"""


def _q(value: str) -> str:
    return shlex.quote(value)


# --- setup steps ----------------------------------------------------------------------------


def load_modules(*groups: str) -> Check:
    """insmod the image's module groups (``usb``, ``usbip``, ``net``)."""
    return Check(
        "setup.modules",
        f"load-modules {' '.join(_q(g) for g in groups)} && lsmod",
        fatal=True,
    )


def network_up() -> Check:
    """Configure eth0 statically for QEMU user networking."""
    body = f"""
vs_poll 10 test -e /sys/class/net/eth0 || exit 1
ip addr add {GUEST_ADDRESS} dev eth0 && ip link set eth0 up &&
    ip route add default via {HOST_ADDRESS} && ip addr show eth0
"""
    return Check("setup.network", body, fatal=True)


def usbip_attach(port: int, busid: str, host: str = HOST_ADDRESS) -> Check:
    """``usbip attach`` the host's device (retried briefly, the server may still be starting).

    (No ``usbip port`` here: while the kernel still enumerates the new device it fails.)
    """
    body = f"""
vs_poll 15 usbip --tcp-port {port} attach -r {_q(host)} -b {_q(busid)}
"""
    return Check("setup.usbip-attach", body, fatal=True)


def usbip_reader(port: int, busid: str, host: str = HOST_ADDRESS) -> tuple[Check, ...]:
    """Attach the server's ``busid``, wait for the CCID device, start pcscd."""
    return (usbip_attach(port, busid, host), ccid_device(), start_pcscd())


def usbip_export(busid: str) -> Check:
    """Bind ``busid`` to usbip-host and start ``usbipd`` (a reference USB/IP server)."""
    body = f"""
usbip bind -b {_q(busid)} || exit 1
usbipd -D || exit 1
vs_poll 10 sh -c 'netstat -ltn | grep -q ":3240 "' || exit 1
usbip list -l
"""
    return Check("setup.usbip-export", body, fatal=True)


def serve(token: str = STOP_SERVING, seconds: int = 600) -> Check:
    """Keep running (serving) until the host answers ``token``."""
    return Check("serve", f"vs_wait {_q(token)} {seconds}", seconds=seconds + 10)


def ccid_device(seconds: int = 30) -> Check:
    """A USB interface of class 0x0B shows up (the kernel enumerated the reader)."""
    return Check("setup.ccid-device", f"vs_poll {seconds} vs_ccid_present", fatal=True)


def start_pcscd() -> Check:
    """Start pcscd (debug log in /run/vscard/pcscd.log) once the reader exists: no hotplug."""
    body = """
setsid pcscd --foreground --debug >"$VS/pcscd.log" 2>&1 </dev/null &
vs_poll 15 test -S /run/pcscd/pcscd.comm || { cat "$VS/pcscd.log"; exit 1; }
echo "pcscd is up"
"""
    return Check("setup.pcscd", body, fatal=True)


# --- checks ---------------------------------------------------------------------------------


def reader_listed(name_contains: str = "", seconds: int = 20) -> Check:
    """pcscd/libccid list a reader (``opensc-tool -l``) whose name contains ``name_contains``."""
    return Check("reader-listed", f"vs_poll {seconds} vs_readers {_q(name_contains)}")


def atr(expected: bytes | None = None, seconds: int = 20) -> Check:
    """A card is present and ``opensc-tool -a`` prints its ATR (equal to ``expected``)."""
    body = f"vs_poll {seconds} opensc-tool -a || exit 1\n"
    if expected is not None:
        want = expected.hex()
        body += f"""
got=$(opensc-tool -a 2>/dev/null | grep -iE '^[0-9a-f]{{2}}(:[0-9a-f]{{2}})*$' | tr -d ':' |
    tr A-F a-f)
[ "$got" = {want} ] || {{ echo "expected ATR {want}, got $got"; exit 1; }}
"""
    return Check("atr", body)


def card_driver(expected: str = CAC_DRIVER) -> Check:
    """OpenSC picks the card driver named ``expected`` (``opensc-tool -n``)."""
    body = f"""
out=$(opensc-tool -n 2>&1); status=$?
echo "$out"
[ $status -eq 0 ] && echo "$out" | grep -qxF -- {_q(expected)}
"""
    return Check("card-driver", body)


def _count_body(
    command: str, counts: Sequence[tuple[str, str, int | None]], *, contains: str | None = None
) -> str:
    lines = [f"{command} >$VS/objects 2>&1; status=$?", "cat $VS/objects", "ok=$status"]
    for label, pattern, want in counts:
        if want is None:
            continue
        lines.append(f"n=$(grep -cE {_q(pattern)} $VS/objects)")
        lines.append(f'echo "{label}: $n (want {want})"')
        lines.append(f"[ $n -eq {want} ] || ok=1")
    if contains is not None:
        missing = _q(f"({contains!r} is not in it)")
        lines.append(f"grep -qF -- {_q(contains)} $VS/objects || {{ echo {missing}; ok=1; }}")
    lines.append("exit $ok")
    return "\n".join(lines) + "\n"


def pkcs15_objects(
    certificates: int | None = 3,
    private_keys: int | None = 3,
    *,
    private_ec_keys: int | None = None,
    names: str | None = None,
) -> Check:
    """``pkcs15-tool -D`` shows that many X.509 certificates, private RSA keys and (when not
    None) private EC keys; with ``names``, its output contains that text (e.g. the PIV
    emulation's ``Manufacturer ID: piv_II``)."""
    body = _count_body(
        "pkcs15-tool -D",
        (
            ("certificates", r"^X\.509 Certificate \[", certificates),
            ("private RSA keys", r"^Private RSA Key \[", private_keys),
            ("private EC keys", r"^Private EC Key \[", private_ec_keys),
        ),
        contains=names,
    )
    return Check("pkcs15-objects", body)


def pkcs11_slots() -> Check:
    """``pkcs11-tool -L`` lists a slot with a token in it."""
    body = """
out=$(pkcs11-tool -L 2>&1); status=$?
echo "$out"
[ $status -eq 0 ] && echo "$out" | grep -q 'token label'
"""
    return Check("pkcs11-slots", body)


def pkcs11_objects(
    certificates: int | None = 3, private_keys: int | None = 3, *, pin: str = DEFAULT_PIN
) -> Check:
    """Logged in, ``pkcs11-tool -O`` shows that many certificate and private key objects.

    (The CAC's private keys are private objects: without a login they are not listed.)
    """
    body = _count_body(
        f"pkcs11-tool --login --pin {_q(pin)} -O",
        (
            ("certificates", r"^Certificate Object", certificates),
            ("private keys", r"^Private Key Object", private_keys),
        ),
    )
    return Check("pkcs11-objects", body)


#: pkcs11-tool mechanism -> the openssl verification of its signature over $VS/data.
_VERIFY = {
    "RSA-PKCS": "openssl pkeyutl -verify -pubin -inkey $VS/pub.pem -in $VS/data -sigfile $VS/sig",
    **{
        f"{digest.upper()}-RSA-PKCS": (
            f"openssl dgst -{digest} -verify $VS/pub.pem -signature $VS/sig $VS/data"
        )
        for digest in ("sha1", "sha224", "sha256", "sha384", "sha512")
    },
    **{
        f"{digest.upper()}-RSA-PKCS-PSS": (
            f"openssl dgst -{digest} -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"
            " -verify $VS/pub.pem -signature $VS/sig $VS/data"
        )
        for digest in ("sha1", "sha224", "sha256", "sha384", "sha512")
    },
}

#: Mechanisms :func:`sign_verify` knows how to verify.
SIGN_MECHANISMS = tuple(_VERIFY)

_KEY_PREAMBLE = """
id={key_id}
[ -n "$id" ] || {{ echo "no certificate number {key}"; pkcs11-tool -O; exit 1; }}
echo "key ID $id"
pkcs11-tool --read-object --type cert --id "$id" -o $VS/cert.der >/dev/null 2>&1 ||
    {{ echo "no certificate with ID $id"; exit 1; }}
openssl x509 -inform DER -in $VS/cert.der -noout -subject || exit 1
openssl x509 -inform DER -in $VS/cert.der -noout -pubkey >$VS/pub.pem || exit 1
printf 'vscard guest test data %s\\n' "$(vs_ms)" >$VS/data
"""


def _key_preamble(key: int, key_id: str | None) -> str:
    """Shell that sets $id (the ``key``-th certificate's ID, or ``key_id``) and $VS/pub.pem."""
    chosen = _q(key_id) if key_id is not None else f'"$(vs_key_id {key})"'
    return _KEY_PREAMBLE.format(key=key, key_id=chosen)


def _key_suffix(key: int, key_id: str | None) -> str:
    if key_id is not None:
        return f".id{key_id}"
    return "" if key == 1 else f".key{key}"


def sign_verify(
    mechanism: str = "SHA256-RSA-PKCS",
    *,
    key: int = 1,
    key_id: str | None = None,
    pin: str = DEFAULT_PIN,
) -> Check:
    """Log in, sign with the ``key``-th private key (or the one with ``key_id``), and verify the
    signature with openssl against the matching certificate."""
    if mechanism not in _VERIFY:
        raise ValueError(f"cannot verify {mechanism}; known: {', '.join(SIGN_MECHANISMS)}")
    body = (
        _key_preamble(key, key_id)
        + f"""
pkcs11-tool --login --pin {_q(pin)} --sign -m {mechanism} --id "$id" \\
    -i $VS/data -o $VS/sig || exit 1
echo "signature: $(wc -c <$VS/sig) bytes"
{_VERIFY[mechanism]}
"""
    )
    return Check(f"sign.{mechanism}{_key_suffix(key, key_id)}", body)


def decrypt(*, key: int = 1, key_id: str | None = None, pin: str = DEFAULT_PIN) -> Check:
    """Encrypt to the ``key``-th certificate (openssl, PKCS#1 v1.5); the card decrypts it."""
    body = (
        _key_preamble(key, key_id)
        + f"""
openssl pkeyutl -encrypt -pubin -inkey $VS/pub.pem -in $VS/data -out $VS/enc || exit 1
pkcs11-tool --login --pin {_q(pin)} --decrypt -m RSA-PKCS --id "$id" \\
    -i $VS/enc -o $VS/dec || exit 1
cmp $VS/data $VS/dec && echo "decrypted: $(cat $VS/dec)"
"""
    )
    return Check(f"decrypt.RSA-PKCS{_key_suffix(key, key_id)}", body)


#: Digest of each mechanism :func:`sign_for_host` knows. ``ECDSA`` signs the data's SHA-256,
#: hashed in the guest; ``ECDSA-SHA256`` and ``ECDSA-SHA384`` hash it in OpenSC.
_HOST_DIGESTS = {
    **{f"{digest.upper()}-RSA-PKCS": digest for digest in ("sha1", "sha256", "sha384", "sha512")},
    **{f"{digest.upper()}-RSA-PKCS-PSS": digest for digest in ("sha256", "sha384", "sha512")},
    "ECDSA": "sha256",
    "ECDSA-SHA256": "sha256",
    "ECDSA-SHA384": "sha384",
}

#: Mechanisms :func:`sign_for_host` can sign with.
HOST_SIGN_MECHANISMS = tuple(_HOST_DIGESTS)

#: Prefix of the lines a :func:`sign_for_host` check prints: ``<prefix>NAME: base64``.
SIGNED_PREFIX = "vscard-signed-"
#: Prefix of the lines a :func:`derive_for_host` check prints: ``<prefix>NAME: base64``.
DERIVED_PREFIX = "vscard-derived-"


def _report(prefix: str, files: dict[str, str]) -> str:
    """Shell that prints each $VS file as one ``<prefix>NAME: base64`` line."""
    return "\n".join(
        f'echo "{prefix}{name}: $(base64 -w 0 $VS/{file})"' for name, file in files.items()
    )


def _pss_options(mechanism: str) -> str:
    """pkcs11-tool's PSS parameters, spelled out: MGF1 with the mechanism's hash and a salt as
    long as that hash, which :meth:`GuestSignature.verify` expects. (The hash is the
    mechanism's: pkcs11-tool takes ``--hash-algorithm`` for plain RSA-PKCS-PSS only.)"""
    if not mechanism.endswith("-PSS"):
        return ""
    digest = _HOST_DIGESTS[mechanism]
    size = _HASHES[digest].digest_size
    return f"--mgf MGF1-{digest.upper()} --salt-len {size} "


def sign_for_host(
    mechanism: str = "SHA256-RSA-PKCS", *, key_id: str, pin: str = DEFAULT_PIN
) -> Check:
    """Log in and sign with the private key whose ID is ``key_id``; the host verifies.

    The check prints the data, the signature and the certificate with the same ID, for
    :func:`signed_in_guest`. ``ECDSA`` signs the SHA-256 hash of the data, made in the guest
    (pkcs11-tool gives r || s); PSS uses MGF1 and a salt of the hash's length.

    Even a key that needs no PIN (PIV's Card Authentication key) is used logged in:
    pkcs11-tool logs in before it signs on a token that says login required (OpenSC,
    pkcs11-tool.c, main).
    """
    if mechanism not in _HOST_DIGESTS:
        raise ValueError(f"cannot sign with {mechanism}; known: {', '.join(HOST_SIGN_MECHANISMS)}")
    if mechanism == "ECDSA":
        signed = f"openssl dgst -{_HOST_DIGESTS[mechanism]} -binary $VS/data >$VS/tbs || exit 1"
    else:
        signed = "cp $VS/data $VS/tbs"
    files = {
        "mechanism": "mechanism",
        "data": "data",
        "signature": "sig",
        "certificate": "cert.der",
    }
    body = (
        _key_preamble(1, key_id)
        + f"""
{signed}
pkcs11-tool --login --pin {_q(pin)} --sign -m {mechanism} {_pss_options(mechanism)}--id "$id" \\
    -i $VS/tbs -o $VS/sig || exit 1
echo "signature: $(wc -c <$VS/sig) bytes"
printf %s {mechanism} >$VS/mechanism
{_report(SIGNED_PREFIX, files)}
"""
    )
    return Check(f"host-sign.{mechanism}.id{key_id}", body)


@dataclass(frozen=True)
class GuestSignature:
    """What a :func:`sign_for_host` check brought back."""

    mechanism: str
    data: bytes
    signature: bytes
    certificate: bytes
    """DER, as the guest read it from the card."""

    def verify(self, public_key: PublicKeyTypes) -> None:
        """Raise :class:`cryptography.exceptions.InvalidSignature` unless ``public_key``'s
        private key made :attr:`signature` over :attr:`data`."""
        digest = _HASHES[_HOST_DIGESTS[self.mechanism]]()
        if self.mechanism.startswith("ECDSA"):
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise TypeError(
                    f"{self.mechanism} needs an EC public key, not {type(public_key).__name__}"
                )
            half = len(self.signature) // 2
            r, s = self.signature[:half], self.signature[half:]
            der = encode_dss_signature(int.from_bytes(r), int.from_bytes(s))
            public_key.verify(der, self.data, ec.ECDSA(digest))
            return
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise TypeError(
                f"{self.mechanism} needs an RSA public key, not {type(public_key).__name__}"
            )
        scheme: padding.AsymmetricPadding = padding.PKCS1v15()
        if self.mechanism.endswith("-PSS"):
            scheme = padding.PSS(padding.MGF1(digest), digest.digest_size)  # as _pss_options
        public_key.verify(self.signature, self.data, scheme, digest)


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _guest_parts(output: str, prefix: str, required: Sequence[str]) -> dict[str, bytes]:
    """The ``<prefix>NAME: base64`` lines of a check's output (ValueError if one is missing)."""
    parts: dict[str, bytes] = {}
    for line in output.splitlines():
        if line.startswith(prefix) and ": " in line:
            name, _, value = line[len(prefix) :].partition(": ")
            parts[name] = base64.b64decode(value.strip(), validate=True)
    missing = [name for name in required if name not in parts]
    if missing:
        raise ValueError(f"the guest's output lacks {', '.join(missing)}: {output!r}")
    return parts


def signed_in_guest(output: str) -> GuestSignature:
    """Read a :func:`sign_for_host` check's output back (ValueError if a part is missing)."""
    parts = _guest_parts(output, SIGNED_PREFIX, ("mechanism", "data", "signature", "certificate"))
    return GuestSignature(
        parts["mechanism"].decode("ascii"),
        parts["data"],
        parts["signature"],
        parts["certificate"],
    )


def derive_for_host(peer: bytes, *, key_id: str, pin: str = DEFAULT_PIN) -> Check:
    """Log in and derive an ECDH secret (``ECDH1-DERIVE``) between the private key whose ID is
    ``key_id`` and ``peer``, a public key in DER (SubjectPublicKeyInfo) the host made.

    The check prints the peer key it used, the secret and the certificate with the same ID,
    for :func:`derived_in_guest`.
    """
    peer_text = base64.b64encode(peer).decode("ascii")
    files = {"peer": "peer.der", "secret": "secret", "certificate": "cert.der"}
    body = (
        _key_preamble(1, key_id)
        + f"""
echo {peer_text} | base64 -d >$VS/peer.der || exit 1
rm -f $VS/secret
pkcs11-tool --login --pin {_q(pin)} --derive -m ECDH1-DERIVE --id "$id" \\
    --input-file $VS/peer.der --output-file $VS/secret || exit 1
[ -s $VS/secret ] || {{ echo "pkcs11-tool wrote no secret"; exit 1; }}
echo "secret: $(wc -c <$VS/secret) bytes"
{_report(DERIVED_PREFIX, files)}
"""
    )
    return Check(f"host-derive.ECDH1-DERIVE.id{key_id}", body)


@dataclass(frozen=True)
class GuestDerivation:
    """What a :func:`derive_for_host` check brought back."""

    peer: bytes
    """The peer's public key (DER SubjectPublicKeyInfo) the guest used."""
    secret: bytes
    certificate: bytes
    """DER, as the guest read it from the card."""

    def verify(self, peer_key: ec.EllipticCurvePrivateKey, public_key: PublicKeyTypes) -> None:
        """Raise ValueError unless :attr:`secret` is the ECDH secret of ``peer_key`` (whose
        public key the guest must have used) and ``public_key`` (the card key's)."""
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise TypeError(f"ECDH needs an EC public key, not {type(public_key).__name__}")
        used = peer_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if self.peer != used:
            raise ValueError(f"the guest used another peer key: {self.peer.hex()}")
        expected = peer_key.exchange(ec.ECDH(), public_key)
        if self.secret != expected:
            raise ValueError(
                f"the guest's ECDH secret ({len(self.secret)} bytes, {self.secret.hex()}) is not"
                f" the host's ({len(expected)} bytes, {expected.hex()})"
            )


def derived_in_guest(output: str) -> GuestDerivation:
    """Read a :func:`derive_for_host` check's output back (ValueError if a part is missing)."""
    parts = _guest_parts(output, DERIVED_PREFIX, ("peer", "secret", "certificate"))
    return GuestDerivation(parts["peer"], parts["secret"], parts["certificate"])


def card_reinserted(seconds: int = 20) -> Check:
    """pcscd sees the card leave after ``remove-card`` and come back after ``insert-card``."""
    body = f"""
vs_poll {seconds} vs_card Yes >/dev/null || {{ echo "no card to begin with"; exit 1; }}
vs_wait {REMOVE_CARD} || exit 1
vs_poll {seconds} vs_card No || exit 1
vs_wait {INSERT_CARD} || exit 1
vs_poll {seconds} vs_card Yes || exit 1
opensc-tool -a
"""
    return Check("card-reinserted", body, seconds=3 * seconds + 60)


def reader_removed(*, device_gone: bool = True, seconds: int = 20) -> Check:
    """After ``remove-reader``, pcscd reports no card; with ``device_gone``, the USB device left.

    Without udevd pcscd gets no hotplug events, so it keeps listing the reader (with no card).
    Whether the USB device goes away depends on the setup: it does when QEMU unplugs usb-ccid
    (emulated, QMP ``device_del``) or a USB/IP server drops the device; it stays for a VSCard
    ReaderRemove on ccid-card-passthru (QEMU keeps usb-ccid attached): use ``device_gone=False``.
    """
    gone = f"vs_poll {seconds} vs_ccid_absent || exit 1\n" if device_gone else ""
    body = f"""
vs_wait {REMOVE_READER} || exit 1
{gone}echo "pcscd now says:"
vs_poll {seconds} vs_no_card_anywhere
"""
    return Check("reader-removed", body, seconds=2 * seconds + 150)


def usbip_list(port: int, busid: str, host: str = HOST_ADDRESS) -> Check:
    """``usbip list -r`` shows the server's ``busid``."""
    body = f"""
out=$(usbip --tcp-port {port} list -r {_q(host)} 2>&1); status=$?
echo "$out"
[ $status -eq 0 ] && echo "$out" | grep -qE {_q(f"^ *{busid}: ")}
"""
    return Check("usbip-list", body)


def usbip_detach(seconds: int = 20) -> Check:
    """``usbip detach`` every imported port; the CCID device disappears."""
    body = f"""
usbip port
ports=$(usbip port 2>/dev/null | sed -n 's/^Port \\([0-9]*\\): <Port in Use>.*/\\1/p')
[ -n "$ports" ] || {{ echo "no imported port"; exit 1; }}
for p in $ports; do usbip detach -p "$p" || exit 1; done
vs_poll {seconds} vs_ccid_absent
"""
    return Check("usbip-detach", body)


def standard_card_checks(
    *,
    certificates: int = 3,
    private_keys: int = 3,
    mechanism: str = "SHA256-RSA-PKCS",
    driver: str = CAC_DRIVER,
) -> tuple[Check, ...]:
    """What a CAC card with a reader must pass: the reference card's list."""
    return (
        reader_listed(),
        atr(),
        card_driver(driver),
        pkcs15_objects(certificates, private_keys),
        pkcs11_slots(),
        pkcs11_objects(certificates, private_keys),
        sign_verify(mechanism),
    )


# --- the script -----------------------------------------------------------------------------

_RUNNER = r"""
vs_failed=0
vs_run() {  # INDEX NAME SECONDS FATAL
    vs_start=$(vs_ms)
    timeout -s KILL "$3" sh -c ". $VS/lib.sh; . $VS/check.$1" >"$VS/out.$1" 2>&1 </dev/null
    vs_status=$?
    vs_end=$(vs_ms)
    if [ $vs_status -eq 0 ]; then
        vs_verdict=PASS
    else
        vs_verdict=FAIL
        vs_failed=1
        {
            [ $vs_status -eq 137 ] && echo "(killed after $3 s; the checks after it did not run)"
            echo "(exit status $vs_status)"
            if [ -r "$VS/pcscd.log" ]; then
                echo "--- pcscd log, last 40 lines ---"
                tail -n 40 "$VS/pcscd.log"
            fi
        } >>"$VS/out.$1"
    fi
    printf '@@CHECK %s %s %s %s@@\n' "$2" $vs_verdict $((vs_end - vs_start)) \
        "$(base64 -w 0 "$VS/out.$1")"
    if [ -n "${VS_HUMAN:-}" ]; then  # interactive: the same, readable
        echo "== $2: $vs_verdict ($((vs_end - vs_start)) ms)"
        [ $vs_verdict = PASS ] || sed 's/^/   /' "$VS/out.$1"
    fi
    # A check killed for its time wedged something (pcscd waiting on the reader, usually):
    # later checks would only wait too, so stop like after a fatal failure.
    [ $vs_verdict = PASS ] || { [ "$4" = 0 ] && [ $vs_status -ne 137 ]; }
}

vs_log() {  # NAME FILE
    [ -r "$2" ] && printf '@@LOG %s %s@@\n' "$1" "$(base64 -w 0 "$2")"
}
"""


def guest_script(
    checks: Sequence[Check], *, logs: bool | None = None, interactive: bool = False
) -> str:
    """The script the guest's /init runs: write the checks to files, run them, report.

    ``logs``: send pcscd's log and dmesg as ``@@LOG@@`` lines (None: only if a check failed).
    ``interactive``: end with a shell on the console instead of powering off.
    """
    names = [check.name for check in checks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"check names must be unique: {', '.join(duplicates)}")
    delimiter = f"VSCARD_EOF_{secrets.token_hex(8)}"
    parts = [
        "#!/bin/sh",
        "VS=/run/vscard",
        f"VS_HUMAN={'1' if interactive else ''}",
        'mkdir -p "$VS"',
        "stty -echo </dev/console 2>/dev/null",
        f"cat >\"$VS/lib.sh\" <<'{delimiter}'",
        GUEST_LIBRARY,
        delimiter,
        ". $VS/lib.sh",
        _RUNNER,
    ]
    for index, check in enumerate(checks):
        parts += [f"cat >\"$VS/check.{index}\" <<'{delimiter}'", check.body.strip("\n"), delimiter]
    parts.append("echo '@@BEGIN@@'")
    parts.append("while :; do")
    for index, check in enumerate(checks):
        fatal = 1 if check.fatal else 0
        parts.append(f"    vs_run {index} {check.name} {check.seconds} {fatal} || break")
    parts += ["    break", "done"]
    if logs is None:
        parts.append('if [ "$vs_failed" = 1 ]; then')
    else:
        parts.append(f"if {'true' if logs else 'false'}; then")
    parts += [
        '    vs_log pcscd "$VS/pcscd.log"',
        '    dmesg >"$VS/dmesg" 2>&1 && vs_log dmesg "$VS/dmesg"',
        "fi",
        "echo '@@END@@'",
    ]
    if interactive:
        parts += ["stty echo </dev/console", "setsid cttyhack sh -l"]
    return "\n".join(parts) + "\n"
