#!/usr/bin/env bash
# e2e: inside the guest. The real Debian guest kernel's VMCOREINFO is found
# in guest RAM (vmsig-helper linux); swapper_pg_dir from it is the kernel's
# page-table root, through which init_uts_ns's release string reads as
# VMCOREINFO's OSRELEASE and as the console says; the banner comes through
# a virtual address; a VA that is not mapped is an error naming the level
# whose entry is not present; a read that crosses a page equals the
# physical reads of the two pages it translates to.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$VMSIG_ROOT/scripts/vm.sh"
. "$VMSIG_ROOT/tests/e2e/tap.sh"
vmsig_qemu_env >/dev/null || exit 1
helper=$VMSIG_ROOT/build/native/helper/vmsig-helper

work=$(mktemp -d /tmp/vmsig-e2e.XXXXXX)
trap 'vm_kill; rm -rf "$work"' EXIT
{
	echo "uid:$(id -u) endpoints=0 caps=OBSERVE,VM,MEMCTX,CPU"
	echo "token:nocpu endpoints=0 caps=OBSERVE,VM,MEMCTX"
} >"$work/grants"
# every REGS read also parses cpu_dump_state's text and fails with EIO if
# the two differ (qemu-module/vmsig-cpu.c), or if the register layout
# was not found in the CPU's migration description
VMSIG_CPU_CHECK=1 vm_start "$work" -object "vmsig,id=vs0,path=$work/vmsig.sock,grants=$work/grants"
export VMSIG_SOCKET=$VM_SOCK
t_ok "the guest boots" vm_wait_console 'vmsig-guest: ready' 120
release=$(sed -n 's/.*init on \([^ ]*\).*/\1/p' "$VM_CONSOLE" | tr -d '\r')
t_like "$release" '^6\.[0-9]+\.[0-9]+-' "the guest reports its kernel release on the console"

