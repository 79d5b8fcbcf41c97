/*
 * test_vmem.c - guest-virtual addresses (lib/vmem.c) over synthetic page
 * tables built in a memfd: 4- and 5-level paging, 2 MiB and 1 GiB pages,
 * not-present at each level, non-canonical VAs, reserved PS, tables outside
 * RAM, reads that cross pages, PAE and legacy 32-bit, holes never touched
 * (VMSIG_VMEM_SPARSE), and VMCOREINFO found and parsed (a decoy format
 * string in the way, the root derived and verified through init_uts_ns).
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmsig/vmsig_vmem.h"

#define RAM (64u << 20)
#define P 0x1ull
#define W 0x2ull
#define U 0x4ull
#define PS 0x80ull
#define NX (1ull << 63)

typedef struct ram {
    int fd;
    uint8_t *w;     /* writable view, for building */
    uint64_t next;  /* next free page (bump allocator) */
    vmsig_memmap *m;
} ram;

static void ram_init(ram *r)
{
    r->fd = memfd_create("vmem", MFD_CLOEXEC);
    g_assert_cmpint(r->fd, >=, 0);
    g_assert_cmpint(ftruncate(r->fd, RAM), ==, 0);
    r->w = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    g_assert(r->w != MAP_FAILED);
    r->next = 1u << 20;
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_EV_MEMCTX;
    vmsig_wire_memseg seg = { .gpa = 0, .size = RAM, .offset = 0, .fd_index = 0 };
    ev.u.memctx = (vmsig_wire_memctx){ .generation = 1, .ram_size = RAM, .nseg = 1 };
    ev.ool = &seg;
    ev.ool_len = sizeof(seg);
    int err = 0;
    r->m = vmsig_memmap_new(&ev, &r->fd, 1, &err);
    g_assert_nonnull(r->m);
}

static void ram_fini(ram *r)
{
    vmsig_memmap_unref(r->m);
    munmap(r->w, RAM);
    close(r->fd);
}

static uint64_t page(ram *r) /* a zeroed page written once (so it is data) */
{
    uint64_t pa = r->next;
    r->next += 4096;
    memset(r->w + pa, 0, 4096);
    r->w[pa + 4095] = 0; /* touch: allocated */
    return pa;
}

static void set64(ram *r, uint64_t gpa, uint64_t v) { memcpy(r->w + gpa, &v, 8); }
static void set32(ram *r, uint64_t gpa, uint32_t v) { memcpy(r->w + gpa, &v, 4); }

/* Map va -> pa in a 4/5-level hierarchy at root, with a leaf at `leaf`
 * level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB). Creates missing tables. */
static void map64(ram *r, uint64_t root, int levels, uint64_t va, uint64_t pa, int leaf,
                  uint64_t bits)
{
    uint64_t table = root;
    for (int lvl = levels; lvl > leaf; lvl--) {
        uint64_t egpa = table + ((va >> (12 + 9 * (lvl - 1))) & 511) * 8, e;
        memcpy(&e, r->w + egpa, 8);
        if (!(e & P)) {
            e = page(r) | P | W | U;
            set64(r, egpa, e);
        }
        table = e & 0x000ffffffffff000ull;
    }
    uint64_t egpa = table + ((va >> (12 + 9 * (leaf - 1))) & 511) * 8;
    set64(r, egpa, pa | bits | (leaf > 1 ? PS : 0));
}

static uint64_t entry_gpa(ram *r, uint64_t root, int levels, uint64_t va, int at_level)
{
    uint64_t table = root;
    for (int lvl = levels; lvl > at_level; lvl--) {
        uint64_t e;
        memcpy(&e, r->w + table + ((va >> (12 + 9 * (lvl - 1))) & 511) * 8, 8);
        table = e & 0x000ffffffffff000ull;
    }
    return table + ((va >> (12 + 9 * (at_level - 1))) & 511) * 8;
}

