/*
 * vmsig-qemu.h - internal interfaces between the files of the vmsig QEMU
 * module. Everything here runs on QEMU's main loop thread with the BQL held.
 *
 *   vmsig-obj.c    the QOM object: options, the core on the main loop,
 *                  run-state/QAPI-event hooks -> SEAM events, the backend
 *                  that routes DOWN commands (CMD_VM/LIFECYCLE/POWER here,
 *                  MEMWRITE and INPUT to the files below)
 *   vmsig-mem.c    MemoryListener -> versioned MEMCTX with read-only fds;
 *                  CMD_MEMWRITE
 *   vmsig-input.c  CMD_INPUT through QEMU's input layer
 *   vmsig-cpu.c    CMD_CPU: vCPU registers
 *   vmsig-snap.c   CMD_SNAPSHOT: in-memory snapshots, dirty-page restore
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 */
#ifndef VMSIG_QEMU_H
#define VMSIG_QEMU_H

#include "qemu/accel.h"
#include "qemu/cutils.h"
#include "vmsig/vmsig_core.h"

typedef struct VmsigMem VmsigMem;
typedef struct VmsigSnap VmsigSnap;

/* A RAM block of the MEMCTX map and the RAM region that owns it. */
typedef struct VmsigRamBlock {
    RAMBlock *rb;
    MemoryRegion *mr;
} VmsigRamBlock;

/*
 * ---- QEMU version shims ----
 * The one place for code that differs between the QEMU versions the module
 * builds against; everything else uses only interfaces they all have.
 */

/*
 * The accelerator's -accel name ("tcg", "kvm", "qtest", ...) into buf, ""
 * before one is set up: its QOM type name without ACCEL_CLASS_SUFFIX, the
 * inverse of accel_find(). (AccelClass.name, current_accel_name(), is a
 * display name: "QTest", "KVM".)
 */
static inline void vmsig_accel_name(char *buf, size_t size)
{
    AccelState *accel = current_accel();
    const char *type = accel ? object_get_typename(OBJECT(accel)) : "";
    size_t n = strlen(type);

    if (g_str_has_suffix(type, ACCEL_CLASS_SUFFIX)) {
        n -= strlen(ACCEL_CLASS_SUFFIX);
    }
    pstrcpy(buf, MIN(size, n + 1), type);
}

/*
 * The core of the vmsig object `id` (under /objects), for other code in
 * QEMU that attaches an in-process control to it with the C API
 * (vmsig_inproc_new in vmsig_core.h) -- the same seam socket controls use.
 * Borrowed: valid until the object is deleted; its in-process controls are
 * then detached (vmsig_inproc_send returns -EPIPE) and their owners still
 * free them. NULL with errp set when there is no such running object.
 * log-events=on attaches one this way (vmsig-obj.c, vmsig_log_start).
 */
vmsig_core *vmsig_object_core(const char *id, Error **errp);

/*
 * Start following the system address space for `endpoint`: registers a
 * MemoryListener and publishes a MEMCTX (vmsig_core_publish_memctx) once per
 * commit that changes the RAM map, with a new generation. When guest RAM is
 * not shareable (anonymous, or memfd with share=off), it publishes an
 * "unavailable" MEMCTX naming the fix and warns once (warn_report).
 * Returns NULL only on failure to allocate (never for missing fds).
 * core is borrowed and must outlive the VmsigMem.
 */
VmsigMem *vmsig_mem_new(vmsig_core *core, uint32_t endpoint, Error **errp);

/* Unregisters the listener, closes its read-only fds. NULL is a no-op. */
void vmsig_mem_free(VmsigMem *m);

/*
 * CMD_MEMWRITE (cmd->u.memwrite, data in cmd->ool), already checked by the
 * core for grant, arbitration, len == ool_len, size cap and wrap-around.
 * Returns 0 or a negative errno, one per refusal (documented in
 * docs/protocol.rst): -EFAULT not (all) guest RAM, -EROFS ROM, ...
 */
