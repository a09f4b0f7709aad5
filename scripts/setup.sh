# Shared set-up for scripts/demo and scripts/test: Debian packages and the project's venv.
# Sourced, not run. Idempotent: with everything in place it only checks, in well under a second.

VSCARD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$VSCARD_ROOT/.venv"

# Debian packages the demo needs; the tests add their own to this list.
DEMO_PACKAGES=(python3 python3-venv qemu-system-x86)
TEST_PACKAGES=("${DEMO_PACKAGES[@]}"
    libssl3          # cacard's raw RSA path (libcrypto through ctypes)
    libnss3-tools    # certutil/pk12util: NSS database card sources
    softhsm2         # a real PKCS#11 token for cacard's token source
    # host PC/SC: a private pcscd with vsmartcard's vpcd, vicc as a stand-in card, OpenSC
    pcscd vsmartcard-vpcd python3-virtualsmartcard python3-pycryptodome opensc
    yubico-piv-tool  # a second PIV host: provisions a piv card (tests/interop/test_piv_yubico.py)
    util-linux iproute2
    libpcsclite-dev swig        # pyscard builds from source
    usbip            # Debian's USB/IP tools as a real peer of our USB/IP server
    tshark           # its usbip and usbccid dissectors check our bytes
    # the test guest: its kernel comes from Debian's package, its userspace from these
    busybox-static libccid opensc-pkcs11 pcsc-tools openssl
    # libcacard's C vscclient, built from Debian's source package
    dpkg-dev gcc libc6-dev pkg-config libcacard-dev libglib2.0-dev
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_ensure PKG...: install the packages that are not installed yet.
apt_ensure() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# venv_ensure EXTRAS: a venv with the project installed (editable) with these extras.
# Reinstalls only when pyproject.toml or the extras changed.
venv_ensure() {
    local extras=$1 stamp want
    want="$(sha256sum "$VSCARD_ROOT/pyproject.toml" | cut -d' ' -f1) $extras"
    stamp="$VENV/.vscard-installed"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    echo "setup: installing vscard[$extras] into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e "$VSCARD_ROOT[$extras]"
    echo "$want" > "$stamp"
}
