#!/usr/bin/env bash
# One script for a fresh Debian 12 machine (as root, or with sudo):
#   ./dev.sh serve [geni-am serve flags]   set everything up, then run the AM on embedded defaults
#   ./dev.sh test  [pytest args]           set everything up, then run the whole test suite
#   ./dev.sh lint                          ruff (pyflakes rules), the import-linter layer contracts, mypy
# Idempotent: a second run only checks what the first one installed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${GENI_AM_VENV:-$ROOT/.venv}

# Debian packages the AM and its tests use. The suite fails (never skips) when one is missing.
APT_PACKAGES=(
  python3 python3-venv python3-dev gcc pkg-config
  xmlsec1 libxml2-utils                 # interop: xmlsec1 --verify, xmllint --schema
  redis-server postgresql               # started privately by the tests when not already running
  iproute2 iputils-ping ethtool iptables procps
  libvirt-dev libvirt-clients           # libvirt-python builds against it; test:///default driver
  openvswitch-switch                    # ovsdb-server + ovs-vswitchd, started by hand (userspace datapath)
  chromium chromium-driver              # the dashboard's browser test
  nginx-light                           # the proxy-mode test (nginx verifies client certificates)
  openssh-server                        # the ssh client tests (sshd itself comes from the guest images)
  qemu-system-x86 qemu-utils            # real VMs under QEMU (TCG here; KVM/Xen on production hosts)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system   # libvirtd + virtlogd, started by hand
  busybox-static dropbear-bin cpio      # guest initramfs and container images
  debootstrap mmdebstrap e2fsprogs      # Debian root filesystems for images (mke2fs -d, no loop mounts)
  iperf3 mininet bridge-utils           # forwarding / chain benchmarks (Mininet, lxbr switches: brctl)
  graphviz socat                        # topology layout; test plumbing
)

log() { printf '[dev.sh] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
      log "missing packages (${missing[*]}) and no apt-get: install them by hand"; exit 1
    fi
    log "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {
  local py=${PYTHON:-python3}
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "$py is older than 3.11"; exit 1
  fi
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  local stamp="$VENV/.geni-am-installed"
  if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    log "installing geni-am and its test dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  serve)
    ensure_apt; ensure_venv
    exec "$VENV/bin/geni-am" serve "$@"
    ;;
  test)
    ensure_apt; ensure_venv
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    ensure_venv
    # pyflakes rules (undefined names, unused imports), the layer contracts and the types of
    # the modules [tool.mypy] names, all configured in pyproject.toml
    "$VENV/bin/ruff" check --no-cache .
    "$VENV/bin/lint-imports" --no-cache
    "$VENV/bin/mypy"
    ;;
  setup)
    ensure_apt; ensure_venv
    ;;
  *)
    echo "usage: $0 serve|test|lint|setup [args...]" >&2; exit 2
    ;;
esac
