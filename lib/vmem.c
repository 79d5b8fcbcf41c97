/*
 * vmem.c - guest-virtual addresses through the read-only guest RAM mapping
 * (x86 page-table walks: 4- and 5-level, PAE, legacy 32-bit) and the Linux
 * kernel's VMCOREINFO (include/vmsig/vmsig_vmem.h, docs/introspection.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsig/vmsig_vmem.h"

#define PTE_P   (1ull << 0)
#define PTE_W   (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_PS  (1ull << 7)
#define PTE_NX  (1ull << 63)
#define ADDR_52 0x000ffffffffff000ull /* bits 12..51: a table's or a 4 KiB page's frame */

#define CR0_PG   (1ull << 31)
#define CR4_PSE  (1ull << 4)
#define CR4_PAE  (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)

uint32_t vmsig_vmem_mode(uint64_t cr0, uint64_t cr4, uint64_t efer)
{
    if (!(cr0 & CR0_PG)) {
        return VMSIG_VMEM_PHYS;
    }
    if (efer & EFER_LMA) {
        return cr4 & CR4_LA57 ? VMSIG_VMEM_LA57 : VMSIG_VMEM_4LEVEL;
    }
    if (cr4 & CR4_PAE) {
        return VMSIG_VMEM_PAE32;
    }
    return VMSIG_VMEM_LEGACY32 | (cr4 & CR4_PSE ? VMSIG_VMEM_PSE : 0);
}

const char *vmsig_vmem_level_name(uint32_t flags, uint32_t level)
{
    uint32_t mode = flags & VMSIG_VMEM_MODE_MASK;
    unsigned top = mode == VMSIG_VMEM_LA57 ? 5 : mode == VMSIG_VMEM_4LEVEL ? 4
                 : mode == VMSIG_VMEM_PAE32 ? 3 : mode == VMSIG_VMEM_LEGACY32 ? 2 : 0;
    static const char *const names[] = { "?", "PT", "PD", "PDPT", "PML4", "PML5" };
    return level >= 1 && level <= top ? names[level] : "?";
}

/* One table entry of `size` bytes at gpa. -EFAULT if not guest RAM. With
 * SPARSE a table page that is a hole reads as 0 (not present), unread. */
static int entry(const vmsig_memmap *m, uint32_t flags, uint64_t gpa, unsigned size, uint64_t *e)
{
    const void *p = vmsig_memmap_ptr(m, gpa, size);
    if (!p) {
        return -EFAULT;
    }
    if (flags & VMSIG_VMEM_SPARSE) {
        uint64_t ds, de; /* holes are whole pages: data here means the entry is data */
        if (vmsig_memmap_data(m, gpa, gpa + size, &ds, &de) != 1) {
            *e = 0; /* a hole reads as zeros: not present */
            return 0;
        }
    }
    if (size == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        *e = v;
    } else {
        uint32_t v;
        memcpy(&v, p, 4);
        *e = v;
    }
    return 0;
}

/* Where a 64-bit walk can restart: the table at `level` that maps the VA
 * range tag << shift(level), with the access bits of the levels above. */
typedef struct walkcache {
    int valid;
    uint32_t level;
    uint64_t table, tag, access;
} walkcache;

static unsigned shift_of(unsigned level) /* VA bits one entry of this level covers */
{
    return 12 + 9 * (level - 1);
}

static int fault(vmsig_vmem_xlat *x, uint32_t why, uint32_t level, uint64_t e, uint64_t egpa)
{
    x->fault = why;
    x->level = level;
    x->entry = e;
    x->entry_gpa = egpa;
    return -EFAULT;
}