static void test_4level(void)
{
    ram r;
    ram_init(&r);
    uint64_t root = page(&r);
    uint64_t va = 0x00007f1234560000ull, d0 = page(&r), d1 = page(&r) + 4096 * 3;
    page(&r); page(&r); page(&r);
    memset(r.w + d0, 0xa5, 4096);
    memcpy(r.w + d0 + 100, "hello", 5);
    memset(r.w + d1, 0x5a, 4096);
    map64(&r, root, 4, va, d0, 1, P | W | U);
    map64(&r, root, 4, va + 4096, d1, 1, P | NX);

    vmsig_vmem_xlat x;
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, VMSIG_VMEM_4LEVEL, va + 100, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, d0 + 100);
    g_assert_cmpuint(x.page_size, ==, 4096);
    g_assert_cmpuint(x.level, ==, 1);
    g_assert_cmpuint(x.access, ==, VMSIG_VMEM_W | VMSIG_VMEM_U);
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 0, va + 4096, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, d1);
    g_assert_cmpuint(x.access, ==, VMSIG_VMEM_NX);

    /* a CR3 value with PCID bits and the no-flush bit works as it is */
    g_assert_cmpint(vmsig_vmem_translate(r.m, root | 0x5 | (1ull << 63), 0, va + 100, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, d0 + 100);

    /* a read that crosses into a page that is not physically next */
    uint8_t buf[64];
    g_assert_cmpint(vmsig_vmem_read(r.m, root, 0, va + 4096 - 32, buf, 64), ==, 0);
    for (int i = 0; i < 32; i++) {
        g_assert_cmphex(buf[i], ==, 0xa5);
        g_assert_cmphex(buf[32 + i], ==, 0x5a);
    }
    g_assert_cmpint(vmsig_vmem_read(r.m, root, 0, va + 100, buf, 5), ==, 0);
    g_assert_cmpmem(buf, 5, "hello", 5);

    /* into a page that is not mapped: the bytes before it, and where */
    size_t done = 99;
    uint8_t big[3 * 4096];
    int rc = vmsig_vmem_read_partial(r.m, root, 0, va + 4000, big, sizeof(big), &done, &x);
    g_assert_cmpint(rc, ==, -EFAULT);
    g_assert_cmpuint(done, ==, 96 + 4096);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NOT_PRESENT);
    g_assert_cmpuint(x.level, ==, 1);
    g_assert_cmphex(x.va, ==, va + 8192);
    g_assert_cmpint(vmsig_vmem_read(r.m, root, 0, va + 4000, big, sizeof(big)), ==, -EFAULT);

    /* flags this library does not know */
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 0x100, va, &x), ==, -EINVAL);
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 7, va, &x), ==, -EINVAL);
    ram_fini(&r);
}

/* Not present at each level reports that level. */
static void not_present_levels(int levels)
{
    ram r;
    ram_init(&r);
    uint32_t flags = levels == 5 ? VMSIG_VMEM_LA57 : VMSIG_VMEM_4LEVEL;
    uint64_t root = page(&r), d = page(&r);
    uint64_t va = levels == 5 ? 0x00ff123456789000ull : 0x00007f1234567000ull;
    map64(&r, root, levels, va, d, 1, P | W);
    vmsig_vmem_xlat x;
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, flags, va, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, d);
    for (int lvl = 1; lvl <= levels; lvl++) {
        uint64_t eg = entry_gpa(&r, root, levels, va, lvl), e;
        memcpy(&e, r.w + eg, 8);
        set64(&r, eg, e & ~P);
        g_assert_cmpint(vmsig_vmem_translate(r.m, root, flags, va, &x), ==, -EFAULT);
        g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NOT_PRESENT);
        g_assert_cmpuint(x.level, ==, (unsigned)lvl);
        g_assert_cmphex(x.entry_gpa, ==, eg);
        static const char *const names[] = { "", "PT", "PD", "PDPT", "PML4", "PML5" };
        g_assert_cmpstr(vmsig_vmem_level_name(flags, x.level), ==, names[lvl]);
        set64(&r, eg, e);
    }
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, flags, va, &x), ==, 0);
    ram_fini(&r);
}

