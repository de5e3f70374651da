#!/bin/sh
# SPDX-License-Identifier: MIT
# The nvme plugin over VFIO, end to end: a TCG VM (the Debian kernel, a
# busybox initramfs from tests/vm/) with QEMU's emulated NVMe behind an
# emulated intel-iommu; in the guest the function is bound to vfio-pci and
# test-nvme-vm-guest runs the conformance suite and a write / read-back /
# flush check through nvme:ADDR. The console is parsed; a guest that does not
# finish within the deadline fails the test (qemu is killed).
#   test-nvme-vm.sh GUEST_PROGRAM
. "$(dirname "$0")/tap-lib.sh"
guest=$1
deadline=${NVME_VM_DEADLINE:-600}

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || skip "no kernel in /boot (linux-image-amd64)"
kver=${kernel#/boot/vmlinuz-}
[ -f "/lib/modules/$kver/modules.dep" ] || skip "no modules for $kver in /lib/modules"
[ -r "$kernel" ] || skip "$kernel is not readable"
tap_tmpdir nvme-vm

check "initramfs built" sh "$(dirname "$0")/vm/mkinitramfs.sh" "$T/initrd.cpio.gz" "$kver" \
	"$guest" "$DISKCORE_BUILD_ROOT/plugins/nvme"
truncate -s 64M "$T/nvme.img"

# no_timer_check: under TCG on a loaded host the kernel's check that the timer
# interrupt arrives through the remapped IO-APIC can time out and panic.
t0=$(date +%s)
timeout -s KILL "$deadline" qemu-system-x86_64 -accel tcg -M q35,kernel-irqchip=split \
	-m 1024 -smp 1 -nographic -no-reboot \
	-device intel-iommu,intremap=on,caching-mode=on \
	-drive file="$T/nvme.img",if=none,id=nv0,format=raw \
	-device nvme,serial=deadbeef,drive=nv0 \
	-kernel "$kernel" -initrd "$T/initrd.cpio.gz" \
	-append "console=ttyS0 panic=-1 intel_iommu=on quiet no_timer_check" \
	</dev/null >"$T/console" 2>&1
rc=$?
secs=$(($(date +%s) - t0))
echo "# qemu exited with $rc after $secs s (deadline $deadline s)"
grep -a -E "NVME-VM:|Checks:|describe |:[FE]:" "$T/console" | sed 's/^/# /'

check "the VM finished before the deadline" [ "$rc" -ne 137 ]
check "an NVMe function was found" grep -aq "NVME-VM: function " "$T/console"
check "unbound: the error names the sysfs binding commands" \
	grep -aq "NVME-VM: unbound refused: .*driver_override.*drivers_probe" "$T/console"
check "bound to vfio-pci" grep -aq "NVME-VM: bound to vfio-pci" "$T/console"
check "unprivileged: the error says not permitted" \
	grep -aq "NVME-VM: unprivileged refused: .*/dev/vfio/.*not permitted" "$T/console"
check "describe shows the controller" grep -aq "describe nvme: model = QEMU NVMe Ctrl" "$T/console"
# QEMU's NVMe advertises SGLs (SGLS): the I/O commands above used them.
check "describe says SGLs are the data pointers" \
	grep -aq "describe nvme: data-pointers = sgl " "$T/console"
check "conformance and write/read-back/flush pass" grep -aq "NVME-VM: result rc=0 " "$T/console"
check "no failed checks" grep -aqE "100%: Checks: [0-9]+, Failures: 0, Errors: 0" "$T/console"
if [ "$fails" -ne 0 ]; then
	echo "# console (last 60 lines):"
	tail -n 60 "$T/console" | sed 's/^/# /'
fi
tap_done