static int walk64(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                  vmsig_vmem_xlat *x, walkcache *wc)
{
    unsigned top = (flags & VMSIG_VMEM_MODE_MASK) == VMSIG_VMEM_LA57 ? 5 : 4;
    unsigned vabits = shift_of(top) + 9; /* 48 or 57 */
    int64_t sx = (int64_t)(va << (64 - vabits)) >> (64 - vabits);
    if ((uint64_t)sx != va) {
        return fault(x, VMSIG_VMEM_NONCANONICAL, 0, 0, 0);
    }
    uint64_t table = root & ADDR_52, access = VMSIG_VMEM_W | VMSIG_VMEM_U;
    unsigned level = top;
    if (wc && wc->valid && wc->tag == va >> shift_of(wc->level + 1)) {
        level = wc->level;
        table = wc->table;
        access = wc->access;
    }
    for (;; level--) {
        uint64_t egpa = table + ((va >> shift_of(level)) & 511) * 8, e;
        if (entry(m, flags, egpa, 8, &e) < 0) {
            return fault(x, VMSIG_VMEM_NOT_RAM, level, 0, egpa);
        }
        if (!(e & PTE_P)) {
            return fault(x, VMSIG_VMEM_NOT_PRESENT, level, e, egpa);
        }
        if (!(e & PTE_W)) {
            access &= ~(uint64_t)VMSIG_VMEM_W;
        }
        if (!(e & PTE_U)) {
            access &= ~(uint64_t)VMSIG_VMEM_U;
        }
        if (e & PTE_NX) {
            access |= VMSIG_VMEM_NX;
        }
        x->entry = e;
        x->entry_gpa = egpa;
        x->level = level;
        if (level == 1 || (e & PTE_PS)) {
            if (level > 3) {
                return fault(x, VMSIG_VMEM_RESERVED, level, e, egpa);
            }
            uint64_t size = 1ull << shift_of(level);
            x->page_size = size;
            x->pa = (e & ADDR_52 & ~(size - 1)) | (va & (size - 1));
            x->access = (uint32_t)access;
            return 0;
        }
        table = e & ADDR_52;
        if (wc && level - 1 <= 2) { /* remember the PD or PT for the next page */
            wc->valid = 1;
            wc->level = level - 1;
            wc->table = table;
            wc->tag = va >> shift_of(level);
            wc->access = access;
        }
    }
}

static int walk_pae(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                    vmsig_vmem_xlat *x)
{
    if (va >> 32) {
        return fault(x, VMSIG_VMEM_NONCANONICAL, 0, 0, 0);
    }
    uint64_t egpa = (root & 0xffffffe0ull) + (va >> 30) * 8, e;
    uint64_t access = VMSIG_VMEM_W | VMSIG_VMEM_U;
    /* PAE's PDPTEs (loaded into the CPU at CR3 load) carry no W/U/NX bits. */
    if (entry(m, flags, egpa, 8, &e) < 0) {
        return fault(x, VMSIG_VMEM_NOT_RAM, 3, 0, egpa);
    }
    if (!(e & PTE_P)) {
        return fault(x, VMSIG_VMEM_NOT_PRESENT, 3, e, egpa);
    }
    for (unsigned level = 2;; level--) {
        egpa = (e & ADDR_52) + ((va >> shift_of(level)) & 511) * 8;
        if (entry(m, flags, egpa, 8, &e) < 0) {
            return fault(x, VMSIG_VMEM_NOT_RAM, level, 0, egpa);
        }
        if (!(e & PTE_P)) {
            return fault(x, VMSIG_VMEM_NOT_PRESENT, level, e, egpa);
        }
        access &= (e & PTE_W ? VMSIG_VMEM_W : 0) | (e & PTE_U ? VMSIG_VMEM_U : 0) | VMSIG_VMEM_NX;
        access |= e & PTE_NX ? VMSIG_VMEM_NX : 0;
        x->entry = e;
        x->entry_gpa = egpa;
        x->level = level;
        if (level == 1 || (e & PTE_PS)) {
            uint64_t size = 1ull << shift_of(level);
            x->page_size = size;
            x->pa = (e & ADDR_52 & ~(size - 1)) | (va & (size - 1));
            x->access = (uint32_t)access;
            return 0;
        }
    }
}

