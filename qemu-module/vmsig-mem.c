/*
 * vmsig-mem.c - guest RAM for the vmsig seam: a MemoryListener on the system
 * address space publishes a versioned MEMCTX (segments + read-only fds) once
 * per memory transaction that changes the RAM map; CMD_MEMWRITE writes guest
 * RAM atomically with respect to the vCPUs.
 *
 * Model: hw/virtio/vhost.c and hw/remote/proxy-memory-listener.c (collect
 * sections in begin/region_add/region_nop, act once in commit).
 *
 * Everything here runs with the BQL held. The listener's commit can run on a
 * vCPU thread (a guest reprogramming PAM or a PCI BAR): the map is then
 * recorded at once (CMD_MEMWRITE validates against it) and published to the
 * core from a bottom half on the main loop, because the core is only ever
 * entered from the main loop thread.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <sys/stat.h>
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/atomic.h"
#include "qemu/thread.h"
#include "vmsig-compat.h"
#include "vmsig-qemu.h"
#include "trace.h"

/* What the fix is, short enough for vmsig_wire_memctx.why (103 bytes). */
#define VMSIG_MEM_FIX "RAM not shareable: -object memory-backend-memfd," \
                      "id=ram0,size=N,share=on -machine memory-backend=ram0"
#define VMSIG_MEM_TOO_BIG "RAM map has more than 64 segments or 16 files"
#define VMSIG_MEM_NO_RO "cannot reopen guest RAM read-only (see QEMU's log)"

/* One stretch of guest RAM as the listener saw it (sorted, merged). */
typedef struct VmsigSeg {
    uint64_t gpa;
    uint64_t size;
    uint64_t offset;  /* in the RAM block, which is the offset in its fd */
    RAMBlock *rb;
    MemoryRegion *mr; /* the RAM region that owns rb */
    int qfd;          /* QEMU's own fd of the block, -1 if none */
    dev_t dev;        /* identity of the file behind qfd */
    ino_t ino;
    bool shareable;   /* fd-backed and MAP_SHARED */
} VmsigSeg;

/* A map ready to publish: the segments and their read-only fds (ours). */
typedef struct VmsigPending {
    vmsig_wire_memctx mc;
    vmsig_wire_memseg segs[VMSIG_MEMCTX_MAX_SEGS];
    int fds[VMSIG_WIRE_MAX_FDS];
    unsigned nfds;
} VmsigPending;

struct VmsigMem {
    MemoryListener listener;
    vmsig_core *core;
    uint32_t endpoint;
    QemuThread main_thread;

    GArray *collect;   /* VmsigSeg, between begin and commit */
    GArray *cur;       /* VmsigSeg: the map of the last commit */
    int cur_status;    /* what was (or will be) published for cur */
    bool have_cur;

    VmsigPending *pending; /* built at commit, not yet published */
    QEMUBH *bh;
    bool writing;      /* inside vmsig_mem_write with the BQL dropped */
    bool warned;
};

static bool vmsig_section_is_ram(MemoryRegionSection *s)
{
    MemoryRegion *mr = s->mr;

    return memory_region_is_ram(mr) && !memory_region_is_rom(mr) &&
           !memory_region_is_romd(mr) && !memory_region_is_ram_device(mr) &&
           !s->readonly && mr->ram_block;
}

static void vmsig_mem_collect(MemoryListener *l, MemoryRegionSection *s)
{
    VmsigMem *m = container_of(l, VmsigMem, listener);
    RAMBlock *rb;
    VmsigSeg seg = { 0 };
    struct stat st;

    if (!vmsig_section_is_ram(s)) {
        return;
    }
    rb = s->mr->ram_block;
    seg.gpa = s->offset_within_address_space;
    seg.size = int128_get64(s->size);
    /*
     * QEMU 7.2 maps a RAM block's fd from offset 0 (no fd_offset yet), and a
     * terminal RAM region's offset 0 is its block's start.
     */
    seg.offset = s->offset_within_region;
    seg.rb = rb;
    seg.mr = s->mr;
    seg.qfd = qemu_ram_get_fd(rb);
    seg.shareable = seg.qfd >= 0 && qemu_ram_is_shared(rb);
    if (seg.qfd >= 0 && fstat(seg.qfd, &st) == 0) {
        seg.dev = st.st_dev;
        seg.ino = st.st_ino;
    }
    g_array_append_val(m->collect, seg);
}

