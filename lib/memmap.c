/*
 * memmap.c - read-only mapping of a MEMCTX: one PROT_READ, MAP_SHARED mapping
 * per fd covering the range its segments need; refcounted.
 *
 * A mapping of a file that later shrinks faults (SIGBUS) on the pages past
 * the new end. QEMU's memfd backend seals its memfds against shrinking
 * (F_SEAL_SHRINK) unless seal=off; we record whether every fd is sealed
 * (vmsig_memmap_sealed) and map either way.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmsig/vmsig_client.h"

typedef struct mapseg {
    vmsig_wire_memseg seg;
    const uint8_t *host; /* address of seg.gpa */
} mapseg;

typedef struct fdmap {
    void *base;
    size_t len;
    uint64_t start; /* file offset of base */
    int fd;         /* our own dup, for SEEK_DATA/SEEK_HOLE; -1: treat as all data */
} fdmap;

struct vmsig_memmap {
    unsigned refs;
    uint64_t generation, ram_size;
    unsigned nseg, nmaps;
    int sealed; /* every mapped fd has F_SEAL_SHRINK */
    mapseg segs[VMSIG_MEMCTX_MAX_SEGS]; /* sorted by gpa, not overlapping */
    fdmap maps[VMSIG_WIRE_MAX_FDS];
};

static int cmp_seg(const void *a, const void *b)
{
    const mapseg *x = a, *y = b;
    return x->seg.gpa < y->seg.gpa ? -1 : x->seg.gpa > y->seg.gpa;
}

static void unmap_all(vmsig_memmap *m)
{
    for (unsigned i = 0; i < m->nmaps; i++) {
        if (m->maps[i].base) {
            munmap(m->maps[i].base, m->maps[i].len);
        }
        if (m->maps[i].fd >= 0) {
            close(m->maps[i].fd);
        }
    }
}

