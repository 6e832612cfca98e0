#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Quick libvirt + vtmemctl check (the full test is vtmem_libvirt.py): an isolated libvirtd (an
# unprivileged user, all state in a temp dir, under tini -s), vtmemd on a
# temp socket, one TCG domain, and vtmemctl against both.
#
# Usage (root): tests/libvirt/libvirt-smoke.sh BUILD_DIR
#   QEMU=/path/to/qemu-system-x86_64   emulator (default: Debian's)
#   VTMEM_DEVICE="-device virtio-tmem-pci,id=vtmem0,..."  extra args for a
#       QEMU with the device; without it the domain has no device and the
#       script checks that vtmemctl says so.
# Needs: libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients tini
#        qemu-system-x86 (or our QEMU).
# Exit 0 when every check passed, 77 when it cannot run here.
# Example with the device (firmware paths needed when QEMU is a copy):
#   QEMU=/path/qemu-system-x86_64 VTMEM_DEVICE="-L /usr/share/seabios \
#     -L /usr/share/qemu -L /usr/lib/ipxe/qemu \
#     -device virtio-tmem-pci,id=vtmem0,limit=32M" tests/libvirt/libvirt-smoke.sh build
set -eu

build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
vtmemd=$build/host-pool/daemon/vtmemd
vtmemctl=$build/host-pool/cli/vtmemctl
qemu=${QEMU:-/usr/bin/qemu-system-x86_64}
user=vtmem-e2e

for t in libvirtd virsh tini "$qemu" "$vtmemd" "$vtmemctl"; do
	command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t missing"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (creates user $user)"; exit 77; }
# One libvirt test at a time (vtmem_libvirt.py: LOCK).
exec 9>/run/lock/vtmem-libvirt-tests.lock
flock 9
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
# libvirtd wants this user to exist even when it is not used.
id libvirt-qemu >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin libvirt-qemu

dir=$(mktemp -d /tmp/vtmem-e2e-XXXXXX)
chmod 0755 "$dir"
mkdir -p "$dir/home" "$dir/config" "$dir/runtime" "$dir/cache" "$dir/data" "$dir/pool"
chmod 0700 "$dir/runtime"
chown -R "$user" "$dir/home" "$dir/config" "$dir/runtime" "$dir/cache" "$dir/data" "$dir/pool"
# libvirt looks for qemu-system-x86_64 in PATH when it needs the host's
# default emulator (virsh version, capabilities): ours, never the system's.
mkdir -p "$dir/bin"
ln -s "$(command -v "$qemu")" "$dir/bin/qemu-system-x86_64"

fails=0
libvirtd_pid=
vtmemd_pid=
cleanup() {
	set +e
	[ -n "${uri:-}" ] && virsh -c "$uri" destroy vtmem-e2e >/dev/null 2>&1
	[ -n "$libvirtd_pid" ] && kill "$libvirtd_pid" && wait "$libvirtd_pid" 2>/dev/null
	# virtlogd, started by that libvirtd (it would exit 120 s later)
	[ -s "$dir/runtime/libvirt/virtlogd.pid" ] && kill "$(cat "$dir/runtime/libvirt/virtlogd.pid")"
	[ -n "$vtmemd_pid" ] && kill "$vtmemd_pid" && wait "$vtmemd_pid" 2>/dev/null
	if [ "$fails" != 0 ] || [ -n "${KEEP:-}" ]; then
		echo "logs kept in $dir"
	else
		rm -rf "$dir"
	fi
}
trap cleanup EXIT INT TERM



check() {   # check NAME EXPECTED_EXIT PATTERN -- command...
	name=$1 want=$2 pat=$3
	shift 4
	set +e
	out=$("$@" 2>&1)
	rc=$?
	set -e
	if [ "$rc" = "$want" ] && printf '%s\n' "$out" | grep -q -- "$pat"; then
		echo "ok   $name"
	else
		echo "FAIL $name: exit $rc (want $want), output:"
		printf '%s\n' "$out" | sed 's/^/    /'
		fails=$((fails + 1))
	fi
}

# vtmemd as the libvirt user, in the socket directory it owns: QEMU (same
# uid) may register, root controls. (setpriv execs: $! is vtmemd.)
setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- \
	"$vtmemd" --socket "$dir/pool/vtmemd.sock" --pool-limit 256M \
	--grace-ms 0 >"$dir/vtmemd.log" 2>&1 &
vtmemd_pid=$!