static int walk_legacy(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                       vmsig_vmem_xlat *x)
{
    if (va >> 32) {
        return fault(x, VMSIG_VMEM_NONCANONICAL, 0, 0, 0);
    }
    uint64_t egpa = (root & 0xfffff000ull) + (va >> 22) * 4, e;
    if (entry(m, flags, egpa, 4, &e) < 0) {
        return fault(x, VMSIG_VMEM_NOT_RAM, 2, 0, egpa);
    }
    if (!(e & PTE_P)) {
        return fault(x, VMSIG_VMEM_NOT_PRESENT, 2, e, egpa);
    }
    uint64_t access = (e & PTE_W ? VMSIG_VMEM_W : 0) | (e & PTE_U ? VMSIG_VMEM_U : 0);
    x->entry = e;
    x->entry_gpa = egpa;
    x->level = 2;
    if ((e & PTE_PS) && (flags & VMSIG_VMEM_PSE)) {
        /* 4 MiB page; PSE-36: PDE bits 13..20 are physical bits 32..39 */
        x->page_size = 4ull << 20;
        x->pa = (e & 0xffc00000ull) | (((e >> 13) & 0xff) << 32) | (va & 0x3fffff);
        x->access = (uint32_t)access;
        return 0;
    }
    egpa = (e & 0xfffff000ull) + ((va >> 12) & 1023) * 4;
    if (entry(m, flags, egpa, 4, &e) < 0) {
        return fault(x, VMSIG_VMEM_NOT_RAM, 1, 0, egpa);
    }
    if (!(e & PTE_P)) {
        return fault(x, VMSIG_VMEM_NOT_PRESENT, 1, e, egpa);
    }
    access &= (e & PTE_W ? VMSIG_VMEM_W : 0) | (e & PTE_U ? VMSIG_VMEM_U : 0);
    x->entry = e;
    x->entry_gpa = egpa;
    x->level = 1;
    x->page_size = 4096;
    x->pa = (e & 0xfffff000ull) | (va & 0xfff);
    x->access = (uint32_t)access;
    return 0;
}

static int translate(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                     vmsig_vmem_xlat *x, walkcache *wc)
{
    memset(x, 0, sizeof(*x));
    x->va = va;
    if (!m || (flags & ~(VMSIG_VMEM_MODE_MASK | VMSIG_VMEM_PSE | VMSIG_VMEM_SPARSE))) {
        return -EINVAL;
    }
    int r;
    switch (flags & VMSIG_VMEM_MODE_MASK) {
    case VMSIG_VMEM_4LEVEL:
    case VMSIG_VMEM_LA57:
        r = walk64(m, root, flags, va, x, wc);
        break;
    case VMSIG_VMEM_PAE32:
        r = walk_pae(m, root, flags, va, x);
        break;
    case VMSIG_VMEM_LEGACY32:
        r = walk_legacy(m, root, flags, va, x);
        break;
    case VMSIG_VMEM_PHYS:
        x->pa = va;
        x->page_size = 4096;
        x->access = VMSIG_VMEM_W | VMSIG_VMEM_U;
        r = 0;
        break;
    default:
        return -EINVAL;
    }
    if (r == 0 && !vmsig_memmap_ptr(m, x->pa, 1)) {
        x->fault = VMSIG_VMEM_NOT_RAM; /* the page itself is not guest RAM (MMIO, ROM) */
        return -EFAULT;
    }
    return r;
}

int vmsig_vmem_translate(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                         vmsig_vmem_xlat *x)
{
    vmsig_vmem_xlat dummy;
    return translate(m, root, flags, va, x ? x : &dummy, NULL);
}

static int copy_run(const vmsig_memmap *m, uint32_t flags, uint64_t pa, uint8_t *out, size_t n)
{
    return flags & VMSIG_VMEM_SPARSE ? vmsig_memmap_read_sparse(m, pa, out, n)
                                     : vmsig_memmap_read(m, pa, out, n);
}

