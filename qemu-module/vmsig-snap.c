/*
 * vmsig-snap.c - CMD_SNAPSHOT: in-memory snapshots of a running VM.
 *
 * A snapshot is a private copy of every RAM block of the MEMCTX map
 * (anonymous memory of QEMU's) plus the device state without RAM, saved
 * and loaded with QEMU's own machinery for that, the functions COLO uses
 * (qemu_save_device_state / qemu_load_device_state), over an in-memory
 * channel (QIOChannelBuffer).
 *
 * RESTORE copies back only the pages written since: from SAVE on, the
 * blocks are logged for the DIRTY_MEMORY_VGA client (memory_region_set_log,
 * the public per-region dirty log a display device uses for its VRAM; KVM
 * fills it from its dirty log, TCG from its not-dirty slow path, and DMA
 * writes mark it too), and every SAVE or RESTORE harvests it
 * (memory_region_snapshot_and_clear_dirty) into a bitmap per snapshot of the
 * pages that may differ from that snapshot's copy.
 *
 * Everything runs on the main loop with the BQL held. A command from a
 * socket control is queued and run from a bottom half, outside the core's
 * dispatch, and answered with vmsig_core_complete() when the VM is in its
 * new state; the vCPUs are stopped (vm_stop, as QMP's snapshot-load does)
 * only for the copy and the device state.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <sys/mman.h>
#include <sys/stat.h>
#include "qapi/error.h"
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qapi/qapi-commands-misc.h"
#include "qom/object.h"
#include "hw/qdev-core.h"
#include "hw/core/cpu.h"
#include "hw/core/sysemu-cpu-ops.h"
#include "io/channel-buffer.h"
#include "migration/qemu-file.h"
#include "migration/savevm.h"
#include "migration/global_state.h"
#include "block/block.h"
#include "vmsig-compat.h"
#include "vmsig-qemu.h"
#include "trace.h"

/*
 * Granularity of the snapshot bitmaps (the dirty log is per target page,
 * 4 KiB on x86; its queries take byte ranges).
 */
#define VMSIG_SNAP_PAGE 4096u
/* Pages per chunk tested whole before page by page. */
#define VMSIG_SNAP_CHUNK 64u

/* A RAM block under dirty logging, shared by the snapshots that hold it. */
typedef struct VmsigTrack {
    MemoryRegion *mr;        /* referenced while tracked */
    RAMBlock *rb;
    uint8_t *host;
    uint64_t len;            /* bytes kept (the block's used length) */
    uint64_t pages;
    unsigned users;          /* snapshots holding it */
    unsigned long *scratch;  /* pages found dirty by the last harvest */
} VmsigTrack;

typedef struct VmsigSnapBlock {
    VmsigTrack *t;
    uint8_t *copy;           /* t->len bytes, mmap'd */
    unsigned long *dirty;    /* pages that may differ from copy */
} VmsigSnapBlock;

/* A vCPU's cpu_common fields, when kept out of the stream (see below). */
typedef struct VmsigCpuCommon {
    int index;               /* cpu_index */
    uint32_t halted;
    uint32_t interrupt_request;
    int32_t exception_index;
    bool crash_occurred;
} VmsigCpuCommon;

typedef struct VmsigSnapshot {
    char name[VMSIG_SNAP_NAME_MAX];
    int64_t saved_ms;        /* QEMU_CLOCK_REALTIME */
    uint32_t restores;
    unsigned nblocks;
    VmsigSnapBlock *blocks;
    uint8_t *state;          /* device state stream */
    size_t state_len;
    VmsigCpuCommon *cpus;    /* non-NULL: the stream has no cpu_common */
    unsigned ncpus;
    char *ramlist;           /* every RAM block (id:length) at SAVE */
    uint64_t bytes;          /* RAM + device state: its share of the limit */
} VmsigSnapshot;

typedef struct VmsigSnapJob {
    VmsigSnap *sn;
    Object *owner;           /* referenced until answered */
    uint64_t ticket;
    uint32_t principal;
    vmsig_wire_snapshot cmd;
} VmsigSnapJob;

struct VmsigSnap {
    vmsig_core *core;
    VmsigMem *mem;
    uint32_t endpoint;
    uint64_t limit;
    uint64_t used;
    GPtrArray *snaps;        /* VmsigSnapshot *, oldest first */
    GPtrArray *tracks;       /* VmsigTrack * */
    GQueue jobs;             /* VmsigSnapJob *, in arrival order */
    QEMUBH *bh;
};

