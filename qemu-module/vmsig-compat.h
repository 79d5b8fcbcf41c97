/*
 * vmsig-compat.h - the one place where the QEMU versions the vmsig module
 * builds against (7.2, 10.0; see docs/qemu-versions.md) differ.  The glue
 * (vmsig-obj.c, vmsig-mem.c, vmsig-input.c) includes this instead of the
 * headers that moved and uses the vmsig_ names below instead of the
 * functions that were renamed or added; everything else it uses is the
 * same in every supported version.  Include after "qemu/osdep.h"
 * (QEMU_VERSION_MAJOR comes from config-host.h).
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */
#ifndef VMSIG_COMPAT_H
#define VMSIG_COMPAT_H

#if QEMU_VERSION_MAJOR >= 10
/* 9.2 renamed include/sysemu/ to include/system/, sysemu.h to system.h */
#include "system/hw_accel.h"
#include "system/cpus.h"
#include "system/runstate.h"
#include "system/system.h"
#include "system/block-backend.h"
#include "system/tcg.h"
#include "exec/tb-flush.h"
#else
#include "sysemu/hw_accel.h"
#include "sysemu/cpus.h"
#include "sysemu/runstate.h"
#include "sysemu/sysemu.h"
#include "sysemu/block-backend.h"
#include "sysemu/tcg.h"
/*
 * tb_flush() is declared in exec/exec-all.h, which needs the target's cpu.h
 * and so cannot be included by a target-independent module; 8.1 moved it
 * to exec/tb-flush.h.  Same signature in every version.
 */
void tb_flush(CPUState *cpu);
#endif
/*
 * QEMU declares vmstate_cpu_common for per-target code only; the
 * description itself is QEMU's one, target-independent (vmsig-snap.c).
 */
#include "migration/vmstate.h"
extern const VMStateDescription vmstate_cpu_common;

#include "exec/memory.h"
#include "exec/address-spaces.h"
#include "exec/cpu-common.h"
#include "qapi/qapi-commands-run-state.h"

#if QEMU_VERSION_MAJOR >= 9
/* 9.0 renamed qemu_mutex_iothread_locked() to bql_locked() */
#define vmsig_bql_locked() bql_locked()
#else
#define vmsig_bql_locked() qemu_mutex_iothread_locked()
#endif

/* The current run state: runstate_get() since 8.0, query-status before. */
static inline RunState vmsig_runstate(void)
{
#if QEMU_VERSION_MAJOR >= 8
    return runstate_get();
#else
    StatusInfo *info = qmp_query_status(NULL);
    RunState state = info->status;

    qapi_free_StatusInfo(info);
    return state;
#endif
}

#endif /* VMSIG_COMPAT_H */