# setpriv and env exec (runuser would stay in between and not pass SIGTERM
# on; a shell function would add a subshell), so $! becomes tini, which
# forwards SIGTERM to libvirtd.
setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- \
	env PATH="$dir/bin:$PATH" HOME="$dir/home" XDG_CONFIG_HOME="$dir/config" \
	XDG_RUNTIME_DIR="$dir/runtime" XDG_CACHE_HOME="$dir/cache" \
	XDG_DATA_HOME="$dir/data" tini -s -- libvirtd >"$dir/libvirtd.log" 2>&1 &
libvirtd_pid=$!
uri="qemu:///session?socket=$dir/runtime/libvirt/libvirt-sock"
i=0
until virsh -c "$uri" list --all >/dev/null 2>&1; do   # needs no QEMU
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "libvirtd did not start"; cat "$dir/libvirtd.log"; fails=1; exit 1; }
	sleep 0.1
done
echo "libvirtd up at $uri"

cat >"$dir/domain.xml" <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vtmem-e2e</name>
  <uuid>6f1c2a47-1d6e-4f0e-9d0e-3f5b7d1a9e01</uuid>
  <metadata>
    <vtmem:vtmem xmlns:vtmem='http://vtmem.org/xmlns/domain/1'>
      <limit>67108864</limit>
      <weight>200</weight>
    </vtmem:vtmem>
  </metadata>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>$qemu</emulator>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-nic'/><qemu:arg value='none'/>
$(for a in ${VTMEM_DEVICE:-}; do echo "    <qemu:arg value='$a'/>"; done)
  </qemu:commandline>
</domain>
EOF

check define 0 "defined" -- virsh -c "$uri" define "$dir/domain.xml"
check start 0 "started" -- virsh -c "$uri" start vtmem-e2e

export VTMEM_POOL_SOCKET="$dir/pool/vtmemd.sock"
check "status shows the pool" 0 "pool: vtmemd at" -- "$vtmemctl" --connect "$uri" status
check "status --json" 0 '"running" : true' -- "$vtmemctl" --connect "$uri" status --json
check "unknown domain" 2 "no domain 'nope'" -- "$vtmemctl" --connect "$uri" set-limit nope 1G
check "set-weight persists" 0 "weight 300 (persisted, applied live)" -- \
	"$vtmemctl" --connect "$uri" set-weight vtmem-e2e 300
check "metadata has the weight" 0 "<weight>300</weight>" -- \
	virsh -c "$uri" metadata vtmem-e2e --uri http://vtmem.org/xmlns/domain/1 --config
check "metadata kept the limit" 0 "<limit>67108864</limit>" -- \
	virsh -c "$uri" metadata vtmem-e2e --uri http://vtmem.org/xmlns/domain/1 --live
if [ -z "${VTMEM_DEVICE:-}" ]; then
	check "status without device" 0 "no running domain has a virtio-tmem-pci device" -- \
		"$vtmemctl" --connect "$uri" status
	check "set-limit without device" 2 "has no virtio-tmem-pci device" -- \
		"$vtmemctl" --connect "$uri" set-limit vtmem-e2e 512M
	check "apply without device" 2 "has no virtio-tmem-pci device" -- \
		"$vtmemctl" --connect "$uri" apply vtmem-e2e
else
	check "status lists the domain" 0 "vtmem-e2e" -- "$vtmemctl" --connect "$uri" status
	"$vtmemctl" --connect "$uri" status | sed 's/^/    | /'
	"$vtmemctl" --connect "$uri" status --json | sed 's/^/    | /' 
	check "status --json shows the pool state" 0 '"pool_connected" : false' -- \
		"$vtmemctl" --connect "$uri" status --json
	check "apply" 0 "limit 67108864" -- "$vtmemctl" --connect "$uri" apply vtmem-e2e
	check "set-limit live" 0 "limit 512.0 MiB (live and persisted)" -- \
		"$vtmemctl" --connect "$uri" set-limit vtmem-e2e 512M
	check "qom-get limit" 0 "536870912" -- virsh -c "$uri" qemu-monitor-command vtmem-e2e \
		'{"execute":"qom-get","arguments":{"path":"/machine/peripheral/vtmem0","property":"limit"}}'
fi
check destroy 0 "destroyed" -- virsh -c "$uri" destroy vtmem-e2e
if [ -z "${VTMEM_DEVICE:-}" ]; then
	check "set-limit while stopped" 2 "has no virtio-tmem-pci device" -- \
		"$vtmemctl" --connect "$uri" set-limit vtmem-e2e 1G
else
	check "set-limit while stopped" 0 "applied at its next start" -- \
		"$vtmemctl" --connect "$uri" set-limit vtmem-e2e 1G
fi
check undefine 0 "undefined" -- virsh -c "$uri" undefine vtmem-e2e

echo "$fails failed"
[ "$fails" = 0 ]