static void vmsig_mem_region_add(MemoryListener *l, MemoryRegionSection *s)
{
    vmsig_mem_collect(l, s);
}

static void vmsig_mem_region_nop(MemoryListener *l, MemoryRegionSection *s)
{
    vmsig_mem_collect(l, s);
}

static void vmsig_mem_begin(MemoryListener *l)
{
    VmsigMem *m = container_of(l, VmsigMem, listener);

    g_array_set_size(m->collect, 0);
}

static gint vmsig_seg_cmp(gconstpointer a, gconstpointer b)
{
    const VmsigSeg *x = a, *y = b;

    return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

/* Sort by gpa and merge neighbours that continue the same block. */
static void vmsig_segs_normalize(GArray *a)
{
    guint i, out = 0;

    g_array_sort(a, vmsig_seg_cmp);
    for (i = 0; i < a->len; i++) {
        VmsigSeg *s = &g_array_index(a, VmsigSeg, i);
        VmsigSeg *last = out ? &g_array_index(a, VmsigSeg, out - 1) : NULL;

        if (last && last->rb == s->rb && last->gpa + last->size == s->gpa &&
            last->offset + last->size == s->offset) {
            last->size += s->size;
            continue;
        }
        g_array_index(a, VmsigSeg, out++) = *s;
    }
    g_array_set_size(a, out);
}

static bool vmsig_segs_equal(GArray *a, GArray *b)
{
    guint i;

    if (a->len != b->len) {
        return false;
    }
    for (i = 0; i < a->len; i++) {
        VmsigSeg *x = &g_array_index(a, VmsigSeg, i);
        VmsigSeg *y = &g_array_index(b, VmsigSeg, i);

        /* dev/ino, not the fd number: a new DIMM may reuse an old number. */
        if (x->gpa != y->gpa || x->size != y->size || x->offset != y->offset ||
            x->rb != y->rb || x->qfd != y->qfd || x->dev != y->dev ||
            x->ino != y->ino || x->shareable != y->shareable) {
            return false;
        }
    }
    return true;
}

static void vmsig_pending_free(VmsigPending *p)
{
    unsigned i;

    if (!p) {
        return;
    }
    for (i = 0; i < p->nfds; i++) {
        close(p->fds[i]);
    }
    g_free(p);
}

static bool vmsig_is_memfd(int ro)
{
    g_autofree char *link = g_strdup_printf("/proc/self/fd/%d", ro);
    char target[64];
    ssize_t n = readlink(link, target, sizeof(target) - 1);

    if (n < 0) {
        return false;
    }
    target[n] = '\0';
    return g_str_has_prefix(target, "/memfd:");
}

/*
 * A read-only descriptor for QEMU's fd qfd, never qfd itself: SCM_RIGHTS
 * shares the open file description, so passing qfd would hand out write
 * access. Returns the new fd or -errno.
 */
static int vmsig_open_ro(int qfd)
{
    g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", qfd);
    struct stat qst, rst;
    int ro, fl;

    if (fstat(qfd, &qst) < 0) {
        return -errno;
    }
    ro = open(path, O_RDONLY | O_CLOEXEC);
    if (ro < 0) {
        return -errno;
    }
    fl = fcntl(ro, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY || fstat(ro, &rst) < 0 ||
        rst.st_dev != qst.st_dev || rst.st_ino != qst.st_ino) {
        close(ro);
        return -EBADF;
    }
    /*
     * memfd inodes are created 0777: anyone holding the fd could reopen it
     * read-write through /proc/self/fd. 0400 leaves only the owner (who
     * could chmod it back) and root able to. A memory-backend-file is the
     * user's own file: its permissions are theirs to set.
     */
    if (vmsig_is_memfd(ro) && (rst.st_mode & 07777) != 0400 &&
        fchmod(ro, 0400) < 0) {
        warn_report("vmsig: cannot make guest RAM inode 0400: %s",
                    strerror(errno));
    }
    return ro;
}

static VmsigPending *vmsig_build(VmsigMem *m, GArray *segs, int *status)
{
    VmsigPending *p = g_new0(VmsigPending, 1);
    int qfds[VMSIG_WIRE_MAX_FDS];
    const char *why = NULL;
    uint64_t total = 0;
    guint i;

    *status = 0;
    for (i = 0; i < segs->len && !why; i++) {
        VmsigSeg *s = &g_array_index(segs, VmsigSeg, i);
        unsigned k;

        if (!s->shareable) {
            *status = -ENODEV;
            why = VMSIG_MEM_FIX;
            break;
        }
        if (i >= VMSIG_MEMCTX_MAX_SEGS) {
            *status = -E2BIG;
            why = VMSIG_MEM_TOO_BIG;
            break;
        }
        for (k = 0; k < p->nfds && qfds[k] != s->qfd; k++) {
            /* find the fd's index */
        }
        if (k == p->nfds) {
            int ro;

            if (p->nfds == VMSIG_WIRE_MAX_FDS) {
                *status = -E2BIG;
                why = VMSIG_MEM_TOO_BIG;
                break;
            }
            ro = vmsig_open_ro(s->qfd);
            if (ro < 0) {
                error_report("vmsig: cannot reopen guest RAM fd %d read-only:"
                             " %s", s->qfd, strerror(-ro));
                *status = ro;
                why = VMSIG_MEM_NO_RO;
                break;
            }
            qfds[k] = s->qfd;
            p->fds[p->nfds++] = ro;
        }
        p->segs[i] = (vmsig_wire_memseg) {
            .gpa = s->gpa, .size = s->size, .offset = s->offset,
            .fd_index = k,
        };
        total += s->size;
    }
    if (why) {
        for (i = 0; i < p->nfds; i++) {
            close(p->fds[i]);
        }
        p->nfds = 0;
        memset(p->segs, 0, sizeof(p->segs));
        p->mc.status = *status;
        pstrcpy(p->mc.why, sizeof(p->mc.why), why);
        if (*status == -ENODEV && !m->warned) {
            warn_report("vmsig: guest RAM is not shareable (anonymous or "
                        "share=off), so MEMCTX is unavailable; use -object "
                        "memory-backend-memfd,id=ram0,size=...,share=on "
                        "-machine memory-backend=ram0");
            m->warned = true;
        }
    } else {
        p->mc.nseg = segs->len;
        p->mc.ram_size = total;
    }
    return p;
}

/* Hand the pending map to the core (main loop thread only). */
static void vmsig_mem_flush(VmsigMem *m)
{
    VmsigPending *p = m->pending;
    int r;

    if (!p) {
        return;
    }
    m->pending = NULL;
    p->mc.generation = 0; /* the core numbers it: its last + 1 */
    r = vmsig_core_publish_memctx(m->core, m->endpoint, &p->mc, p->segs,
                                  p->fds, p->nfds);
    trace_vmsig_memctx_publish(m->endpoint,
                               vmsig_core_memctx_generation(m->core,
                                                            m->endpoint),
                               p->mc.nseg, p->nfds, r < 0 ? r : p->mc.status);
    if (r < 0) {
        error_report("vmsig: publishing the RAM map failed: %s",
                     strerror(-r));
    }
    /* The core keeps its own dups. */
    vmsig_pending_free(p);
}

static void vmsig_mem_bh(void *opaque)
{
    VmsigMem *m = opaque;

    if (!m->writing) {
        vmsig_mem_flush(m);
    }
}

static void vmsig_mem_commit(MemoryListener *l)
{
    VmsigMem *m = container_of(l, VmsigMem, listener);
    GArray *tmp;
    int status;

    vmsig_segs_normalize(m->collect);
    if (m->have_cur && vmsig_segs_equal(m->collect, m->cur)) {
        return;
    }
    tmp = m->cur;
    m->cur = m->collect;
    m->collect = tmp;
    g_array_set_size(m->collect, 0);
    m->have_cur = true;
    if (m->cur->len == 0) {
        /*
         * No RAM at all: before the machine maps its RAM (-object runs
         * first) and while QEMU tears it down. MEMWRITE finds no RAM, but
         * a map nobody can use is not published.
         */
        vmsig_pending_free(m->pending);
        m->pending = NULL;
        return;
    }

    /*
     * Open the read-only fds now: a block removed by this transaction may
     * have closed its fd by the time a bottom half runs.
     */
    vmsig_pending_free(m->pending);
    m->pending = vmsig_build(m, m->cur, &status);
    if (m->have_cur && status != 0 && status == m->cur_status &&
        vmsig_core_memctx_generation(m->core, m->endpoint)) {
        /* still unavailable for the same reason: nothing new to say */
        vmsig_pending_free(m->pending);
        m->pending = NULL;
        return;
    }
    m->cur_status = status;
    if (!m->writing && qemu_thread_is_self(&m->main_thread)) {
        vmsig_mem_flush(m);
    } else {
        qemu_bh_schedule(m->bh);
    }
}

VmsigMem *vmsig_mem_new(vmsig_core *core, uint32_t endpoint, Error **errp)
{
    VmsigMem *m = g_new0(VmsigMem, 1);

    m->core = core;
    m->endpoint = endpoint;
    qemu_thread_get_self(&m->main_thread);
    m->collect = g_array_new(false, false, sizeof(VmsigSeg));
    m->cur = g_array_new(false, false, sizeof(VmsigSeg));
    m->bh = qemu_bh_new(vmsig_mem_bh, m);
    m->listener = (MemoryListener) {
        .name = "vmsig",
        .begin = vmsig_mem_begin,
        .commit = vmsig_mem_commit,
        .region_add = vmsig_mem_region_add,
        .region_nop = vmsig_mem_region_nop,
        /* like vhost: after the accelerators' listeners */
        .priority = 10,
    };
    /* Registration replays the current map: begin, region_add..., commit. */
    memory_listener_register(&m->listener, &address_space_memory);
    return m;
}

unsigned vmsig_mem_blocks(VmsigMem *m, VmsigRamBlock *out, unsigned max)
{
    unsigned n = 0, k;
    guint i;

    for (i = 0; m->have_cur && i < m->cur->len; i++) {
        VmsigSeg *s = &g_array_index(m->cur, VmsigSeg, i);

        for (k = 0; k < n && out[k].rb != s->rb; k++) {
            /* seen already? */
        }
        if (k == n && n < max) {
            out[n++] = (VmsigRamBlock) { .rb = s->rb, .mr = s->mr };
        }
    }
    return n;
}

uint64_t vmsig_mem_gpa(VmsigMem *m, RAMBlock *rb, uint64_t offset,
                       uint64_t len, uint64_t *gpa)
{
    guint i;

    for (i = 0; m->have_cur && i < m->cur->len; i++) {
        VmsigSeg *s = &g_array_index(m->cur, VmsigSeg, i);

        if (s->rb == rb && offset >= s->offset &&
            offset - s->offset < s->size) {
            *gpa = s->gpa + (offset - s->offset);
            return MIN(len, s->size - (offset - s->offset));
        }
    }
    return 0;
}

void vmsig_mem_hold(VmsigMem *m)
{
    m->writing = true;
}

void vmsig_mem_republish(VmsigMem *m)
{
    int status;

    m->writing = false;

    if (!m->have_cur || m->cur->len == 0) {
        return;
    }
    vmsig_pending_free(m->pending);
    m->pending = vmsig_build(m, m->cur, &status);
    if (status != 0) {
        /* an unavailable map has nothing anyone could have read */
        vmsig_pending_free(m->pending);
        m->pending = NULL;
        return;
    }
    m->cur_status = status;
    vmsig_mem_flush(m);
}

void vmsig_mem_free(VmsigMem *m)
{
    if (!m) {
        return;
    }
    memory_listener_unregister(&m->listener);
    qemu_bh_delete(m->bh);
    vmsig_pending_free(m->pending);
    g_array_free(m->collect, true);
    g_array_free(m->cur, true);
    g_free(m);
}


/* ---- CMD_MEMWRITE ---- */

/* Why [gpa, gpa+1) is not writable RAM: -EROFS for ROM, else -EFAULT. */
static int vmsig_classify(uint64_t gpa)
{
    MemoryRegionSection s = memory_region_find(get_system_memory(), gpa, 1);
    int r = -EFAULT;

    if (!s.mr) {
        return r; /* nothing mapped there */
    }
    if (s.offset_within_address_space == gpa &&
        (memory_region_is_rom(s.mr) || memory_region_is_romd(s.mr) ||
         (s.readonly && memory_region_is_ram(s.mr)))) {
        r = -EROFS;
    }
    memory_region_unref(s.mr);
    return r;
}

/*
 * The whole of [gpa, gpa+len) is guest RAM in the current map (adjacent
 * segments may cover it together). 0, -EFAULT (MMIO or nothing), -EROFS.
 */
static int vmsig_check_range(VmsigMem *m, uint64_t gpa, uint64_t len)
{
    /* inclusive bounds: a range may end at 2^64 - 1, where gpa + len wraps */
    /* (the core refused wrap-around) */
    uint64_t pos = gpa, last = gpa + (len - 1);
    guint i;

    for (;;) {
        for (i = 0; i < m->cur->len; i++) {
            VmsigSeg *s = &g_array_index(m->cur, VmsigSeg, i);

            if (pos >= s->gpa && pos - s->gpa < s->size) {
                uint64_t seg_last = s->gpa + (s->size - 1);

                if (seg_last >= last) {
                    return 0;
                }
                pos = seg_last + 1; /* seg_last < last: no wrap */
                break;
            }
        }
        if (i == m->cur->len) {
            return vmsig_classify(pos);
        }
    }
}

/* 1, 2, 4 or 8 aligned bytes: one host store the vCPUs see whole. */
static int vmsig_write_atomic(uint64_t gpa, const void *data, unsigned len)
{
    hwaddr plen = len;
    void *host = address_space_map(&address_space_memory, gpa, &plen, true,
                                   MEMTXATTRS_UNSPECIFIED);
    uint64_t v = 0;

    if (!host) {
        return -EFAULT;
    }
    if (plen != len) {
        address_space_unmap(&address_space_memory, host, plen, false, 0);
        return -EFAULT;
    }
    memcpy(&v, data, len); /* guest and host are little-endian */
    switch (len) {
    case 1:
        qatomic_set((uint8_t *)host, (uint8_t)v);
        break;
    case 2:
        qatomic_set((uint16_t *)host, (uint16_t)v);
        break;
    case 4:
        qatomic_set((uint32_t *)host, (uint32_t)v);
        break;
    default:
        qatomic_set((uint64_t *)host, v);
        break;
    }
    /* marks the range dirty for every client and drops TCG's stale code */
    address_space_unmap(&address_space_memory, host, len, true, len);
    return 0;
}

/* A large write done with the vCPUs stopped, answered later. */
typedef struct VmsigWriteJob {
    VmsigMem *m;
    Object *owner;     /* referenced until the answer: keeps m alive */
    uint64_t ticket;
    uint64_t gpa;
    uint32_t len;
    int status;
    uint8_t data[];
} VmsigWriteJob;

/*
 * [gpa, gpa+len) is still writable RAM in QEMU's current view: the map may
 * have changed since the main loop checked it (the range check there has
 * the precise errno; here any change is -EFAULT).
 */
static bool vmsig_still_ram(uint64_t gpa, uint64_t len)
{
    while (len) {
        MemoryRegionSection sec = memory_region_find(get_system_memory(),
                                                     gpa, len);
        uint64_t n;
        bool ok;

        if (!sec.mr) {
            return false;
        }
        ok = sec.offset_within_address_space == gpa &&
             memory_region_is_ram(sec.mr) &&
             !sec.readonly && !memory_region_is_rom(sec.mr) &&
             !memory_region_is_romd(sec.mr);
        n = int128_get64(sec.size);
        memory_region_unref(sec.mr);
        if (!ok || n == 0) {
            return false;
        }
        n = MIN(n, len);
        gpa += n;
        len -= n;
    }
    return true;
}

/* Back on the main loop: the map may be published again, and answer. */
static void vmsig_write_done(void *opaque)
{
    VmsigWriteJob *job = opaque;

    job->m->writing = false;
    vmsig_mem_flush(job->m);
    vmsig_core_complete(job->m->core, job->ticket, job->status, NULL, 0);
    object_unref(job->owner);
    g_free(job);
}

/* With every vCPU stopped (async_safe_run_on_cpu), the BQL not held. */
static void vmsig_write_exclusive(CPUState *cs, run_on_cpu_data data)
{
    VmsigWriteJob *job = data.host_ptr;
    MemTxResult res;

    if (!vmsig_still_ram(job->gpa, job->len)) {
        job->status = -EFAULT;
    } else {
        res = address_space_write(&address_space_memory, job->gpa,
                                  MEMTXATTRS_UNSPECIFIED, job->data, job->len);
        job->status = res == MEMTX_OK ? 0 : -EFAULT;
    }
    aio_bh_schedule_oneshot(qemu_get_aio_context(), vmsig_write_done, job);
}

int vmsig_mem_write(VmsigMem *m, Object *owner, const vmsig_event *cmd,
                    vmsig_reply *reply)
{
    const vmsig_wire_memwrite *mw = &cmd->u.memwrite;
    uint64_t gpa = mw->gpa, len = mw->len;
    MemTxResult res;
    bool paused = false;
    int r;

    if (mw->flags || !cmd->ool || cmd->ool_len != len || len == 0 ||
        len > VMSIG_MEMWRITE_MAX || gpa > UINT64_MAX - (len - 1)) {
        return -EINVAL; /* the core checked; never trust twice-removed input */
    }
    r = vmsig_check_range(m, gpa, len);
    if (r < 0) {
        return r;
    }
    if ((len == 1 || len == 2 || len == 4 || len == 8) && !(gpa & (len - 1))) {
        r = vmsig_write_atomic(gpa, cmd->ool, len);
    } else if (reply->ticket && runstate_is_running() && first_cpu) {
        /*
         * The QEMU way: the copy runs with every vCPU stopped, scheduled
         * like tb_flush (async_safe_run_on_cpu), and the main loop goes on;
         * the reply (and MEMWRITE_DONE) come when it is done. No MEMCTX is
         * published in between (writing), so the reply's generation is the
         * one the write was checked against.
         */
        VmsigWriteJob *job = g_malloc(sizeof(*job) + len);

        job->m = m;
        job->owner = owner;
        job->ticket = reply->ticket;
        job->gpa = gpa;
        job->len = (uint32_t)len;
        job->status = 0;
        memcpy(job->data, cmd->ool, len);
        object_ref(owner);
        m->writing = true;
        async_safe_run_on_cpu(first_cpu, vmsig_write_exclusive,
                              RUN_ON_CPU_HOST_PTR(job));
        return -EINPROGRESS;
    } else {
        /*
         * A paused VM, or an in-process control (no late reply): stop
         * every vCPU for the copy, as vm_stop does (without changing the
         * run state): no vCPU sees half of it. pause_all_vcpus drops
         * the BQL while it waits, so a vCPU may change the memory map in
         * between: check again once they are all stopped.
         */
        m->writing = true;
        if (runstate_is_running()) {
            pause_all_vcpus();
            paused = true;
            r = vmsig_check_range(m, gpa, len);
        }
        if (r == 0) {
            res = address_space_write(&address_space_memory, gpa,
                                      MEMTXATTRS_UNSPECIFIED, cmd->ool, len);
            r = res == MEMTX_OK ? 0 : -EFAULT;
        }
        if (paused && runstate_is_running()) {
            resume_all_vcpus();
        }
        m->writing = false;
    }
    /* MEMWRITE_DONE names the generation this write was checked against. */
    vmsig_mem_flush(m);
    return r;
}