/* A failed command's reply: the errno and a text naming the problem. */
static int vmsig_snap_fail(vmsig_reply *reply, int err, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static int vmsig_snap_fail(vmsig_reply *reply, int err, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf((char *)reply->body, VMSIG_REPLY_BODY_MAX, fmt, ap);
    va_end(ap);
    reply->len = MIN((uint32_t)MAX(n, 0), VMSIG_REPLY_BODY_MAX - 1) + 1;
    return err;
}

/* ---- what a snapshot cannot hold ---- */

/* A device whose state lives outside QEMU (or needs its RAM to be saved). */
static int vmsig_snap_foreign_dev(Object *obj, void *opaque)
{
    ObjectClass *oc;

    for (oc = object_get_class(obj); oc; oc = object_class_get_parent(oc)) {
        const char *t = object_class_get_name(oc);

        if (g_str_has_prefix(t, "vfio") || g_str_has_prefix(t, "vhost-user")) {
            *(Object **)opaque = obj;
            return 1;
        }
    }
    return 0;
}

/*
 * -EOPNOTSUPP with a text naming the first thing a snapshot cannot hold: a
 * writable disk (a snapshot does not roll disks back; read-only and
 * snapshot=on drives are fine), a vfio or vhost-user device. 0 if none.
 */
static int vmsig_snap_refuse(vmsig_reply *reply)
{
    BlockBackend *blk = NULL;
    Object *dev = NULL;

    while ((blk = blk_all_next(blk))) {
        BlockDriverState *bs = blk_bs(blk);
        DeviceState *d = blk_get_attached_dev(blk);
        g_autofree char *path = NULL;

        if (!bs || !d || !blk_is_writable(blk) ||
            (bdrv_get_flags(bs) & BDRV_O_TEMPORARY)) {
            continue;
        }
        /* the device the user named (a virtio proxy's backend has no id) */
        while (!d->id && d->parent_bus && d->parent_bus->parent) {
            d = d->parent_bus->parent;
        }
        path = d->id ? NULL : object_get_canonical_path(OBJECT(d));
        return vmsig_snap_fail(reply, -EOPNOTSUPP,
                               "disk '%s' (device '%s') is writable: a "
                               "snapshot does not roll disks back; attach it "
                               "with readonly=on or snapshot=on",
                               *blk_name(blk) ? blk_name(blk) :
                               bdrv_get_node_name(bs), d->id ? d->id : path);
    }
    if (object_child_foreach_recursive(object_get_root(),
                                       vmsig_snap_foreign_dev, &dev) && dev) {
        g_autofree char *path = object_get_canonical_path(dev);

        return vmsig_snap_fail(reply, -EOPNOTSUPP,
                               "device %s (%s) keeps state outside QEMU "
                               "that cannot be saved without its RAM",
                               path, object_get_typename(dev));
    }
    return 0;
}

/*
 * The run states a snapshot is taken or restored in (others need a reset
 * or are themselves transitions).
 */
static int vmsig_snap_state_ok(vmsig_reply *reply)
{
    RunState rs = vmsig_runstate();

    if (rs == RUN_STATE_RUNNING || rs == RUN_STATE_PAUSED ||
        rs == RUN_STATE_PRELAUNCH) {
        return 0;
    }
    return vmsig_snap_fail(reply, -EINVAL, "the VM is %s: snapshots are "
                           "saved and restored only while it is running, "
                           "paused or not yet started", RunState_str(rs));
}

static int vmsig_snap_ramlist_one(RAMBlock *rb, void *opaque)
{
    g_string_append_printf(opaque, "%s:%" PRIu64 ";", qemu_ram_get_idstr(rb),
                           (uint64_t)qemu_ram_get_used_length(rb));
    return 0;
}

/* Every RAM block of the machine, to tell a hotplug since SAVE. */
static char *vmsig_snap_ramlist(void)
{
    GString *s = g_string_new("");

    qemu_ram_foreach_block(vmsig_snap_ramlist_one, s);
    return g_string_free(s, false);
}

/* ---- dirty tracking ---- */

static VmsigTrack *vmsig_track_get(VmsigSnap *sn, RAMBlock *rb,
                                   MemoryRegion *mr)
{
    VmsigTrack *t;
    DirtyBitmapSnapshot *d;
    guint i;

    for (i = 0; i < sn->tracks->len; i++) {
        t = g_ptr_array_index(sn->tracks, i);
        if (t->rb == rb) {
            t->users++;
            return t;
        }
    }
    t = g_new0(VmsigTrack, 1);
    t->mr = mr;
    t->rb = rb;
    t->host = qemu_ram_get_host_addr(rb);
    t->len = MIN((uint64_t)qemu_ram_get_used_length(rb),
                 memory_region_size(mr)) & ~(uint64_t)(VMSIG_SNAP_PAGE - 1);
    t->pages = t->len / VMSIG_SNAP_PAGE;
    t->users = 1;
    t->scratch = bitmap_new(t->pages);
    memory_region_ref(mr);
    memory_region_set_log(mr, true, DIRTY_MEMORY_VGA);
    /* a new block's bits start all dirty: from now on, only writes count */
    d = memory_region_snapshot_and_clear_dirty(mr, 0, t->len,
                                               DIRTY_MEMORY_VGA);
    g_free(d);
    g_ptr_array_add(sn->tracks, t);
    return t;
}

static void vmsig_track_put(VmsigSnap *sn, VmsigTrack *t)
{
    if (--t->users) {
        return;
    }
    memory_region_set_log(t->mr, false, DIRTY_MEMORY_VGA);
    memory_region_unref(t->mr);
    g_ptr_array_remove(sn->tracks, t);
    g_free(t->scratch);
    g_free(t);
}

/* Pages written since the last harvest, into every snapshot's bitmap. */
static void vmsig_snap_harvest(VmsigSnap *sn)
{
    guint i, j;

    for (i = 0; i < sn->tracks->len; i++) {
        VmsigTrack *t = g_ptr_array_index(sn->tracks, i);
        DirtyBitmapSnapshot *d =
            memory_region_snapshot_and_clear_dirty(t->mr, 0, t->len,
                                                   DIRTY_MEMORY_VGA);
        uint64_t p, q, n;

        bitmap_zero(t->scratch, t->pages);
        for (p = 0; p < t->pages; p += VMSIG_SNAP_CHUNK) {
            n = MIN(VMSIG_SNAP_CHUNK, t->pages - p);
            if (!memory_region_snapshot_get_dirty(t->mr, d,
                                                  p * VMSIG_SNAP_PAGE,
                                                  n * VMSIG_SNAP_PAGE)) {
                continue;
            }
            for (q = p; q < p + n; q++) {
                if (memory_region_snapshot_get_dirty(t->mr, d,
                                                     q * VMSIG_SNAP_PAGE,
                                                     VMSIG_SNAP_PAGE)) {
                    set_bit(q, t->scratch);
                }
            }
        }
        g_free(d);
        for (j = 0; j < sn->snaps->len; j++) {
            VmsigSnapshot *s = g_ptr_array_index(sn->snaps, j);
            unsigned b;

            for (b = 0; b < s->nblocks; b++) {
                if (s->blocks[b].t == t) {
                    bitmap_or(s->blocks[b].dirty, s->blocks[b].dirty,
                              t->scratch, t->pages);
                }
            }
        }
    }
}

/* ---- snapshots ---- */

static void vmsig_snapshot_free(VmsigSnap *sn, VmsigSnapshot *s)
{
    unsigned b;

    for (b = 0; b < s->nblocks; b++) {
        VmsigSnapBlock *blk = &s->blocks[b];

        if (blk->copy) {
            munmap(blk->copy, blk->t->len);
        }
        g_free(blk->dirty);
        vmsig_track_put(sn, blk->t);
    }
    g_free(s->blocks);
    g_free(s->state);
    g_free(s->cpus);
    g_free(s->ramlist);
    g_free(s);
}

static VmsigSnapshot *vmsig_snap_find(VmsigSnap *sn, const char *name)
{
    guint i;

    for (i = 0; i < sn->snaps->len; i++) {
        VmsigSnapshot *s = g_ptr_array_index(sn->snaps, i);

        if (!strcmp(s->name, name)) {
            return s;
        }
    }
    return NULL;
}

static void vmsig_snap_info(const VmsigSnapshot *s, vmsig_wire_snap_info *info)
{
    memset(info, 0, sizeof(*info));
    pstrcpy(info->name, sizeof(info->name), s->name);
    info->ram_bytes = s->bytes - s->state_len;
    info->age_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) - s->saved_ms;
    info->state_bytes = s->state_len;
    info->restores = s->restores;
}