vmsig_memmap *vmsig_memmap_new(const vmsig_event *memctx, const int *fds, unsigned nfds, int *err)
{
    int dummy;
    if (!err) {
        err = &dummy;
    }
    if (!memctx || memctx->kind != VMSIG_EV_MEMCTX) {
        *err = -EINVAL;
        return NULL;
    }
    const vmsig_wire_memctx *mc = &memctx->u.memctx;
    if (mc->status != 0) {
        *err = -ENODEV;
        return NULL;
    }
    if (mc->nseg > VMSIG_MEMCTX_MAX_SEGS || nfds > VMSIG_WIRE_MAX_FDS ||
        memctx->ool_len != mc->nseg * sizeof(vmsig_wire_memseg) || (mc->nseg && !memctx->ool)) {
        *err = -EINVAL;
        return NULL;
    }
    vmsig_memmap *m = calloc(1, sizeof(*m));
    if (!m) {
        *err = -ENOMEM;
        return NULL;
    }
    m->refs = 1;
    m->generation = mc->generation;
    m->ram_size = mc->ram_size;
    m->nseg = mc->nseg;
    m->nmaps = nfds;
    m->sealed = 1;
    for (unsigned i = 0; i < VMSIG_WIRE_MAX_FDS; i++) {
        m->maps[i].fd = -1;
    }

    /* The range each fd must cover, checked against its size. */
    uint64_t lo[VMSIG_WIRE_MAX_FDS], hi[VMSIG_WIRE_MAX_FDS];
    for (unsigned i = 0; i < nfds; i++) {
        lo[i] = UINT64_MAX;
        hi[i] = 0;
    }
    for (unsigned i = 0; i < m->nseg; i++) {
        vmsig_wire_memseg s;
        memcpy(&s, (const uint8_t *)memctx->ool + i * sizeof(s), sizeof(s));
        if (s.fd_index >= nfds || fds[s.fd_index] < 0 || s.size == 0 ||
            s.offset + s.size < s.offset || s.gpa + s.size < s.gpa) {
            *err = -EINVAL;
            goto fail;
        }
        m->segs[i].seg = s;
        if (s.offset < lo[s.fd_index]) {
            lo[s.fd_index] = s.offset;
        }
        if (s.offset + s.size > hi[s.fd_index]) {
            hi[s.fd_index] = s.offset + s.size;
        }
    }
    qsort(m->segs, m->nseg, sizeof(m->segs[0]), cmp_seg);
    for (unsigned i = 1; i < m->nseg; i++) {
        if (m->segs[i - 1].seg.gpa + m->segs[i - 1].seg.size > m->segs[i].seg.gpa) {
            *err = -EINVAL; /* overlapping segments */
            goto fail;
        }
    }

    long pg = sysconf(_SC_PAGESIZE);
    uint64_t pagemask = (uint64_t)(pg > 0 ? pg : 4096) - 1;
    uint64_t start[VMSIG_WIRE_MAX_FDS];
    for (unsigned i = 0; i < nfds; i++) {
        if (hi[i] == 0) {
            continue; /* no segment uses this fd */
        }
        /* Seals first: once F_SEAL_SHRINK is set the size checked below
         * holds for good. Not a memfd (EINVAL), or no F_SEAL_SHRINK: the
         * file may shrink under the mapping. */
        int seals = fcntl(fds[i], F_GET_SEALS);
        if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
            m->sealed = 0;
        }
        struct stat st;
        if (fstat(fds[i], &st) < 0) {
            *err = -errno;
            goto fail;
        }
        if ((uint64_t)st.st_size < hi[i]) {
            *err = -EINVAL; /* segment outside its fd */
            goto fail;
        }
        start[i] = lo[i] & ~pagemask;
        size_t len = (size_t)(hi[i] - start[i]);
        void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fds[i], (off_t)start[i]);
        if (p == MAP_FAILED) {
            *err = -errno;
            goto fail;
        }
        m->maps[i].base = p;
        m->maps[i].len = len;
        m->maps[i].start = start[i];
        /* Our own descriptor, only to ask where the file has data
         * (vmsig_memmap_data). Without one (no fd left) every byte counts as
         * data: scans then still work, they just read holes. */
        m->maps[i].fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    }
    for (unsigned i = 0; i < m->nseg; i++) {
        const vmsig_wire_memseg *s = &m->segs[i].seg;
        m->segs[i].host = (const uint8_t *)m->maps[s->fd_index].base + (s->offset - start[s->fd_index]);
    }
    *err = 0;
    return m;

fail:
    unmap_all(m);
    free(m);
    return NULL;
}

vmsig_memmap *vmsig_memmap_ref(vmsig_memmap *m)
{
    if (m) {
        m->refs++;
    }
    return m;
}

void vmsig_memmap_unref(vmsig_memmap *m)
{
    if (!m || --m->refs > 0) {
        return;
    }
    unmap_all(m);
    free(m);
}

uint64_t vmsig_memmap_generation(const vmsig_memmap *m)
{
    return m->generation;
}

int vmsig_memmap_sealed(const vmsig_memmap *m)
{
    return m->sealed;
}

uint64_t vmsig_memmap_ram_size(const vmsig_memmap *m)
{
    return m->ram_size;
}

unsigned vmsig_memmap_nseg(const vmsig_memmap *m)
{
    return m->nseg;
}

const vmsig_wire_memseg *vmsig_memmap_seg(const vmsig_memmap *m, unsigned i)
{
    return i < m->nseg ? &m->segs[i].seg : NULL;
}

/* The segment holding gpa, or NULL. */
static const mapseg *find(const vmsig_memmap *m, uint64_t gpa)
{
    unsigned lo = 0, hi = m->nseg;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        const vmsig_wire_memseg *s = &m->segs[mid].seg;
        if (gpa < s->gpa) {
            hi = mid;
        } else if (gpa - s->gpa >= s->size) {
            lo = mid + 1;
        } else {
            return &m->segs[mid];
        }
    }
    return NULL;
}

const void *vmsig_memmap_ptr(const vmsig_memmap *m, uint64_t gpa, uint64_t len)
{
    if (!m) {
        return NULL;
    }
    const mapseg *s = find(m, gpa);
    if (!s || len > s->seg.size - (gpa - s->seg.gpa)) {
        return NULL;
    }
    return s->host + (gpa - s->seg.gpa);
}