int vmsig_mem_write(VmsigMem *m, Object *owner, const vmsig_event *cmd,
                    vmsig_reply *reply);

/* The distinct RAM blocks of the current map (at most max), in map order. */
unsigned vmsig_mem_blocks(VmsigMem *m, VmsigRamBlock *out, unsigned max);

/*
 * Where [offset, offset + len) of RAM block rb is in guest-physical space
 * now: *gpa of offset, and how many of the len bytes follow it there
 * contiguously; 0 if offset is not mapped (hidden by PAM, say).
 */
uint64_t vmsig_mem_gpa(VmsigMem *m, RAMBlock *rb, uint64_t offset,
                       uint64_t len, uint64_t *gpa);

/*
 * Hold MEMCTX publication (maps are still recorded) until
 * vmsig_mem_republish: a snapshot RESTORE reloads device state that may
 * remap RAM several times, and holders get one map at the end.
 */
void vmsig_mem_hold(VmsigMem *m);

/*
 * End a hold and publish the current map again with a new generation
 * (read-only fds reopened): after something rewrote guest RAM wholesale (a
 * snapshot RESTORE), so a mapped reader knows every page may have changed.
 */
void vmsig_mem_republish(VmsigMem *m);

/*
 * In-memory snapshots (vmsig-snap.c) of the RAM blocks mem maps, at most
 * limit bytes together. core and mem are borrowed and outlive it.
 */
VmsigSnap *vmsig_snap_new(vmsig_core *core, VmsigMem *mem, uint32_t endpoint,
                          uint64_t limit);
/* Frees every snapshot (dirty logging off). NULL is a no-op. */
void vmsig_snap_free(VmsigSnap *sn);

/*
 * CMD_SNAPSHOT (cmd->u.snapshot, shape checked by the core). With
 * reply->ticket, SAVE/RESTORE/DELETE are queued and run from a bottom
 * half in arrival order (-EINPROGRESS; owner referenced until answered);
 * without (an in-process control), and for LIST, they run now. Refusals
 * carry a text: -ENOENT no such name, -ESTALE RAM blocks changed since the
 * SAVE, -EOPNOTSUPP a writable disk or a vfio/vhost-user device, -ENOSPC
 * snapshot-limit or VMSIG_SNAP_MAX reached, -EINVAL a run state other than
 * running/paused/prelaunch, -EIO QEMU could not save/load device state.
 */
int vmsig_snap_command(VmsigSnap *sn, Object *owner, const vmsig_event *cmd,
                       uint32_t principal, vmsig_reply *reply);


/*
 * CMD_INPUT (cmd->u.input; text in cmd->ool for VMSIG_INPUT_TEXT).
 * KEY codes are Linux input codes (vmsig_keys.h), mapped to QEMU's QKeyCode
 * by QEMU's own table; buttons and axes are vmsig's numbers (vmsig_wire.h).
 * Returns 0, -EINVAL (unknown op, button or axis; a key code QEMU cannot
 * map, with a reply text naming it; text with a character that has no key),
 * -E2BIG (text longer than QEMU's input queue holds), -EAGAIN (the VM is
 * stopped: QEMU's input layer would drop it; or TEXT while the previous
 * TEXT is still in QEMU's key queue).
 */
int vmsig_input_command(const vmsig_event *cmd, vmsig_reply *reply);

/*
 * CMD_CPU (vmsig-cpu.c), main loop thread. REGS reads the vCPU's registers
 * on its own thread: with reply->ticket set it returns -EINPROGRESS and
 * answers with vmsig_core_complete() from a bottom half (owner is
 * referenced until then); without (an in-process control) it waits for
 * the vCPU (run_on_cpu) and fills reply. -EINVAL: unknown op or no such
 * vCPU (with a reply text); -EIO: QEMU's register dump could not be read.
 */
int vmsig_cpu_command(vmsig_core *core, Object *owner, const vmsig_event *cmd,
                      vmsig_reply *reply);

#endif /* VMSIG_QEMU_H */