# json VALUE KEY: a number or string field of a one-line JSON object
jnum() { printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9-]*\).*/\1/p"; }
jstr() { printf '%s' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"; }
hex() { printf '0x%x' "$1"; }

t_exit 0 "linux finds the VMCOREINFO" "$helper" --json linux
li=$T_OUT
t_is "$(jstr "$li" release)" "$release" "VMCOREINFO's OSRELEASE is the release the guest runs"
t_like "$li" '"note":true' "it was found as the kernel's ELF note"
t_like "$li" '"verified":true' "init_uts_ns read through swapper_pg_dir's translation equals OSRELEASE"
t_is "$(jstr "$li" uts_release)" "$release" "the release string read through init_uts_ns's virtual address"
t_like "$(jstr "$li" banner)" "^Linux version $release \\(" "the banner (linux_banner through kallsyms) read through its virtual address"
root=$(jnum "$li" root)
[ "${root:-0}" -gt 0 ] && [ $((root & 0xfff)) = 0 ]
t_report $? "the kernel page-table root is a page-aligned GPA ($(hex "${root:-0}"))"
kaslr=$(jnum "$li" kaslr_offset)
t_like "$kaslr" '^[0-9]+$' "a KASLR offset is given ($(hex "${kaslr:-0}"))"

t_exit 0 "linux in text form" "$helper" linux
t_like "$T_OUT" "KASLR offset +0x" "it prints the KASLR offset"
t_like "$T_OUT" "banner +VA 0xffffffff[0-9a-f]+: Linux version $release" "it prints the banner and its VA"

# init_uts_ns's release through the kernel root, as vread sees it
uva=$(jnum "$li" init_uts_ns_release_va)
upa=$(jnum "$li" init_uts_ns_release_pa)
got=$("$helper" vread --raw "$(hex "$uva")" ${#release} 2>/dev/null)
t_is "$got" "$release" "vread of init_uts_ns.name.release through swapper_pg_dir gives the release"
t_is "$("$helper" read --raw "$(hex "$upa")" ${#release} 2>/dev/null)" "$release" \
	"the physical bytes at its translation are the same"
t_exit 0 "vtop of that VA" "$helper" --json vtop "$(hex "$uva")"
t_is "$(jnum "$T_OUT" pa)" "$upa" "vtop gives the same GPA"

# not mapped: a user VA through the kernel's root (no PML4 entry), and the
# start of the module area (nothing loaded there: a PDPT, PD or PT entry)
t_exit 7 "vread of an unmapped VA fails" "$helper" vread 0x1000 16
t_like "$T_OUT" "VA 0x1000 is not mapped: PML4 entry not present \\(level 4" "it names the level (PML4)"
t_exit 7 "vtop of an unmapped VA fails" "$helper" --json vtop 0xffffffffc0000000
t_like "$T_OUT" '"error":"EFAULT"' "EFAULT in JSON"
t_like "$T_OUT" '"level":[1-3],' "with the level whose entry is not present"
t_exit 7 "a non-canonical VA" "$helper" vtop 0x0000800000000000
t_like "$T_OUT" "not canonical" "is named as such"

# a read that crosses a 4 KiB page: the kernel's cpu_entry_area is mapped
# with 4 KiB pages; compare with the physical reads of both pages
"$helper" stop >/dev/null
va=0xfffffe0000001000
x1=$("$helper" --json vtop "$(hex $((va - 8)))" 2>/dev/null)
x2=$("$helper" --json vtop "$va" 2>/dev/null)
t_is "$(jnum "$x1" page_size):$(jnum "$x2" page_size)" 4096:4096 "two 4 KiB pages at $va"
p1=$(jnum "$x1" pa)
p2=$(jnum "$x2" pa)
want=$({ "$helper" read --raw "$(hex "$p1")" 8; "$helper" read --raw "$(hex "$p2")" 8; } 2>/dev/null | od -An -tx1 | tr -d ' \n')
gotx=$("$helper" vread --raw "$(hex $((va - 8)))" 16 2>/dev/null | od -An -tx1 | tr -d ' \n')
t_is "$gotx" "$want" "a 16-byte vread across the page boundary equals the reads at GPA $(hex "$p1") and $(hex "$p2")"
# a larger one: 1 MiB of the kernel image through virtual addresses
text=$(jnum "$("$helper" --json linux --symbol _stext)" symbol__stext)
tpa=$(jnum "$("$helper" --json vtop "$(hex "$text")")" pa)
t_is "$("$helper" vread --raw "$(hex "$text")" 1M 2>/dev/null | md5sum)" \
	"$("$helper" read --raw "$(hex "$tpa")" 1M 2>/dev/null | md5sum)" \
	"1 MiB of kernel text through its VA (_stext) equals the physical read"
"$helper" cont >/dev/null

# CMD_CPU REGS: registers of a running guest (sampled until vCPU 0 is in
# the kernel: the guest's init loop runs in user mode now and then)
krange() { [ -n "$1" ] && [ "$1" != 0 ] && printf '%x' "$1" | grep -qE '^ffffffff[89ab]'; }
rip=
for i in $(seq 50); do
	r=$("$helper" --json regs 2>&1)
	rip=$(jnum "$r" rip)
	krange "$rip" && break
	sleep 0.05
done
t_like "$r" '"cpu":0,"arch":1,' "regs of vCPU 0 of the running guest (x86-64)"
cr3=$(jnum "$r" cr3)
cr4=$(jnum "$r" cr4)
[ "${cr3:-0}" != 0 ]
t_report $? "CR3 is nonzero ($(hex "${cr3:-0}"))"
krange "$rip"
t_report $? "RIP is in the kernel's range ($(hex "${rip:-0}"))"
[ $(( ${cr4:-0} & 0x20 )) != 0 ]
t_report $? "CR4.PAE is set ($(hex "${cr4:-0}"))"
t_like "$r" '"lma":true,"paging":true' "long mode and paging on"
bad=0
for i in $(seq 100); do
	"$helper" regs >/dev/null 2>&1 || bad=$((bad + 1))
done
t_is "$bad" 0 "100 reads of the running vCPU: the CPU object's fields equal cpu_dump_state's each time"

# a paused guest: twice the same registers, RIP in the kernel (stop until it is)
for i in $(seq 20); do
	"$helper" stop >/dev/null
	p1=$("$helper" --json regs 2>&1)
	krange "$(jnum "$p1" rip)" && break
	"$helper" cont >/dev/null
	sleep 0.05
done
p2=$("$helper" --json regs 2>&1)
t_like "$("$helper" --json status)" '"state":"paused"' "the guest is paused"
krange "$(jnum "$p1" rip)"
t_report $? "paused: RIP is in the kernel's range ($(hex "$(jnum "$p1" rip)"))"
[ "$(jnum "$p1" cr3)" != 0 ] && [ $(( $(jnum "$p1" cr4) & 0x20 )) != 0 ]
t_report $? "paused: CR3 nonzero, CR4.PAE set"
t_is "$p2" "$p1" "paused: the registers do not change between two reads"
# swapgs trades GS base and KERNEL_GS_BASE: one of them is the kernel's
# per-CPU base (a direct-map address) in user mode and in the kernel
kgs=$(printf '%x' "$(jnum "$p1" kernel_gs_base)")
ugs=$(printf '%x' "$(jnum "$p1" gs_base)")
printf '%s\n%s\n' "$kgs" "$ugs" | grep -qE '^ffff[89a-f]'
t_report $? "paused: GS base or KERNEL_GS_BASE is the kernel's per-CPU base (gs $ugs, kernel_gs $kgs)"

# CR3 from REGS and swapper_pg_dir translate init_uts_ns alike
t_exit 0 "vtop through vCPU 0's CR3" "$helper" --json vtop --cpu 0 "$(hex "$uva")"
t_is "$(jnum "$T_OUT" pa)" "$upa" "CR3 from REGS and swapper_pg_dir translate init_uts_ns to the same GPA"
t_is "$(jnum "$T_OUT" root)" "$(( $(jnum "$p1" cr3) & ~0xfff ))" "the root used is CR3 from REGS"
t_is "$("$helper" vread --raw --cpu 0 "$(hex "$uva")" ${#release} 2>/dev/null)" "$release" \
	"vread --cpu 0 of init_uts_ns gives the release"
"$helper" cont >/dev/null

t_exit 7 "regs of a vCPU that does not exist" "$helper" regs --cpu 1
t_like "$T_OUT" "no such vCPU" "is refused (EINVAL)"

# CMD_CPU without the capability
t_exit 3 "regs without CPU in the grant" "$helper" --token nocpu regs
t_like "$T_OUT" "missing capability CPU" "names the capability"
t_exit 3 "vread --cpu without CPU in the grant" "$helper" --token nocpu vread --cpu 0 "$(hex "$uva")" 4
t_done