int vmsig_memmap_read(const vmsig_memmap *m, uint64_t gpa, void *buf, size_t len)
{
    if (!m || gpa + len < gpa) {
        return -EFAULT;
    }
    /* Check the whole range first so a failed read copies nothing. */
    uint64_t at = gpa, left = len;
    while (left) {
        const mapseg *s = find(m, at);
        if (!s) {
            return -EFAULT;
        }
        uint64_t n = s->seg.size - (at - s->seg.gpa);
        if (n > left) {
            n = left;
        }
        at += n;
        left -= n;
    }
    at = gpa;
    left = len;
    uint8_t *out = buf;
    while (left) {
        const mapseg *s = find(m, at);
        uint64_t n = s->seg.size - (at - s->seg.gpa);
        if (n > left) {
            n = left;
        }
        memcpy(out, s->host + (at - s->seg.gpa), (size_t)n);
        out += n;
        at += n;
        left -= n;
    }
    return 0;
}

/* [off, off + n) of fd: the first data byte at or after off, and where that
 * data ends (*dend), both < off + n; 0 if none, 1 if found. lseek errors
 * other than ENXIO (no SEEK_DATA support) count as "all data". */
static int fd_data(int fd, uint64_t off, uint64_t n, uint64_t *dstart, uint64_t *dend)
{
    uint64_t end = off + n;
    if (fd < 0) {
        *dstart = off;
        *dend = end;
        return 1;
    }
    off_t d = lseek(fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
        if (errno == ENXIO) {
            return 0; /* only a hole from off to the end of the file */
        }
        *dstart = off;
        *dend = end;
        return 1;
    }
    if ((uint64_t)d >= end) {
        return 0;
    }
    off_t h = lseek(fd, d, SEEK_HOLE);
    *dstart = (uint64_t)d;
    *dend = h < 0 || (uint64_t)h > end ? end : (uint64_t)h;
    return 1;
}

int vmsig_memmap_data(const vmsig_memmap *m, uint64_t gpa, uint64_t end, uint64_t *data_gpa,
                      uint64_t *data_end)
{
    if (!m || !data_gpa || !data_end) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < m->nseg && gpa < end; i++) {
        const vmsig_wire_memseg *s = &m->segs[i].seg;
        uint64_t lo = gpa > s->gpa ? gpa : s->gpa, hi = s->gpa + s->size < end ? s->gpa + s->size : end;
        if (lo >= hi) {
            continue;
        }
        uint64_t ds, de;
        if (fd_data(m->maps[s->fd_index].fd, s->offset + (lo - s->gpa), hi - lo, &ds, &de)) {
            *data_gpa = s->gpa + (ds - s->offset);
            *data_end = s->gpa + (de - s->offset);
            return 1;
        }
    }
    return 0;
}

int vmsig_memmap_read_sparse(const vmsig_memmap *m, uint64_t gpa, void *buf, size_t len)
{
    if (!m || gpa + len < gpa) {
        return -EFAULT;
    }
    /* Every byte must be guest RAM, as for vmsig_memmap_read. */
    uint64_t at = gpa, left = len;
    while (left) {
        const mapseg *s = find(m, at);
        if (!s) {
            return -EFAULT;
        }
        uint64_t n = s->seg.size - (at - s->seg.gpa);
        at += n < left ? n : left;
        left -= n < left ? n : left;
    }
    uint8_t *out = buf;
    uint64_t end = gpa + len, ds, de;
    at = gpa;
    while (at < end && vmsig_memmap_data(m, at, end, &ds, &de) == 1) {
        memset(out + (at - gpa), 0, (size_t)(ds - at));
        int r = vmsig_memmap_read(m, ds, out + (ds - gpa), (size_t)(de - ds));
        if (r < 0) {
            return r;
        }
        at = de;
    }
    if (at < end) {
        memset(out + (at - gpa), 0, (size_t)(end - at));
    }
    return 0;
}