int vmsig_vmem_read_partial(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                            void *buf, size_t len, size_t *done, vmsig_vmem_xlat *fault_out)
{
    uint8_t *out = buf;
    size_t got = 0, run_len = 0;
    uint64_t run_pa = 0;
    walkcache wc = { 0 };
    int r = 0;
    vmsig_vmem_xlat x;

    if (done) {
        *done = 0;
    }
    if (!m || (flags & ~(VMSIG_VMEM_MODE_MASK | VMSIG_VMEM_PSE | VMSIG_VMEM_SPARSE))) {
        return -EINVAL;
    }
    if (len && !buf) {
        return -EINVAL;
    }
    while (got + run_len < len) {
        uint64_t at = va + got + run_len;
        r = translate(m, root, flags, at, &x, &wc);
        if (r < 0) {
            break;
        }
        /* bytes of this page from `at` on, within the request and within
         * the guest RAM segment that holds them */
        uint64_t n = x.page_size - (at & (x.page_size - 1));
        if (n > len - got - run_len) {
            n = len - got - run_len;
        }
        while (n && !vmsig_memmap_ptr(m, x.pa, n)) {
            n = n > 4096 ? (n - 1) & ~4095ull : n / 2; /* the page spans a segment end */
        }
        if (!n) {
            r = -EFAULT;
            x.fault = VMSIG_VMEM_NOT_RAM;
            break;
        }
        if (run_len && run_pa + run_len == x.pa) {
            run_len += n; /* physically contiguous: one copy */
        } else {
            if (run_len && (r = copy_run(m, flags, run_pa, out + got, run_len)) < 0) {
                x.fault = VMSIG_VMEM_NOT_RAM;
                break;
            }
            got += run_len;
            run_pa = x.pa;
            run_len = n;
        }
        if (run_len >= (4u << 20)) { /* bound a run so a copy stays cache-sized */
            if ((r = copy_run(m, flags, run_pa, out + got, run_len)) < 0) {
                x.fault = VMSIG_VMEM_NOT_RAM;
                run_len = 0;
                break;
            }
            got += run_len;
            run_len = 0;
        }
    }
    if (run_len) {
        int r2 = copy_run(m, flags, run_pa, out + got, run_len);
        if (r2 < 0) {
            r = r2;
        } else {
            got += run_len;
        }
    }
    if (done) {
        *done = got;
    }
    if (r < 0 && fault_out) {
        *fault_out = x;
    }
    return r < 0 ? r : 0;
}

int vmsig_vmem_read(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va, void *buf,
                    size_t len)
{
    return vmsig_vmem_read_partial(m, root, flags, va, buf, len, NULL, NULL);
}

/* ---- VMCOREINFO ---- */

/* The line "KEY=value": value and its length, or NULL. */
static const char *lookup(const char *text, size_t tlen, const char *key, size_t *vlen)
{
    size_t klen = strlen(key);
    const char *p = text, *end = text + tlen;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > klen && !memcmp(p, key, klen) && p[klen] == '=') {
            *vlen = (size_t)(le - p - (ptrdiff_t)klen - 1);
            return p + klen + 1;
        }
        p = le + 1;
    }
    return NULL;
}

int vmsig_linux_value(const vmsig_linux_info *li, const char *key, char *out, size_t outlen)
{
    size_t n;
    if (!li || !key) {
        return -EINVAL;
    }
    const char *v = lookup(li->text, li->text_len, key, &n);
    if (!v) {
        return -ENOENT;
    }
    if (!out || n + 1 > outlen) {
        return -ENOSPC;
    }
    memcpy(out, v, n);
    out[n] = 0;
    return (int)n;
}

static int parse_num(const char *s, int base, int64_t *v)
{
    char *end;
    errno = 0;
    if (base == 16) {
        unsigned long long u = strtoull(s, &end, 16);
        *v = (int64_t)u;
    } else {
        long long x = strtoll(s, &end, 10);
        *v = x;
    }
    return errno || end == s || *end ? -EINVAL : 0;
}