/* The device state (no RAM) into a buffer of ours. 0 or -EIO. */
static int vmsig_snap_save_state(VmsigSnapshot *s)
{
    QIOChannelBuffer *bioc = qio_channel_buffer_new(16 * 1024);
    QEMUFile *f = qemu_file_new_output(QIO_CHANNEL(bioc));
    int r;

    /*
     * The "globalstate" section carries the run state, recorded only when
     * asked (migration and savevm do it first); loading an empty one fails.
     */
    global_state_store();
    r = qemu_save_device_state(f);
    qemu_fflush(f);
    if (r == 0) {
        r = qemu_file_get_error(f);
    }
    if (r == 0) {
        /* closing a buffer channel frees its data: copy it first */
        s->state = g_memdup2(bioc->data, bioc->usage);
        s->state_len = bioc->usage;
    }
    qemu_fclose(f);
    object_unref(OBJECT(bioc));
    return r < 0 ? -EIO : 0;
}

/*
 * cpu_common, kept apart (TCG).  Loading a "cpu_common" section runs
 * cpu_common_post_load(), whose tb_flush() throws away every translated
 * block: 3-4 ms after a second of running, most of what a RESTORE costs.
 * A RESTORE needs no such flush: it writes RAM back through
 * address_space_write(), which drops the code translated from exactly the
 * pages written, as a guest's own writes do (and it flushes by itself for
 * pages it has to memcpy), and the x86 "cpu" section's post_load flushes
 * the TLB, and with it the jump cache, as a CR3 write does.  So at SAVE the
 * cpu_common sections are cut out of the stream and their four fields
 * (halted, interrupt_request, exception_index, crash_occurred) kept here,
 * and RESTORE puts them back directly.  Each section is found by its
 * header (QEMU_VM_SECTION_FULL, id "cpu_common", the vCPU's instance,
 * version 1) and by its body, which vmstate_save_state() produces again
 * and which must match byte for byte, then its footer; if any vCPU's is
 * not found exactly so, the stream stays whole and the flush happens.
 */
