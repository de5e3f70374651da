#!/bin/bash
# Install everything diskcore needs on Debian 12, build it into ./build and run
# the demo. Safe to run again: it reconfigures an existing build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build tools and the libraries plugins link.
build_pkgs=(meson ninja-build pkg-config gcc clang-14 libclang-rt-14-dev clang-format-14
	liburing-dev libssl-dev libcurl4-openssl-dev libsqlite3-dev libudev-dev check
	libargon2-dev libjson-c-dev libgcrypt20-dev libexpat1-dev zlib1g-dev libzstd-dev libnbd-dev nbdkit
	nbdkit-plugin-dev librbd-dev)
# Independent tools the tests compare against: qemu-img/qemu-io and libvhdi
# (VHD, VHDX, LUKS images), python3-cryptography (XTS), cryptsetup (LUKS
# headers), nginx (HTTP blobs), libnbd (NBD clients), sqlite3, util-linux
# (losetup), gnutls-bin (TLS certificates for NBD), a throwaway Ceph (rbd:).
# Azurite comes from npm (which the machine has) in its test.
oracle_pkgs=(qemu-utils qemu-block-extra fio python3 python3-cryptography
	libvhdi-utils python3-libvhdi cryptsetup-bin nginx-light libnbd-bin
	sqlite3 curl openssl util-linux gnutls-bin
	ceph-mon ceph-osd ceph-common groff-base man-db)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "setup.sh: run as root (or install sudo)" >&2; exit 1; }
	sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${build_pkgs[@]}" "${oracle_pkgs[@]}"

if [ -f build/meson-private/coredata.dat ]; then
	meson setup --reconfigure build || meson setup --wipe build
else
	rm -rf build
	meson setup build
fi
ninja -C build

./scripts/demo.sh
