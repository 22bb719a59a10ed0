# Shared by scripts/test, scripts/demo and scripts/bench: root check, packages, bpffs.
# Sourced, not run.

say() { printf '==> %s\n' "$*"; }

require_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "error: $(basename "$0") needs root (network namespaces, BPF, tc); run it with sudo" >&2
		exit 77
	fi
}

# Installs the Debian packages given as arguments that are not installed yet.
ensure_packages() {
	local missing=()
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Swift is installed under /opt/swift on these machines; make sure it is on PATH.
ensure_swift() {
	if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
		export PATH=/opt/swift/usr/bin:$PATH
	fi
	command -v swift >/dev/null 2>&1 || { echo "error: swift not found (expected /opt/swift/usr/bin)" >&2; exit 1; }
}

ensure_bpffs() {
	if ! mount | grep -q ' /sys/fs/bpf type bpf '; then
		say "mounting bpffs at /sys/fs/bpf"
		mount -t bpf bpf /sys/fs/bpf
	fi
}

# What building and testing ppctl needs.
BUILD_PACKAGES=(libbpf-dev libelf-dev zlib1g-dev pkg-config clang llvm bpftool iproute2)
TEST_PACKAGES=(ethtool procps util-linux nginx-light libnginx-mod-stream haproxy tshark python3 python3-scapy python3-prometheus-client bird2)