static GByteArray *vmsig_cpu_common_body(CPUState *cs)
{
    QIOChannelBuffer *bioc = qio_channel_buffer_new(64);
    QEMUFile *f = qemu_file_new_output(QIO_CHANNEL(bioc));
    GByteArray *body = NULL;

    if (vmstate_save_state(f, &vmstate_cpu_common, cs, NULL) == 0) {
        qemu_fflush(f);
        if (!qemu_file_get_error(f)) {
            body = g_byte_array_new();
            g_byte_array_append(body, bioc->data, bioc->usage);
        }
    }
    qemu_fclose(f);
    object_unref(OBJECT(bioc));
    return body;
}

/* [*at, *end) of vCPU `instance`'s cpu_common section in buf, or false. */
static bool vmsig_cpu_common_find(const uint8_t *buf, size_t len,
                                  uint32_t instance, const GByteArray *body,
                                  size_t *at, size_t *end)
{
    static const char id[] = "\x0a" "cpu_common"; /* length byte, idstr */
    const size_t idn = sizeof(id) - 1;
    const uint32_t version = vmstate_cpu_common.version_id;
    size_t p = 8; /* after the file magic and version */

    while (p + idn <= len) {
        const uint8_t *hit = memmem(buf + p, len - p, id, idn);
        size_t h, b, e;

        if (!hit) {
            return false;
        }
        h = hit - buf;
        p = h + 1;
        /* type, section id, idstr, instance id, version id, body, footer */
        if (h < 5 || buf[h - 5] != QEMU_VM_SECTION_FULL ||
            h + idn + 8 + body->len + 1 > len ||
            ldl_be_p(buf + h + idn) != instance ||
            ldl_be_p(buf + h + idn + 4) != version) {
            continue;
        }
        b = h + idn + 8;
        if (memcmp(buf + b, body->data, body->len) != 0) {
            continue;
        }
        e = b + body->len;
        if (e + 5 <= len && buf[e] == QEMU_VM_SECTION_FOOTER &&
            ldl_be_p(buf + e + 1) == ldl_be_p(buf + h - 4)) {
            e += 5;
        } else if (buf[e] != QEMU_VM_SECTION_FULL && buf[e] != QEMU_VM_EOF) {
            continue; /* no footer (old machine types): a section follows */
        }
        *at = h - 5;
        *end = e;
        return true;
    }
    return false;
}

static bool vmsig_cpu_common_cut_ok(CPUState *cs)
{
    const CPUClass *cc = CPU_GET_CLASS(cs);
    const VMStateDescription *vmsd =
        cc->sysemu_ops ? cc->sysemu_ops->legacy_vmsd : NULL;

    /* x86's "cpu" section, whose post_load flushes the TLB */
    return vmsd && vmsd->name && strcmp(vmsd->name, "cpu") == 0 &&
           vmsd->post_load;
}

/* A cpu_common section's bytes in the stream: [at, end). */
typedef struct VmsigCut {
    size_t at, end;
} VmsigCut;

static int vmsig_cut_cmp(const void *a, const void *b)
{
    const VmsigCut *x = a, *y = b;

    return x->at < y->at ? -1 : x->at > y->at;
}

static void vmsig_snap_cut_cpu_common(VmsigSnapshot *s)
{
    g_autofree VmsigCut *cut = NULL;
    g_autofree VmsigCpuCommon *kept = NULL;
    GByteArray *out;
    unsigned n = 0, i = 0;
    size_t from = 0;
    CPUState *cs;

    if (!tcg_enabled()) {
        return; /* cpu_common_post_load() does not flush then */
    }
    CPU_FOREACH(cs) {
        n++;
    }
    cut = g_new(VmsigCut, n);
    kept = g_new0(VmsigCpuCommon, n);
    CPU_FOREACH(cs) {
        g_autoptr(GByteArray) body = vmsig_cpu_common_body(cs);

        if (!body || !vmsig_cpu_common_cut_ok(cs) ||
            !vmsig_cpu_common_find(s->state, s->state_len, cs->cpu_index,
                                   body, &cut[i].at, &cut[i].end)) {
            return;
        }
        kept[i].index = cs->cpu_index;
        kept[i].halted = cs->halted;
        kept[i].interrupt_request = cs->interrupt_request;
        kept[i].exception_index = cs->exception_index;
        kept[i].crash_occurred = cs->crash_occurred;
        i++;
    }
    /* in stream order; overlapping sections would be a misreading */
    qsort(cut, n, sizeof(*cut), vmsig_cut_cmp);
    for (i = 1; i < n; i++) {
        if (cut[i].at < cut[i - 1].end) {
            return;
        }
    }
    out = g_byte_array_sized_new(s->state_len);
    for (i = 0; i < n; i++) {
        g_byte_array_append(out, s->state + from, cut[i].at - from);
        from = cut[i].end;
    }
    g_byte_array_append(out, s->state + from, s->state_len - from);
    g_free(s->state);
    s->state_len = out->len;
    s->state = g_byte_array_free(out, false);
    s->cpus = g_steal_pointer(&kept);
    s->ncpus = n;
}