static int value_num(const vmsig_linux_info *li, const char *key, int base, int64_t *v)
{
    char buf[40];
    int r = vmsig_linux_value(li, key, buf, sizeof(buf));
    if (r < 0) {
        return r == -ENOSPC ? -EINVAL : r;
    }
    return parse_num(buf, base, v);
}

int vmsig_linux_symbol(const vmsig_linux_info *li, const char *name, uint64_t *va)
{
    char key[160];
    int64_t v;
    if (!name || snprintf(key, sizeof(key), "SYMBOL(%s)", name) >= (int)sizeof(key)) {
        return -ENOENT;
    }
    int r = value_num(li, key, 16, &v);
    if (r == 0 && va) {
        *va = (uint64_t)v;
    }
    return r == -EINVAL ? -ENOENT : r;
}

int vmsig_linux_number(const vmsig_linux_info *li, const char *key, int64_t *v)
{
    int64_t x;
    int r = value_num(li, key, 10, &x);
    if (r == 0 && v) {
        *v = x;
    }
    return r;
}

int vmsig_linux_parse(const char *text, size_t len, vmsig_linux_info *li)
{
    if (!text || !li) {
        return -EINVAL;
    }
    memset(li, 0, sizeof(*li));
    size_t n = strnlen(text, len);
    if (n > VMSIG_LINUX_TEXT_MAX) {
        n = VMSIG_LINUX_TEXT_MAX;
    }
    memcpy(li->text, text, n);
    li->text[n] = 0;
    li->text_len = (uint32_t)n;
    int64_t v;
    if (vmsig_linux_value(li, "OSRELEASE", li->release, sizeof(li->release)) <= 0 ||
        strchr(li->release, '%')) {
        return -EINVAL; /* a format string in .rodata, not the text */
    }
    if (value_num(li, "PAGESIZE", 10, &v) == 0 && v > 0 && v <= (1 << 30)) {
        li->page_size = (uint32_t)v;
    }
    if (value_num(li, "KERNELOFFSET", 16, &v) == 0) {
        li->kaslr_offset = (uint64_t)v;
    }
    if (vmsig_linux_number(li, "NUMBER(phys_base)", &v) == 0) {
        li->phys_base = v;
        li->flags |= VMSIG_LINUX_F_PHYS_BASE;
    }
    if (vmsig_linux_number(li, "NUMBER(pgtable_l5_enabled)", &v) == 0 && v == 1) {
        li->vmem_flags = VMSIG_VMEM_LA57;
    }
    uint64_t pgd;
    if (vmsig_linux_symbol(li, "swapper_pg_dir", &pgd) == 0 ||
        vmsig_linux_symbol(li, "init_top_pgt", &pgd) == 0) {
        li->pgd_va = pgd;
        if (pgd >= VMSIG_LINUX_START_KERNEL_MAP) {
            li->root = pgd - VMSIG_LINUX_START_KERNEL_MAP + (uint64_t)li->phys_base;
            li->flags |= VMSIG_LINUX_F_ROOT;
        }
    }
    uint64_t uts;
    if (vmsig_linux_symbol(li, "init_uts_ns", &uts) == 0) {
        int64_t off = 0;
        vmsig_linux_number(li, "OFFSET(uts_namespace.name)", &off);
        li->uts_va = uts + (uint64_t)off;
    }
    return 0;
}

/* The text at gpa if it is a VMCOREINFO: as an ELF note (its header right
 * before) or as the bare page-aligned copy. Returns its length or 0. */