static void test_not_present_4(void) { not_present_levels(4); }
static void test_not_present_5(void) { not_present_levels(5); }

static void test_large_pages(void)
{
    ram r;
    ram_init(&r);
    uint64_t root = page(&r);
    /* 2 MiB page at PA 16 MiB; 1 GiB page at PA 0 */
    uint64_t va2 = 0xffffffff81000000ull, va1 = 0xffff888000000000ull;
    map64(&r, root, 4, va2, 16u << 20, 2, P | W | (1ull << 12) /* PAT bit */);
    map64(&r, root, 4, va1, 0, 3, P | W | NX);
    memcpy(r.w + (16u << 20) + 0x12345, "two-meg", 7);
    memcpy(r.w + (40u << 20) + 0x10, "one-gig", 7);
    vmsig_vmem_xlat x;
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 0, va2 + 0x12345, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, (16u << 20) + 0x12345); /* the PAT bit is not address */
    g_assert_cmpuint(x.page_size, ==, 2u << 20);
    g_assert_cmpuint(x.level, ==, 2);
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 0, va1 + (40u << 20) + 0x10, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, (40u << 20) + 0x10);
    g_assert_cmpuint(x.page_size, ==, 1u << 30);
    g_assert_cmpuint(x.level, ==, 3);
    char s[8] = "";
    g_assert_cmpint(vmsig_vmem_read(r.m, root, 0, va2 + 0x12345, s, 7), ==, 0);
    g_assert_cmpstr(s, ==, "two-meg");
    g_assert_cmpint(vmsig_vmem_read(r.m, root, 0, va1 + (40u << 20) + 0x10, s, 7), ==, 0);
    g_assert_cmpstr(s, ==, "one-gig");
    /* a 1 MiB read inside the 1 GiB page equals the physical read */
    static uint8_t a[1 << 20], b[1 << 20];
    for (unsigned i = 0; i < sizeof(a); i += 64) {
        r.w[(8u << 20) + i] = (uint8_t)(i >> 6);
    }
    g_assert_cmpint(vmsig_vmem_read(r.m, root, 0, va1 + (8u << 20), a, sizeof(a)), ==, 0);
    g_assert_cmpint(vmsig_memmap_read(r.m, 8u << 20, b, sizeof(b)), ==, 0);
    g_assert_cmpmem(a, sizeof(a), b, sizeof(b));
    /* past the end of guest RAM inside the 1 GiB page: not RAM */
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 0, va1 + (100u << 20), &x), ==, -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NOT_RAM);
    /* PS in a PML4 entry is reserved */
    uint64_t va3 = 0x0000100000000000ull;
    set64(&r, root + ((va3 >> 39) & 511) * 8, 0 | P | PS);
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 0, va3, &x), ==, -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_RESERVED);
    g_assert_cmpuint(x.level, ==, 4);
    /* a table outside guest RAM */
    uint64_t va4 = 0x0000200000000000ull;
    set64(&r, root + ((va4 >> 39) & 511) * 8, (1ull << 40) | P);
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, 0, va4, &x), ==, -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NOT_RAM);
    g_assert_cmpuint(x.level, ==, 3);
    ram_fini(&r);
}

static void test_5level_canonical(void)
{
    ram r;
    ram_init(&r);
    uint64_t root = page(&r), d = page(&r);
    uint64_t va = 0x0001000000000000ull; /* needs 57-bit VAs */
    map64(&r, root, 5, va, d, 1, P);
    memcpy(r.w + d, "la57", 4);
    vmsig_vmem_xlat x;
    char s[5] = "";
    g_assert_cmpint(vmsig_vmem_read(r.m, root, VMSIG_VMEM_LA57, va, s, 4), ==, 0);
    g_assert_cmpstr(s, ==, "la57");
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, VMSIG_VMEM_4LEVEL, va, &x), ==, -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NONCANONICAL);
    g_assert_cmpuint(x.level, ==, 0);
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, VMSIG_VMEM_LA57, 0x0100000000000000ull, &x),
                    ==, -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NONCANONICAL);
    /* 5-level kernel half: 0xff00... is canonical */
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, VMSIG_VMEM_LA57, 0xff00000000000000ull, &x),
                    ==, -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NOT_PRESENT);
    g_assert_cmpuint(x.level, ==, 5);
    ram_fini(&r);
}