/* After a load of a stream without cpu_common: its fields, as loaded. */
static void vmsig_snap_put_cpu_common(const VmsigSnapshot *s)
{
    unsigned i;

    for (i = 0; i < s->ncpus; i++) {
        CPUState *cs = qemu_get_cpu(s->cpus[i].index);

        if (cs) {
            cs->halted = s->cpus[i].halted;
            /* as cpu_common_post_load: 0x01 was CPU_INTERRUPT_EXIT */
            cs->interrupt_request = s->cpus[i].interrupt_request & ~0x01u;
            cs->exception_index = s->cpus[i].exception_index;
            cs->crash_occurred = s->cpus[i].crash_occurred;
        }
    }
}

static int vmsig_snap_load_state(const VmsigSnapshot *s)
{
    QIOChannelBuffer *bioc = qio_channel_buffer_new(s->state_len);
    QEMUFile *f;
    int r;

    memcpy(bioc->data, s->state, s->state_len);
    bioc->usage = s->state_len;
    f = qemu_file_new_input(QIO_CHANNEL(bioc));
    /*
     * qemu_save_device_state() wrote the file header (not in COLO state);
     * qemu_load_device_state() reads only the sections after it.
     */
    if (qemu_get_be32(f) != QEMU_VM_FILE_MAGIC ||
        qemu_get_be32(f) != QEMU_VM_FILE_VERSION) {
        r = -EIO;
    } else {
        r = qemu_load_device_state(f) < 0 ? -EIO : 0;
    }
    qemu_fclose(f);
    object_unref(OBJECT(bioc));
    return r;
}

/*
 * Stop the vCPUs for a SAVE/RESTORE: into `during` if it resumes after,
 * into PAUSED if it is to stay paused. Returns whether it was running.
 */
static bool vmsig_snap_stop(uint32_t then, RunState during)
{
    bool was_running = runstate_is_running();

    if (was_running) {
        vm_stop(then == VMSIG_SNAP_THEN_PAUSE ? RUN_STATE_PAUSED : during);
    }
    return was_running;
}

/* Leave the VM in the run state the caller asked for. */
static int vmsig_snap_resume(uint32_t then, bool was_running,
                             vmsig_reply *reply)
{
    Error *err = NULL;

    if (then == VMSIG_SNAP_THEN_RUN ||
        (then == VMSIG_SNAP_THEN_KEEP && was_running)) {
        qmp_cont(&err);
        if (err) {
            int r = vmsig_snap_fail(reply, -EIO, "done, but the VM did not "
                                    "resume: %s", error_get_pretty(err));
            error_free(err);
            return r;
        }
    }
    return 0;
}

static void vmsig_snap_event(VmsigSnap *sn, uint32_t what, uint32_t by,
                             const char *name)
{
    vmsig_event ev = {
        .kind = VMSIG_EV_SNAPSHOT,
        .endpoint = sn->endpoint,
        .u.snap = {
            .what = what,
            .by = by,
            .generation = vmsig_core_memctx_generation(sn->core, sn->endpoint),
        },
    };

    pstrcpy(ev.u.snap.name, sizeof(ev.u.snap.name), name);
    vmsig_core_publish(sn->core, &ev);
}

/* A successful command's REPLY body: res with the generation now. */
static void vmsig_snap_answer(VmsigSnap *sn, vmsig_wire_snap_result *res,
                              vmsig_reply *reply)
{
    res->generation = vmsig_core_memctx_generation(sn->core, sn->endpoint);
    memcpy(reply->body, res, sizeof(*res));
    reply->len = sizeof(*res);
}

/*
 * The end of a SAVE or RESTORE that worked: the run state asked for, the
 * event, the answer (or why the VM did not resume).
 */
static int vmsig_snap_finish(VmsigSnap *sn, VmsigSnapshot *s, uint32_t what,
                             uint32_t principal, uint32_t then,
                             bool was_running, vmsig_wire_snap_result *res,
                             vmsig_reply *reply)
{
    int r = vmsig_snap_resume(then, was_running, reply);

    vmsig_snap_event(sn, what, principal, s->name);
    if (r < 0) {
        return r;
    }
    vmsig_snap_info(s, &res->info);
    vmsig_snap_answer(sn, res, reply);
    return 0;
}

/*
 * Copy a block into its snapshot; returns the pages copied. A block that is
 * a whole file of its own (a memory-backend-memfd: the file is exactly the
 * block, from offset 0) has holes where the guest never wrote: those are
 * skipped (SEEK_DATA/SEEK_HOLE), so they are neither allocated in guest RAM
 * by reading them nor in the copy, which reads as zero there.
 */
static uint64_t vmsig_snap_copy_in(VmsigSnapBlock *blk)
{
    VmsigTrack *t = blk->t;
    int fd = qemu_ram_get_fd(t->rb);
    struct stat st;
    off_t pos = 0, data, hole;
    uint64_t copied = 0;

    if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size != t->len) {
        memcpy(blk->copy, t->host, t->len);
        return t->pages;
    }
    while ((uint64_t)pos < t->len) {
        data = lseek(fd, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) {
                break; /* only a hole from pos on */
            }
            data = pos; /* no SEEK_DATA here: copy the rest */
            hole = t->len;
        } else {
            hole = lseek(fd, data, SEEK_HOLE);
            if (hole < 0) {
                hole = t->len;
            }
        }
        data = QEMU_ALIGN_DOWN(data, VMSIG_SNAP_PAGE);
        hole = MIN(QEMU_ALIGN_UP((uint64_t)hole, VMSIG_SNAP_PAGE), t->len);
        if (hole <= data) {
            break;
        }
        memcpy(blk->copy + data, t->host + data, hole - data);
        copied += (hole - data) / VMSIG_SNAP_PAGE;
        pos = hole;
    }
    return copied;
}