static size_t candidate(const vmsig_memmap *m, uint64_t gpa, int *note)
{
    static const char name[12] = "VMCOREINFO";
    uint32_t hdr[3];
    char nm[12];
    *note = 0;
    if (gpa >= 24 && vmsig_memmap_read_sparse(m, gpa - 24, hdr, sizeof(hdr)) == 0 &&
        vmsig_memmap_read_sparse(m, gpa - 12, nm, sizeof(nm)) == 0 && hdr[0] == 11 &&
        hdr[2] == 0 && !memcmp(nm, name, sizeof(nm)) && hdr[1] > 10 &&
        hdr[1] <= VMSIG_LINUX_TEXT_MAX) {
        *note = 1;
        return hdr[1];
    }
    if ((gpa & 0xfff) == 0) {
        return VMSIG_LINUX_TEXT_MAX; /* up to its NUL */
    }
    return 0;
}

static void verify(const vmsig_memmap *m, vmsig_linux_info *li)
{
    char rel[65];
    if (!(li->flags & VMSIG_LINUX_F_ROOT) || !li->uts_va) {
        return;
    }
    /* struct new_utsname: sysname[65], nodename[65], release[65], ... */
    if (vmsig_vmem_read(m, li->root, li->vmem_flags | VMSIG_VMEM_SPARSE, li->uts_va + 130, rel,
                        sizeof(rel)) == 0 &&
        !strncmp(rel, li->release, sizeof(rel))) {
        li->flags |= VMSIG_LINUX_F_VERIFIED;
    }
}

int vmsig_linux_find(const vmsig_memmap *m, vmsig_linux_info *li)
{
    static const char pat[] = "OSRELEASE=";
    const size_t plen = sizeof(pat) - 1;
    if (!m || !li) {
        return -EINVAL;
    }
    char *text = malloc(VMSIG_LINUX_TEXT_MAX + 1);
    if (!text) {
        return -ENOMEM;
    }
    int found = 0;
    vmsig_linux_info *best = NULL;
    /* A bare copy is kept only until a note turns up (the note is the
     * kernel's published form: /sys/kernel/vmcoreinfo points at it). */
    vmsig_linux_info *bare = malloc(sizeof(*bare));
    for (unsigned i = 0; bare && i < vmsig_memmap_nseg(m) && !found; i++) {
        const vmsig_wire_memseg *s = vmsig_memmap_seg(m, i);
        uint64_t at = s->gpa, end = s->gpa + s->size, ds, de;
        /* data runs only: a hole is never read */
        while (!found && at < end && vmsig_memmap_data(m, at, end, &ds, &de) == 1) {
            const char *base = vmsig_memmap_ptr(m, ds, de - ds);
            const char *p = base, *lim = base ? base + (de - ds) : NULL;
            while (p && (p = memmem(p, (size_t)(lim - p), pat, plen)) != NULL) {
                uint64_t g = ds + (uint64_t)(p - base);
                int note;
                size_t n = candidate(m, g, &note);
                if (n && n > end - g) {
                    n = (size_t)(end - g);
                }
                if (n && vmsig_memmap_read_sparse(m, g, text, n) == 0) {
                    text[n] = 0;
                    vmsig_linux_info *dst = note ? li : (best ? NULL : bare);
                    if (dst && vmsig_linux_parse(text, n, dst) == 0 && dst->page_size) {
                        dst->text_gpa = g;
                        if (note) {
                            dst->flags |= VMSIG_LINUX_F_NOTE;
                            found = 1;
                            break;
                        }
                        best = bare;
                    }
                }
                p += plen;
            }
            at = de;
        }
    }
    free(text);
    if (!found && best) {
        memcpy(li, best, sizeof(*li));
        found = 1;
    }
    free(bare);
    if (!found) {
        return -ENOENT;
    }
    verify(m, li);
    return 0;
}

/* ---- kallsyms ---- */

static int kread(const vmsig_memmap *m, const vmsig_linux_info *li, uint64_t va, void *buf,
                 size_t len)
{
    return vmsig_vmem_read(m, li->root, li->vmem_flags | VMSIG_VMEM_SPARSE, va, buf, len);
}

