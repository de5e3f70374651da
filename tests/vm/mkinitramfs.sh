#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the initramfs of tests/test-nvme-vm.sh:
#   mkinitramfs.sh OUT.cpio.gz KVER PROGRAM PLUGIN_DIR
# busybox (static), PROGRAM and the plugins in PLUGIN_DIR with every shared
# library they load and the dynamic loader, each at its host path (so the
# build tree's RUNPATHs still resolve), the VFIO modules of kernel KVER with
# modules.dep, and tests/vm/init as /init.
set -eu
out=$1 kver=$2
# Absolute, as the guest sees them at / (RUNPATHs are relative to them).
prog=$(realpath -s "$3") plugdir=$(realpath -s "$4")
here=$(cd "$(dirname "$0")" && pwd)
mods=/lib/modules/$kver
root=$(mktemp -d /tmp/nvme-vm-root.XXXXXX)
chmod 755 "$root" # the guest's /, which another user must traverse
trap 'rm -rf "$root"' EXIT

bb=$(command -v busybox)
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root$mods"
cp "$bb" "$root/bin/busybox"
if ldd "$bb" >/dev/null 2>&1; then
	echo "mkinitramfs: $bb is not statically linked (install busybox-static)" >&2
	exit 1
fi

# A file and, recursively through ldd, the libraries and loader it needs.
copy_with_libs() {
	cp -L --parents "$1" "$root"
	ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
	while read -r lib; do
		lib=$(realpath -s "$lib")
		[ -e "$root$lib" ] || cp -L --parents "$lib" "$root"
	done
}
copy_with_libs "$prog"
for so in "$plugdir"/*.so; do
	copy_with_libs "$so"
done

# The VFIO modules, found through modules.dep (which the guest's modprobe reads).
cp "$mods/modules.dep" "$root$mods/"
for m in vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci irqbypass; do
	rel=$(grep -E "(^|/)$m\.ko:" "$mods/modules.dep" | head -n 1 | cut -d: -f1)
	[ -n "$rel" ] || { echo "mkinitramfs: no $m module in $mods" >&2; exit 1; }
	cp --parents "$mods/$rel" "$root"
done

cp "$here/init" "$root/init"
chmod +x "$root/init"
printf 'PROGRAM=%s\nPLUGIN_DIR=%s\n' "$prog" "$plugdir" >"$root/nvme-vm.conf"
cpio_o() { if command -v cpio >/dev/null; then cpio -o -H newc --quiet; else busybox cpio -o -H newc; fi; }
(cd "$root" && find . | cpio_o) | gzip -1 >"$out"