static int vmsig_snap_save(VmsigSnap *sn, const vmsig_wire_snapshot *c,
                           uint32_t principal, vmsig_reply *reply)
{
    VmsigRamBlock rbs[VMSIG_MEMCTX_MAX_SEGS];
    VmsigSnapshot *old = vmsig_snap_find(sn, c->name), *s;
    vmsig_wire_snap_result res = { 0 };
    uint64_t need = 0, have;
    int64_t t0;
    unsigned n, b;
    bool was_running;
    int r;

    r = vmsig_snap_refuse(reply);
    if (r == 0) {
        r = vmsig_snap_state_ok(reply);
    }
    if (r < 0) {
        return r;
    }
    n = vmsig_mem_blocks(sn->mem, rbs, ARRAY_SIZE(rbs));
    if (n == 0) {
        return vmsig_snap_fail(reply, -ENODEV, "the VM has no guest RAM "
                               "mapped yet");
    }
    for (b = 0; b < n; b++) {
        need += qemu_ram_get_used_length(rbs[b].rb);
    }
    have = sn->used - (old ? old->bytes : 0);
    if (!old && sn->snaps->len >= VMSIG_SNAP_MAX) {
        return vmsig_snap_fail(reply, -ENOSPC, "%u snapshots are kept "
                               "already, the most there can be: delete one",
                               VMSIG_SNAP_MAX);
    }
    if (have + need > sn->limit) {
        return vmsig_snap_fail(reply, -ENOSPC, "snapshot needs %" PRIu64
                               " MiB, %" PRIu64 " MiB of snapshot-limit=%"
                               PRIu64 " MiB in use: raise snapshot-limit or "
                               "delete one", need >> 20, have >> 20,
                               sn->limit >> 20);
    }

    s = g_new0(VmsigSnapshot, 1);
    pstrcpy(s->name, sizeof(s->name), c->name);
    s->blocks = g_new0(VmsigSnapBlock, n);
    for (b = 0; b < n; b++) {
        VmsigSnapBlock *blk = &s->blocks[s->nblocks];

        blk->t = vmsig_track_get(sn, rbs[b].rb, rbs[b].mr);
        s->nblocks++;
        blk->copy = mmap(NULL, blk->t->len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (blk->copy == MAP_FAILED) {
            blk->copy = NULL;
            vmsig_snapshot_free(sn, s);
            return vmsig_snap_fail(reply, -ENOMEM, "cannot allocate %"
                                   PRIu64 " MiB for the snapshot",
                                   need >> 20);
        }
        blk->dirty = bitmap_new(blk->t->pages);
    }

    t0 = get_clock();
    was_running = vmsig_snap_stop(c->then, RUN_STATE_SAVE_VM);
    /* what was written before now matters to the older snapshots only */
    vmsig_snap_harvest(sn);
    for (b = 0; b < s->nblocks; b++) {
        res.pages += vmsig_snap_copy_in(&s->blocks[b]);
        bitmap_zero(s->blocks[b].dirty, s->blocks[b].t->pages);
        s->bytes += s->blocks[b].t->len;
    }
    r = vmsig_snap_save_state(s);
    if (r == 0) {
        vmsig_snap_cut_cpu_common(s);
    }
    res.stopped_ns = get_clock() - t0;
    if (r < 0) {
        vmsig_snapshot_free(sn, s);
        vmsig_snap_resume(c->then, was_running, reply);
        return vmsig_snap_fail(reply, -EIO, "QEMU could not save the "
                               "device state (see its log)");
    }
    s->bytes += s->state_len;
    s->ramlist = vmsig_snap_ramlist();
    s->saved_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    if (old) {
        sn->used -= old->bytes;
        g_ptr_array_remove(sn->snaps, old);
        vmsig_snapshot_free(sn, old);
    }
    g_ptr_array_add(sn->snaps, s);
    sn->used += s->bytes;

    return vmsig_snap_finish(sn, s, VMSIG_SNAP_SAVE, principal, c->then,
                             was_running, &res, reply);
}

/*
 * Put [off, off + len) of block t back from copy. Where the block is mapped
 * now, through QEMU's own write path, which drops TCG's translated code of
 * exactly those pages (and marks them in the dirty log; the caller clears
 * that); where it is not (hidden by PAM), by memcpy: then *flush is set and
 * the caller flushes all translated code.
 */
static void vmsig_snap_put(VmsigSnap *sn, VmsigTrack *t, const uint8_t *copy,
                           uint64_t off, uint64_t len, bool *flush)
{
    while (len) {
        uint64_t gpa = 0;
        uint64_t n = vmsig_mem_gpa(sn->mem, t->rb, off, len, &gpa);

        if (n && address_space_write(&address_space_memory, gpa,
                                     MEMTXATTRS_UNSPECIFIED, copy + off,
                                     n) == MEMTX_OK) {
            off += n;
            len -= n;
            continue;
        }
        n = n ? n : VMSIG_SNAP_PAGE;
        n = MIN(n, len);
        memcpy(t->host + off, copy + off, n);
        *flush = true;
        off += n;
        len -= n;
    }
}

/* Copy back what may differ from s; tell the other snapshots. */
static uint64_t vmsig_snap_copy_back(VmsigSnap *sn, VmsigSnapshot *s,
                                     bool full, bool *flush)
{
    uint64_t pages = 0;
    unsigned b;
    guint j;

    for (b = 0; b < s->nblocks; b++) {
        VmsigSnapBlock *blk = &s->blocks[b];
        VmsigTrack *t = blk->t;
        uint64_t p = 0, e;

        if (full) {
            bitmap_fill(blk->dirty, t->pages);
        }
        while ((p = find_next_bit(blk->dirty, t->pages, p)) < t->pages) {
            e = find_next_zero_bit(blk->dirty, t->pages, p);
            vmsig_snap_put(sn, t, blk->copy, p * VMSIG_SNAP_PAGE,
                           (e - p) * VMSIG_SNAP_PAGE, flush);
            pages += e - p;
            p = e;
        }
        /* pages written here now differ from the other snapshots' copies */
        for (j = 0; j < sn->snaps->len; j++) {
            VmsigSnapshot *o = g_ptr_array_index(sn->snaps, j);
            unsigned k;

            for (k = 0; o != s && k < o->nblocks; k++) {
                if (o->blocks[k].t == t) {
                    bitmap_or(o->blocks[k].dirty, o->blocks[k].dirty,
                              blk->dirty, t->pages);
                }
            }
        }
        bitmap_zero(blk->dirty, t->pages);
    }
    return pages;
}

/* The vCPUs are stopped: what the log holds now are our own writes. */
static void vmsig_snap_forget_writes(VmsigSnap *sn)
{
    guint i;

    for (i = 0; i < sn->tracks->len; i++) {
        VmsigTrack *t = g_ptr_array_index(sn->tracks, i);

        g_free(memory_region_snapshot_and_clear_dirty(t->mr, 0, t->len,
                                                      DIRTY_MEMORY_VGA));
    }
}

static int vmsig_snap_restore(VmsigSnap *sn, const vmsig_wire_snapshot *c,
                              uint32_t principal, vmsig_reply *reply)
{
    VmsigSnapshot *s = vmsig_snap_find(sn, c->name);
    vmsig_wire_snap_result res = { 0 };
    g_autofree char *ramlist = NULL;
    bool was_running, flush = false;
    int64_t t0, t1, t2, t3;
    int r;

    if (!s) {
        return vmsig_snap_fail(reply, -ENOENT, "no snapshot named '%s'",
                               c->name);
    }
    ramlist = vmsig_snap_ramlist();
    if (strcmp(ramlist, s->ramlist)) {
        return vmsig_snap_fail(reply, -ESTALE, "the VM's RAM changed since "
                               "snapshot '%s' was saved (memory hotplug): "
                               "delete it and save again", s->name);
    }
    r = vmsig_snap_refuse(reply);
    if (r == 0) {
        r = vmsig_snap_state_ok(reply);
    }
    if (r < 0) {
        return r;
    }

    t0 = get_clock();
    was_running = vmsig_snap_stop(c->then, RUN_STATE_RESTORE_VM);
    t1 = get_clock();
    vmsig_snap_harvest(sn);
    t2 = get_clock();
    res.full = !!(c->flags & VMSIG_SNAP_F_FULL);
    res.pages = vmsig_snap_copy_back(sn, s, res.full, &flush);
    vmsig_snap_forget_writes(sn);
    /* TCG: translated code of pages put back by memcpy goes */
    if (flush && first_cpu) {
        tb_flush(first_cpu);
    }
    t3 = get_clock();
    vmsig_mem_hold(sn->mem);
    r = vmsig_snap_load_state(s);
    if (r == 0) {
        vmsig_snap_put_cpu_common(s);
    }
    res.stopped_ns = get_clock() - t0;
    trace_vmsig_snapshot_restore(s->name, res.pages, (t1 - t0) / 1000,
                                 (t2 - t1) / 1000, (t3 - t2) / 1000,
                                 (t0 + res.stopped_ns - t3) / 1000,
                                 s->cpus != NULL);
    if (r < 0) {
        vmsig_mem_republish(sn->mem);
        /* RAM is the snapshot's, devices may be half loaded: stay stopped */
        return vmsig_snap_fail(reply, -EIO, "QEMU could not load the device "
                               "state of '%s' (see its log); the VM stays "
                               "stopped", s->name);
    }
    s->restores++;
    /* a mapped reader must not mix states: a new map generation */
    vmsig_mem_republish(sn->mem);
    return vmsig_snap_finish(sn, s, VMSIG_SNAP_RESTORE, principal, c->then,
                             was_running, &res, reply);
}

static int vmsig_snap_delete(VmsigSnap *sn, const vmsig_wire_snapshot *c,
                             uint32_t principal, vmsig_reply *reply)
{
    VmsigSnapshot *s = vmsig_snap_find(sn, c->name);
    vmsig_wire_snap_result res = { 0 };

    if (!s) {
        return vmsig_snap_fail(reply, -ENOENT, "no snapshot named '%s'",
                               c->name);
    }
    vmsig_snap_info(s, &res.info);
    sn->used -= s->bytes;
    g_ptr_array_remove(sn->snaps, s);
    vmsig_snapshot_free(sn, s);
    vmsig_snap_event(sn, VMSIG_SNAP_DELETE, principal, c->name);
    vmsig_snap_answer(sn, &res, reply);
    return 0;
}

static int vmsig_snap_list(VmsigSnap *sn, vmsig_reply *reply)
{
    vmsig_wire_snap_list head = {
        .count = sn->snaps->len,
        .max = VMSIG_SNAP_MAX,
        .used = sn->used,
        .limit = sn->limit,
    };
    guint i;

    QEMU_BUILD_BUG_ON(sizeof(head) + VMSIG_SNAP_MAX *
                      sizeof(vmsig_wire_snap_info) > VMSIG_REPLY_BODY_MAX);
    memcpy(reply->body, &head, sizeof(head));
    reply->len = sizeof(head);
    for (i = 0; i < sn->snaps->len; i++) {
        vmsig_wire_snap_info info;

        vmsig_snap_info(g_ptr_array_index(sn->snaps, i), &info);
        memcpy(reply->body + reply->len, &info, sizeof(info));
        reply->len += sizeof(info);
    }
    return 0;
}

static int vmsig_snap_run(VmsigSnap *sn, const vmsig_wire_snapshot *c,
                          uint32_t principal, vmsig_reply *reply)
{
    int r;

    switch (c->op) {
    case VMSIG_SNAP_SAVE:
        r = vmsig_snap_save(sn, c, principal, reply);
        break;
    case VMSIG_SNAP_RESTORE:
        r = vmsig_snap_restore(sn, c, principal, reply);
        break;
    case VMSIG_SNAP_DELETE:
        r = vmsig_snap_delete(sn, c, principal, reply);
        break;
    case VMSIG_SNAP_LIST:
        r = vmsig_snap_list(sn, reply);
        break;
    default:
        r = -EINVAL;
        break;
    }
    trace_vmsig_snapshot(c->op, c->name, principal, r);
    return r;
}

/* One queued command per run, in arrival order, outside the dispatch. */
static void vmsig_snap_bh(void *opaque)
{
    VmsigSnap *sn = opaque;
    VmsigSnapJob *job = g_queue_pop_head(&sn->jobs);
    g_autofree vmsig_reply *reply = g_new0(vmsig_reply, 1);
    int r;

    if (!job) {
        return;
    }
    r = vmsig_snap_run(sn, &job->cmd, job->principal, reply);
    vmsig_core_complete(sn->core, job->ticket, r, reply->body, reply->len);
    if (!g_queue_is_empty(&sn->jobs)) {
        qemu_bh_schedule(sn->bh);
    }
    object_unref(job->owner);
    g_free(job);
}

int vmsig_snap_command(VmsigSnap *sn, Object *owner, const vmsig_event *cmd,
                       uint32_t principal, vmsig_reply *reply)
{
    VmsigSnapJob *job;

    if (!reply->ticket || cmd->u.snapshot.op == VMSIG_SNAP_LIST) {
        /* an in-process control takes no late reply; LIST stops nothing */
        return vmsig_snap_run(sn, &cmd->u.snapshot, principal, reply);
    }
    job = g_new0(VmsigSnapJob, 1);
    job->sn = sn;
    job->owner = owner;
    job->ticket = reply->ticket;
    job->principal = principal;
    job->cmd = cmd->u.snapshot;
    object_ref(owner);
    g_queue_push_tail(&sn->jobs, job);
    qemu_bh_schedule(sn->bh);
    return -EINPROGRESS;
}

VmsigSnap *vmsig_snap_new(vmsig_core *core, VmsigMem *mem, uint32_t endpoint,
                          uint64_t limit)
{
    VmsigSnap *sn = g_new0(VmsigSnap, 1);

    sn->core = core;
    sn->mem = mem;
    sn->endpoint = endpoint;
    sn->limit = limit;
    sn->snaps = g_ptr_array_new();
    sn->tracks = g_ptr_array_new();
    g_queue_init(&sn->jobs);
    sn->bh = qemu_bh_new(vmsig_snap_bh, sn);
    return sn;
}

void vmsig_snap_free(VmsigSnap *sn)
{
    if (!sn) {
        return;
    }
    /* queued jobs hold a reference on the object: none is left here */
    qemu_bh_delete(sn->bh);
    while (sn->snaps->len) {
        VmsigSnapshot *s = g_ptr_array_index(sn->snaps, sn->snaps->len - 1);

        g_ptr_array_remove_index(sn->snaps, sn->snaps->len - 1);
        vmsig_snapshot_free(sn, s);
    }
    g_ptr_array_free(sn->snaps, true);
    g_ptr_array_free(sn->tracks, true);
    g_free(sn);
}