static void test_32bit(void)
{
    ram r;
    ram_init(&r);
    vmsig_vmem_xlat x;
    /* PAE: a 32-byte aligned PDPT, a PD with a 2 MiB page and a PT */
    uint64_t pdpt = page(&r) + 0x20, pd = page(&r), pt = page(&r), d = page(&r);
    set64(&r, pdpt + 3 * 8, pd | P);
    set64(&r, pd + 0x10 * 8, (20u << 20) | P | W | PS);     /* va 0xc2000000: 2 MiB */
    set64(&r, pd + 0x11 * 8, pt | P | W | U);
    set64(&r, pt + 5 * 8, d | P | W | U | NX);             /* va 0xc2205000 */
    memcpy(r.w + d + 8, "pae", 3);
    g_assert_cmpint(vmsig_vmem_translate(r.m, pdpt, VMSIG_VMEM_PAE32, 0xc2000123, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, (20u << 20) + 0x123);
    g_assert_cmpuint(x.page_size, ==, 2u << 20);
    g_assert_cmpint(vmsig_vmem_translate(r.m, pdpt, VMSIG_VMEM_PAE32, 0xc2205008, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, d + 8);
    g_assert_cmpuint(x.access, ==, VMSIG_VMEM_W | VMSIG_VMEM_U | VMSIG_VMEM_NX);
    g_assert_cmpint(vmsig_vmem_translate(r.m, pdpt, VMSIG_VMEM_PAE32, 0x40000000, &x), ==, -EFAULT);
    g_assert_cmpuint(x.level, ==, 3);
    g_assert_cmpint(vmsig_vmem_translate(r.m, pdpt, VMSIG_VMEM_PAE32, 0x100000000ull, &x), ==,
                    -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NONCANONICAL);

    /* legacy: a 4 MiB page (with PSE), a 4 KiB page */
    uint64_t pgd = page(&r), pt2 = page(&r), d2 = page(&r);
    set32(&r, pgd + 0x300 * 4, (uint32_t)((8u << 20) | P | W | PS)); /* va 0xc0000000 */
    set32(&r, pgd + 0x301 * 4, (uint32_t)(pt2 | P | W));
    set32(&r, pt2 + 7 * 4, (uint32_t)(d2 | P));                      /* va 0xc0407000 */
    memcpy(r.w + d2 + 1, "leg", 3);
    uint32_t lf = VMSIG_VMEM_LEGACY32 | VMSIG_VMEM_PSE;
    g_assert_cmpint(vmsig_vmem_translate(r.m, pgd, lf, 0xc0123456, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, (8u << 20) + 0x123456);
    g_assert_cmpuint(x.page_size, ==, 4u << 20);
    char s[4] = "";
    g_assert_cmpint(vmsig_vmem_read(r.m, pgd, lf, 0xc0407001, s, 3), ==, 0);
    g_assert_cmpstr(s, ==, "leg");
    g_assert_cmpuint(x.level, ==, 2);
    g_assert_cmpint(vmsig_vmem_translate(r.m, pgd, lf, 0xc0408000, &x), ==, -EFAULT);
    g_assert_cmpuint(x.level, ==, 1);
    g_assert_cmpstr(vmsig_vmem_level_name(lf, 2), ==, "PD");
    /* paging off: a VA is its PA */
    g_assert_cmpint(vmsig_vmem_translate(r.m, 0, VMSIG_VMEM_PHYS, 0x1234, &x), ==, 0);
    g_assert_cmphex(x.pa, ==, 0x1234);

    /* the mode from registers */
    g_assert_cmpuint(vmsig_vmem_mode(0x80050033, 0x3406f0, 0xd01), ==, VMSIG_VMEM_4LEVEL);
    g_assert_cmpuint(vmsig_vmem_mode(0x80050033, 0x3406f0 | 0x1000, 0xd01), ==, VMSIG_VMEM_LA57);
    g_assert_cmpuint(vmsig_vmem_mode(0x80000011, 0x20, 0), ==, VMSIG_VMEM_PAE32);
    g_assert_cmpuint(vmsig_vmem_mode(0x80000011, 0x10, 0), ==, lf);
    g_assert_cmpuint(vmsig_vmem_mode(0x11, 0, 0), ==, VMSIG_VMEM_PHYS);
    ram_fini(&r);
}

static uint64_t allocated(int fd)
{
    struct stat st;
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    return (uint64_t)st.st_blocks * 512;
}

/* VMSIG_VMEM_SPARSE never reads a hole: a table entry pointing at a page the
 * guest never wrote reads as not present, a data page in a hole as zeros. */
static void test_sparse(void)
{
    ram r;
    ram_init(&r);
    uint64_t root = page(&r), va = 0x7f0000000000ull;
    uint64_t hole_table = 48u << 20, hole_data = 50u << 20;
    map64(&r, root, 4, va, hole_data, 1, P | W);
    /* a PML4 entry to a table in a hole */
    uint64_t va2 = 0x100000000000ull;
    set64(&r, root + ((va2 >> 39) & 511) * 8, hole_table | P | W);
    uint64_t before = allocated(r.fd);
    vmsig_vmem_xlat x;
    g_assert_cmpint(vmsig_vmem_translate(r.m, root, VMSIG_VMEM_SPARSE, va2, &x), ==, -EFAULT);
    g_assert_cmpuint(x.fault, ==, VMSIG_VMEM_NOT_PRESENT);
    g_assert_cmpuint(x.level, ==, 3);
    uint8_t buf[8192];
    memset(buf, 0xff, sizeof(buf));
    g_assert_cmpint(vmsig_vmem_read(r.m, root, VMSIG_VMEM_SPARSE, va, buf, 4096), ==, 0);
    for (int i = 0; i < 4096; i++) {
        g_assert_cmpuint(buf[i], ==, 0);
    }
    g_assert_cmpuint(allocated(r.fd), ==, before);
    /* without SPARSE the same read allocates the page */
    g_assert_cmpint(vmsig_vmem_read(r.m, root, 0, va, buf, 4096), ==, 0);
    g_assert_cmpuint(allocated(r.fd), >, before);
    ram_fini(&r);
}

static const char vmci_fmt[] =
    "OSRELEASE=6.1.0-99-test\n"
    "BUILD-ID=00\n"
    "PAGESIZE=4096\n"
    "SYMBOL(init_uts_ns)=ffffffff82a00000\n"
    "OFFSET(uts_namespace.name)=0\n"
    "SYMBOL(swapper_pg_dir)=ffffffff8240a000\n"
    "NUMBER(phys_base)=-16777216\n"
    "NUMBER(pgtable_l5_enabled)=0\n"
    "KERNELOFFSET=1000000\n";

static void test_linux(void)
{
    ram r;
    ram_init(&r);
    vmsig_linux_info li;
    /* parse: no OSRELEASE, a format string */
    g_assert_cmpint(vmsig_linux_parse("PAGESIZE=4096\n", 14, &li), ==, -EINVAL);
    g_assert_cmpint(vmsig_linux_parse("OSRELEASE=%s\n", 13, &li), ==, -EINVAL);
    g_assert_cmpint(vmsig_linux_parse(vmci_fmt, sizeof(vmci_fmt), &li), ==, 0);
    g_assert_cmpstr(li.release, ==, "6.1.0-99-test");
    g_assert_cmpuint(li.page_size, ==, 4096);
    g_assert_cmphex(li.kaslr_offset, ==, 0x1000000);
    g_assert_cmpint(li.phys_base, ==, -16777216);
    g_assert_cmphex(li.pgd_va, ==, 0xffffffff8240a000ull);
    /* root = va - __START_KERNEL_map + phys_base */
    g_assert_cmphex(li.root, ==, 0x240a000ull - 0x1000000ull);
    uint64_t a;
    int64_t n;
    g_assert_cmpint(vmsig_linux_symbol(&li, "init_uts_ns", &a), ==, 0);
    g_assert_cmphex(a, ==, 0xffffffff82a00000ull);
    g_assert_cmpint(vmsig_linux_symbol(&li, "init_uts", &a), ==, -ENOENT);
    g_assert_cmpint(vmsig_linux_number(&li, "NUMBER(pgtable_l5_enabled)", &n), ==, 0);
    g_assert_cmpint(n, ==, 0);
    char v[8];
    g_assert_cmpint(vmsig_linux_value(&li, "BUILD-ID", v, sizeof(v)), ==, 2);
    g_assert_cmpint(vmsig_linux_value(&li, "OSRELEASE", v, sizeof(v)), ==, -ENOSPC);
    g_assert_cmpint(vmsig_linux_value(&li, "NOPE", v, sizeof(v)), ==, -ENOENT);

    /* in RAM: no VMCOREINFO yet */
    g_assert_cmpint(vmsig_linux_find(r.m, &li), ==, -ENOENT);
    /* a decoy (the kernel's own format string) first, then the note */
    memcpy(r.w + 0x200010, "VMCOREINFO\0OSRELEASE=%s\n", 24);
    uint64_t note = 0x300000;
    uint32_t hdr[3] = { 11, (uint32_t)strlen(vmci_fmt), 0 };
    memcpy(r.w + note, hdr, 12);
    memcpy(r.w + note + 12, "VMCOREINFO\0", 12);
    memcpy(r.w + note + 24, vmci_fmt, strlen(vmci_fmt));
    /* the kernel's tables: swapper_pg_dir at PA 0x140a000 maps the kernel
     * image (2 MiB pages) at PA phys_base + (va - __START_KERNEL_map) */
    uint64_t root = 0x140a000;
    r.next = 0x1500000;
    memset(r.w + root, 0, 4096);
    for (uint64_t off = 0; off < (12u << 20); off += 2u << 20) {
        map64(&r, root, 4, 0xffffffff82000000ull + off, 0x1000000 + off, 2, P | W);
    }
    memcpy(r.w + 0x1a00000 + 130, "6.1.0-99-test", 14);
    g_assert_cmpint(vmsig_linux_find(r.m, &li), ==, 0);
    g_assert_cmphex(li.text_gpa, ==, note + 24);
    g_assert_cmpuint(li.flags & VMSIG_LINUX_F_NOTE, !=, 0);
    g_assert_cmpuint(li.flags & VMSIG_LINUX_F_VERIFIED, !=, 0);
    g_assert_cmphex(li.root, ==, root);
    g_assert_cmpstr(li.release, ==, "6.1.0-99-test");
    /* a wrong release at init_uts_ns: found, not verified */
    memcpy(r.w + 0x1a00000 + 130, "6.1.0-99-tesT", 14);
    g_assert_cmpint(vmsig_linux_find(r.m, &li), ==, 0);
    g_assert_cmpuint(li.flags & VMSIG_LINUX_F_VERIFIED, ==, 0);
    ram_fini(&r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vmem/4level", test_4level);
    g_test_add_func("/vmem/not-present-4level", test_not_present_4);
    g_test_add_func("/vmem/not-present-5level", test_not_present_5);
    g_test_add_func("/vmem/large-pages", test_large_pages);
    g_test_add_func("/vmem/5level-canonical", test_5level_canonical);
    g_test_add_func("/vmem/32bit", test_32bit);
    g_test_add_func("/vmem/sparse", test_sparse);
    g_test_add_func("/vmem/linux", test_linux);
    return g_test_run();
}