int vmsig_linux_kallsyms(const vmsig_memmap *m, const vmsig_linux_info *li, const char *name,
                         uint64_t *va)
{
    uint64_t names, num, ttab, tidx, offs, rbase;
    if (!m || !li || !name || !(li->flags & VMSIG_LINUX_F_ROOT)) {
        return -EINVAL;
    }
    if (vmsig_linux_symbol(li, "kallsyms_names", &names) || vmsig_linux_symbol(li, "kallsyms_num_syms", &num) ||
        vmsig_linux_symbol(li, "kallsyms_token_table", &ttab) ||
        vmsig_linux_symbol(li, "kallsyms_token_index", &tidx) ||
        vmsig_linux_symbol(li, "kallsyms_offsets", &offs) ||
        vmsig_linux_symbol(li, "kallsyms_relative_base", &rbase)) {
        return -ENOENT; /* older kernels (no KALLSYMS_BASE_RELATIVE) are not handled */
    }
    uint32_t nsyms;
    uint64_t base;
    uint16_t index[256];
    if (kread(m, li, num, &nsyms, 4) || kread(m, li, rbase, &base, 8) ||
        kread(m, li, tidx, index, sizeof(index)) || nsyms == 0 || nsyms > 4000000) {
        return -EFAULT;
    }
    /* The token table: 256 NUL-terminated strings, index[] their offsets. */
    size_t tlen = (size_t)index[255] + 64;
    char *tokens = malloc(tlen + 1);
    uint8_t *chunk = malloc(1u << 20);
    int r = -ENOENT;
    if (!tokens || !chunk || kread(m, li, ttab, tokens, tlen)) {
        r = tokens && chunk ? -EFAULT : -ENOMEM;
        goto out;
    }
    tokens[tlen] = 0;
    size_t want = strlen(name);
    /* Names: per symbol a length byte (two if the high bit is set, 6.1+
     * uses one for < 128), then that many token indexes; the first
     * expanded character is the symbol type. Read in 1 MiB chunks. */
    uint64_t pos = names, cbase = 0, cend = 0;
    for (uint32_t i = 0; i < nsyms; i++) {
        /* a symbol's bytes: at most 2 + 0x7fff (read the next chunk when
         * fewer than that are left, unless the chunk ended where the
         * mapping did) */
        if (pos < cbase || pos + 2 + 0x7fff + 1 > cend) {
            size_t got = 0;
            vmsig_vmem_read_partial(m, li->root, li->vmem_flags | VMSIG_VMEM_SPARSE, pos, chunk,
                                    1u << 20, &got, NULL);
            if (got < 2) {
                r = -EFAULT;
                goto out;
            }
            cbase = pos;
            cend = pos + got;
        }
        size_t len = chunk[pos - cbase], hdr = 1;
        if (len & 0x80) {
            len = (len & 0x7f) | ((size_t)chunk[pos - cbase + 1] << 7);
            hdr = 2;
        }
        if (pos + hdr + len > cend) {
            r = -EFAULT;
            goto out;
        }
        const uint8_t *t = chunk + (pos - cbase) + hdr;
        char sym[512];
        size_t sl = 0;
        for (size_t k = 0; k < len && sl < sizeof(sym) - 1; k++) {
            const char *tok = tokens + index[t[k]];
            while (*tok && sl < sizeof(sym) - 1) {
                sym[sl++] = *tok++;
            }
        }
        sym[sl] = 0;
        pos += hdr + len;
        if (sl == want + 1 && !memcmp(sym + 1, name, want)) {
            int32_t off;
            if (kread(m, li, offs + 4ull * i, &off, 4)) {
                r = -EFAULT;
                goto out;
            }
            /* CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86-64): an offset >= 0 is
             * an absolute value (per-cpu symbols), a negative one is
             * relative_base - 1 - offset. */
            if (va) {
                *va = off >= 0 ? (uint64_t)off : base - 1 - (uint64_t)(int64_t)off;
            }
            r = 0;
            goto out;
        }
    }
out:
    free(tokens);
    free(chunk);
    return r;
}
