/*
 * vmsig memory and input qtest: MEMCTX maps guest RAM (below and above
 * 4 GiB, hotplugged DIMMs) read-only into a control; CMD_MEMWRITE writes
 * what qtest then reads, refuses MMIO/ROM/out-of-RAM with exact errnos and
 * is signalled to other MEMCTX subscribers; the fds handed out cannot be
 * turned into write access; CMD_INPUT reaches the i8042.
 *
 * Built by QEMU's build (see meson.build here); run with
 * QTEST_QEMU_BINARY and QEMU_MODULE_DIR set.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <dirent.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "libqtest.h"
#include "vmsig-qtest.h"
#include "vmsig/vmsig_client.h"

#define EP 0
#define TIMEOUT_MS 10000
#define GiB (1ull << 30)
#define MiB (1ull << 20)

/* pc with 4 GiB: 3 GiB below the PCI hole, 1 GiB from 4 GiB up */
#define LOW_END  0xc0000000ull
#define HIGH_GPA 0x100000000ull

#define MEMFD_ARGS \
    "-machine pc,memory-backend=ram0 -m 4G,slots=2,maxmem=8G " \
    "-object memory-backend-memfd,id=ram0,size=4G,share=on "

typedef struct Fixture {
    char *dir;
    char *sock;
    QTestState *qts;
} Fixture;

static void fx_start(Fixture *f, const char *machine_args)
{
    g_autofree char *grants = NULL;
    g_autoptr(GError) err = NULL;

    f->dir = g_dir_make_tmp("vmsig-mem-XXXXXX", &err);
    g_assert_no_error(err);
    f->sock = g_build_filename(f->dir, "vmsig.sock", NULL);
    grants = g_build_filename(f->dir, "grants", NULL);
    g_assert_true(g_file_set_contents(grants,
        "uid:0 endpoints=all caps=all priority=0\n", -1, NULL));
    f->qts = qtest_initf("-nodefaults %s -object vmsig,id=vs0,path=%s,"
                         "grants=%s", machine_args, f->sock, grants);
}

static void fx_stop(Fixture *f)
{
    g_autofree char *grants = g_build_filename(f->dir, "grants", NULL);

    qtest_quit(f->qts);
    unlink(grants);
    unlink(f->sock);
    rmdir(f->dir);
    g_free(f->sock);
    g_free(f->dir);
}

static vmsig_client *connect_mem(Fixture *f, bool auto_map)
{
    vmsig_client_config cfg = {
        .version = VMSIG_CLIENT_CONFIG_VERSION,
        .path = f->sock,
        .sub = { .source_mask = 1u << VMSIG_SRC_MEMCTX,
                 .endpoint_mask = 1ull << EP },
        .timeout_ms = TIMEOUT_MS,
        .auto_map = auto_map,
    };
    int err = 0;
    vmsig_client *c = vmsig_client_connect(&cfg, &err);

    g_assert_cmpint(err, ==, 0);
    g_assert_nonnull(c);
    return c;
}

/* Next event of `kind`; other kinds are skipped. */
static void next_kind(vmsig_client *c, uint32_t kind, vmsig_msg *m)
{
    for (;;) {
        g_assert_cmpint(vmsig_client_next(c, m, TIMEOUT_MS), ==, 0);
        if (m->ev.kind == kind) {
            return;
        }
    }
}

/* Wait for a MEMCTX with generation > after. */
static void next_memctx(vmsig_client *c, uint64_t after, vmsig_msg *m)
{
    do {
        next_kind(c, VMSIG_EV_MEMCTX, m);
    } while (m->ev.u.memctx.generation <= after);
}

static const vmsig_wire_memseg *seg_at(const vmsig_msg *m, uint64_t gpa)
{
    const vmsig_wire_memseg *s = m->ev.ool;
    uint32_t i;

    for (i = 0; i < m->ev.u.memctx.nseg; i++) {
        if (gpa >= s[i].gpa && gpa - s[i].gpa < s[i].size) {
            return &s[i];
        }
    }
    return NULL;
}

static int memwrite(vmsig_client *c, uint64_t gpa, const void *buf,
                    uint32_t len)
{
    return vmsig_client_memwrite(c, EP, gpa, buf, len);
}

/* ---- the map ---- */

static void test_map(void)
{
    Fixture f;
    vmsig_client *c;
    vmsig_memmap *map;
    vmsig_msg m;
    const vmsig_wire_memseg *low, *high, *base;
    uint64_t v = 0;

    fx_start(&f, MEMFD_ARGS);
    c = connect_mem(&f, true);
    /* the first thing a MEMCTX subscriber hears is the current map */
    g_assert_cmpint(vmsig_client_next(c, &m, TIMEOUT_MS), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_MEMCTX);
    g_assert_true(m.ev.flags & VMSIG_F_SNAPSHOT);
    g_assert_cmpint(m.ev.u.memctx.status, ==, 0);
    g_assert_cmpuint(m.ev.u.memctx.generation, >=, 1);

    base = seg_at(&m, 0);
    low = seg_at(&m, 0x100000);
    high = seg_at(&m, HIGH_GPA);
    g_assert_nonnull(base);
    g_assert_nonnull(low);
    g_assert_nonnull(high);
    g_assert_cmpuint(base->offset, ==, 0);
    g_assert_cmpuint(low->gpa, ==, 0x100000);
    g_assert_cmpuint(low->offset, ==, 0x100000);
    g_assert_cmpuint(low->gpa + low->size, ==, LOW_END);
    /* ram-above-4g aliases the same block right after ram-below-4g */
    g_assert_cmpuint(high->gpa, ==, HIGH_GPA);
    g_assert_cmpuint(high->size, ==, 4 * GiB - LOW_END);
    g_assert_cmpuint(high->offset, ==, LOW_END);
    g_assert_cmpuint(high->fd_index, ==, low->fd_index);
    g_assert_null(seg_at(&m, 0xfee00000));
    g_assert_null(seg_at(&m, 0xfffc0000));

    /* what the guest (qtest) writes shows through the read-only mapping */
    qtest_writeq(f.qts, 0x1000, 0x1122334455667788ull);
    qtest_writeq(f.qts, HIGH_GPA + 0x2000, 0x8877665544332211ull);
    qtest_writeq(f.qts, LOW_END - 8, 0xa5a5a5a5a5a5a5a5ull);
    map = vmsig_client_memmap(c);
    g_assert_nonnull(map);
    /* memory-backend-memfd seals by default (seal=on): RAM cannot shrink */
    g_assert_cmpint(vmsig_memmap_sealed(map), ==, 1);
    g_assert_cmpint(vmsig_memmap_read(map, 0x1000, &v, 8), ==, 0);
    g_assert_cmphex(v, ==, 0x1122334455667788ull);
    g_assert_cmpint(vmsig_memmap_read(map, HIGH_GPA + 0x2000, &v, 8), ==, 0);
    g_assert_cmphex(v, ==, 0x8877665544332211ull);
    g_assert_cmpint(vmsig_memmap_read(map, LOW_END - 8, &v, 8), ==, 0);
    g_assert_cmphex(v, ==, 0xa5a5a5a5a5a5a5a5ull);
    vmsig_memmap_unref(map);

    /*
     * CMD_VM query's ram_size is the machine's (-m); MEMCTX's is what its
     * segments cover, which leaves out what is not RAM in the map (below
     * 1 MiB: VGA window, option ROMs, BIOS).
     */
    {
        vmsig_wire_vminfo info;
        uint64_t mapped = m.ev.u.memctx.ram_size;

        g_assert_cmpint(vmsig_client_vm(c, EP, VMSIG_VM_QUERY, &info), ==, 0);
        g_test_message("ram_size: CMD_VM query %" PRIu64 ", MEMCTX %" PRIu64,
                       info.ram_size, mapped);
        g_assert_cmpuint(info.ram_size, ==, 4 * GiB);
        g_assert_cmpuint(mapped, <=, info.ram_size);
    }

    vmsig_client_close(c);
    fx_stop(&f);
}

/* ---- CMD_MEMWRITE ---- */

static void test_memwrite(void)
{
    Fixture f;
    vmsig_client *w, *obs;
    vmsig_msg m;
    uint64_t gen, v = 0x0102030405060708ull;
    uint8_t odd[13], back[sizeof(odd)];
    g_autofree uint8_t *big = g_malloc(VMSIG_MEMWRITE_MAX);
    g_autofree uint8_t *bigback = g_malloc(VMSIG_MEMWRITE_MAX);
    uint32_t i;

    fx_start(&f, MEMFD_ARGS);
    w = connect_mem(&f, true);
    obs = connect_mem(&f, false);
    next_kind(obs, VMSIG_EV_MEMCTX, &m);
    gen = m.ev.u.memctx.generation;

    /* 8 aligned bytes: one atomic store */
    g_assert_cmpint(memwrite(w, 0x3000, &v, 8), ==, 0);
    g_assert_cmphex(qtest_readq(f.qts, 0x3000), ==, v);
    next_kind(obs, VMSIG_EV_MEMWRITE_DONE, &m);
    g_assert_cmpuint(m.ev.u.memdone.gpa, ==, 0x3000);
    g_assert_cmpuint(m.ev.u.memdone.len, ==, 8);
    g_assert_cmpuint(m.ev.u.memdone.generation, ==, gen);
    g_assert_cmpuint(m.ev.u.memdone.writer, ==, getuid());

    /* 1, 2, 4 aligned; above 4 GiB */
    g_assert_cmpint(memwrite(w, HIGH_GPA + 0x11, "\x5a", 1), ==, 0);
    g_assert_cmphex(qtest_readb(f.qts, HIGH_GPA + 0x11), ==, 0x5a);
    g_assert_cmpint(memwrite(w, HIGH_GPA + 0x12, "\x34\x12", 2), ==, 0);
    g_assert_cmphex(qtest_readw(f.qts, HIGH_GPA + 0x12), ==, 0x1234);
    g_assert_cmpint(memwrite(w, HIGH_GPA + 0x14, "\x78\x56\x34\x12", 4), ==, 0);
    g_assert_cmphex(qtest_readl(f.qts, HIGH_GPA + 0x14), ==, 0x12345678);

    /* unaligned and odd-sized: done with every vCPU paused */
    for (i = 0; i < sizeof(odd); i++) {
        odd[i] = 0xc0 + i;
    }
    g_assert_cmpint(memwrite(w, 0x4001, odd, sizeof(odd)), ==, 0);
    qtest_memread(f.qts, 0x4001, back, sizeof(back));
    g_assert_cmpmem(odd, sizeof(odd), back, sizeof(back));

    /* the largest write, up to the last byte below the PCI hole */
    for (i = 0; i < VMSIG_MEMWRITE_MAX; i++) {
        big[i] = i * 7 + 3;
    }
    g_assert_cmpint(memwrite(w, LOW_END - VMSIG_MEMWRITE_MAX, big,
                             VMSIG_MEMWRITE_MAX), ==, 0);
    qtest_memread(f.qts, LOW_END - VMSIG_MEMWRITE_MAX, bigback,
                  VMSIG_MEMWRITE_MAX);
    g_assert_cmpmem(big, VMSIG_MEMWRITE_MAX, bigback, VMSIG_MEMWRITE_MAX);
    /* and the holder of the map sees it too */
    {
        vmsig_memmap *map = vmsig_client_memmap(w);

        g_assert_nonnull(map);
        g_assert_cmpint(vmsig_memmap_read(map, LOW_END - VMSIG_MEMWRITE_MAX,
                                          bigback, VMSIG_MEMWRITE_MAX), ==, 0);
        g_assert_cmpmem(big, VMSIG_MEMWRITE_MAX, bigback, VMSIG_MEMWRITE_MAX);
        vmsig_memmap_unref(map);
    }

    /* the VM keeps running (and can be stopped) after paused writes */
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'stop' }");
    g_assert_cmpint(memwrite(w, 0x5003, odd, sizeof(odd)), ==, 0);
    qtest_memread(f.qts, 0x5003, back, sizeof(back));
    g_assert_cmpmem(odd, sizeof(odd), back, sizeof(back));
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'cont' }");

    vmsig_client_close(obs);
    vmsig_client_close(w);
    fx_stop(&f);
}

static int raw_memwrite(vmsig_client *c, uint64_t gpa, uint64_t len,
                        const void *data, uint32_t ool_len)
{
    vmsig_event ev;
    vmsig_reply rep;

    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_CMD_MEMWRITE;
    ev.endpoint = EP;
    ev.u.memwrite.gpa = gpa;
    ev.u.memwrite.len = len;
    ev.ool = data;
    ev.ool_len = ool_len;
    return vmsig_client_call(c, &ev, &rep, TIMEOUT_MS);
}

static void test_refusals(void)
{
    Fixture f;
    vmsig_client *w;
    uint64_t v = ~0ull;
    g_autofree uint8_t *big = g_malloc0(VMSIG_MEMWRITE_MAX + 1);

    fx_start(&f, MEMFD_ARGS);
    w = connect_mem(&f, false);

    /* MMIO: local APIC, IOAPIC */
    g_assert_cmpint(memwrite(w, 0xfee00000, &v, 8), ==, -EFAULT);
    g_assert_cmpint(memwrite(w, 0xfec00000, &v, 4), ==, -EFAULT);
    /* nothing at all: the PCI hole */
    g_assert_cmpint(memwrite(w, 0xd0000000, &v, 8), ==, -EFAULT);
    /* ROM: the BIOS at the top of 4 GiB, its copy below 1 MiB, pc.rom */
    g_assert_cmpint(memwrite(w, 0xfffc0000, &v, 8), ==, -EROFS);
    g_assert_cmpint(memwrite(w, 0xffff0, &v, 8), ==, -EROFS);
    g_assert_cmpint(memwrite(w, 0xc0000, &v, 2), ==, -EROFS);
    /* RAM running into the hole or past the end of RAM */
    g_assert_cmpint(memwrite(w, LOW_END - 4, &v, 8), ==, -EFAULT);
    g_assert_cmpint(memwrite(w, HIGH_GPA + 4 * GiB - LOW_END - 4, &v, 8),
                    ==, -EFAULT);
    g_assert_cmpint(memwrite(w, 16 * GiB, &v, 8), ==, -EFAULT);
    /* RAM, then ROM (pc.rom at 0xc0000): the first byte not RAM decides */
    g_assert_cmpint(memwrite(w, 0xbfff8, big, 0x10000), ==, -EROFS);
    /* refused by the core before it reaches QEMU */
    g_assert_cmpint(memwrite(w, UINT64_MAX - 3, &v, 8), ==, -EFAULT);
    /* the last 8 bytes of the address space: no wrap-around, but not RAM
     * (an end computed as gpa + len would wrap to 0 and skip the check) */
    g_assert_cmpint(memwrite(w, UINT64_MAX - 7, &v, 8), ==, -EFAULT);
    g_assert_cmpint(memwrite(w, UINT64_MAX, &v, 1), ==, -EFAULT);
    g_assert_cmpint(raw_memwrite(w, 0x1000, VMSIG_MEMWRITE_MAX + 1, big,
                                 VMSIG_MEMWRITE_MAX + 1), ==, -EINVAL);
    g_assert_cmpint(raw_memwrite(w, 0x1000, 0, NULL, 0), ==, -EINVAL);
    /* nothing was written by any refusal */
    g_assert_cmphex(qtest_readq(f.qts, LOW_END - 8), ==, 0);
    g_assert_cmphex(qtest_readq(f.qts, 0xbfff8), ==, 0);
    /* and the control is still fine */
    g_assert_cmpint(memwrite(w, 0x1000, &v, 8), ==, 0);
    g_assert_cmphex(qtest_readq(f.qts, 0x1000), ==, v);

    /* a frame whose length disagrees with its header is a protocol error */
    g_assert_cmpint(raw_memwrite(w, 0x2000, 16, big, 8), ==, -EPIPE);
    g_assert_cmpint(vmsig_client_bye(w, NULL), ==, -EBADMSG);
    vmsig_client_close(w);
    w = connect_mem(&f, false);
    g_assert_cmpint(memwrite(w, 0x2000, &v, 8), ==, 0);

    vmsig_client_close(w);
    fx_stop(&f);
}

/* ---- hotplug ---- */

static uint64_t qom_get_uint(QTestState *qts, const char *path,
                             const char *prop)
{
    QDict *r = qtest_qmp(qts, "{ 'execute': 'qom-get', 'arguments': "
                         "{ 'path': %s, 'property': %s } }", path, prop);
    uint64_t v;

    g_assert(qdict_haskey(r, "return"));
    v = qdict_get_int(r, "return");
    qobject_unref(r);
    return v;
}

static void test_hotplug(void)
{
    Fixture f;
    vmsig_client *c;
    vmsig_memmap *map;
    vmsig_msg m;
    const vmsig_wire_memseg *d;
    uint64_t gen0, gen1, addr, v = 0;

    fx_start(&f, MEMFD_ARGS);
    c = connect_mem(&f, true);
    next_kind(c, VMSIG_EV_MEMCTX, &m);
    gen0 = m.ev.u.memctx.generation;

    /* seal=off: the DIMM's memfd may shrink, so the map says it is unsealed */
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'object-add', 'arguments':"
        " { 'qom-type': 'memory-backend-memfd', 'id': 'mem1',"
        "   'size': %" PRIu64 ", 'share': true, 'seal': false } }", (uint64_t)(256 * MiB));
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'device_add', 'arguments':"
        " { 'driver': 'pc-dimm', 'id': 'dimm1', 'memdev': 'mem1' } }");
    addr = qom_get_uint(f.qts, "/machine/peripheral/dimm1", "addr");
    g_assert_cmpuint(addr, >=, HIGH_GPA + 4 * GiB - LOW_END);

    next_memctx(c, gen0, &m);
    gen1 = m.ev.u.memctx.generation;
    g_assert_cmpuint(gen1, ==, gen0 + 1);
    d = seg_at(&m, addr);
    g_assert_nonnull(d);
    g_assert_cmpuint(d->gpa, ==, addr);
    g_assert_cmpuint(d->size, ==, 256 * MiB);
    g_assert_cmpuint(d->offset, ==, 0);
    g_assert_cmpuint(d->fd_index, !=, seg_at(&m, 0)->fd_index);
    {
        const vmsig_wire_memseg *s = m.ev.ool;
        uint64_t sum = 0;
        uint32_t i;

        for (i = 0; i < m.ev.u.memctx.nseg; i++) {
            sum += s[i].size;
        }
        g_assert_cmpuint(m.ev.u.memctx.ram_size, ==, sum);
    }

    qtest_writeq(f.qts, addr + 0x100, 0xd1111111d2222222ull);
    g_assert_cmpint(memwrite(c, addr + 0x200, "\x42", 1), ==, 0);
    map = vmsig_client_memmap(c);
    g_assert_cmpuint(vmsig_memmap_generation(map), ==, gen1);
    g_assert_cmpint(vmsig_memmap_sealed(map), ==, 0);
    g_assert_cmpint(vmsig_memmap_read(map, addr + 0x100, &v, 8), ==, 0);
    g_assert_cmphex(v, ==, 0xd1111111d2222222ull);
    g_assert_cmpint(vmsig_memmap_read(map, addr + 0x200, &v, 1), ==, 0);
    g_assert_cmphex(v & 0xff, ==, 0x42);
    vmsig_memmap_unref(map);

    /*
     * Unplug needs the guest's ACPI eject; with no guest, do what its AML
     * does: select the slot (0xa00) and write the eject bit (0xa14).
     */
    qtest_qmp_device_del_send(f.qts, "dimm1");
    qtest_outl(f.qts, 0xa00, 0);
    qtest_outl(f.qts, 0xa14, 8);
    qtest_qmp_eventwait(f.qts, "DEVICE_DELETED");
    next_memctx(c, gen1, &m);
    g_assert_cmpuint(m.ev.u.memctx.generation, ==, gen1 + 1);
    g_assert_cmpuint(seg_at(&m, HIGH_GPA)->fd_index, ==, 0);
    g_assert_cmpuint(seg_at(&m, 0)->fd_index, ==, 0);
    g_assert_null(seg_at(&m, addr));
    g_assert_nonnull(seg_at(&m, HIGH_GPA));
    g_assert_cmpint(memwrite(c, addr, &v, 8), ==, -EFAULT);
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'object-del', 'arguments':"
                             " { 'id': 'mem1' } }");
    /* removing the unmapped backend does not change the map */
    g_assert_cmpint(memwrite(c, 0x1000, &v, 8), ==, 0);
    g_assert_cmpuint(vmsig_memmap_generation(map = vmsig_client_memmap(c)),
                     ==, gen1 + 1);
    g_assert_cmpint(vmsig_memmap_sealed(map), ==, 1); /* the DIMM is gone */
    vmsig_memmap_unref(map);

    vmsig_client_close(c);
    fx_stop(&f);
}

/* ---- RAM that cannot be shared ---- */

static void check_unshareable(const char *machine_args)
{
    Fixture f;
    vmsig_client *c;
    vmsig_msg m;
    uint64_t gen, v = 0x77;
    char logname[] = "/tmp/vmsig-mem-stderr-XXXXXX";
    int logfd = mkstemp(logname), saved = dup(2);
    g_autofree char *log = NULL;

    /* QEMU inherits our stderr: catch its warning in a file */
    g_assert_cmpint(logfd, >=, 0);
    dup2(logfd, 2);
    fx_start(&f, machine_args);
    dup2(saved, 2);
    close(saved);

    c = connect_mem(&f, true);
    next_kind(c, VMSIG_EV_MEMCTX, &m);
    g_assert_cmpint(m.ev.u.memctx.status, ==, -ENODEV);
    g_assert_cmpuint(m.ev.u.memctx.nseg, ==, 0);
    g_assert_cmpuint(m.nfds, ==, 0);
    g_assert_nonnull(strstr(m.ev.u.memctx.why, "memory-backend-memfd"));
    g_assert_nonnull(strstr(m.ev.u.memctx.why, "share=on"));
    gen = m.ev.u.memctx.generation;
    g_assert_null(vmsig_client_memmap(c));

    /* commands still work, the write is still signalled */
    g_assert_cmpint(memwrite(c, 0x2000, &v, 8), ==, 0);
    g_assert_cmphex(qtest_readq(f.qts, 0x2000), ==, v);
    next_kind(c, VMSIG_EV_MEMWRITE_DONE, &m);
    g_assert_cmpuint(m.ev.u.memdone.generation, ==, gen);
    g_assert_cmpint(memwrite(c, 0xfee00000, &v, 8), ==, -EFAULT);

    vmsig_client_close(c);
    fx_stop(&f);
    g_assert_true(g_file_get_contents(logname, &log, NULL, NULL));
    g_test_message("QEMU said: %s", log);
    g_assert_nonnull(strstr(log, "warning: vmsig: guest RAM is not shareable"));
    /* once, not per memory transaction */
    g_assert_null(strstr(strstr(log, "not shareable") + 1, "not shareable"));
    close(logfd);
    unlink(logname);
}

static void test_anonymous(void)
{
    check_unshareable("-machine pc -m 256M");
}

static void test_private(void)
{
    check_unshareable("-machine pc,memory-backend=ram0 -m 256M "
        "-object memory-backend-memfd,id=ram0,size=256M,share=off");
}

/* ---- the fd is read-only ---- */

static void test_readonly_fd(void)
{
    Fixture f;
    vmsig_client *c;
    vmsig_msg m;
    g_autofree char *proc = NULL;
    struct stat st;
    long pg = sysconf(_SC_PAGESIZE);
    int fd, fd2, status;
    void *p;
    pid_t pid;

    fx_start(&f, MEMFD_ARGS);
    c = connect_mem(&f, false);
    next_kind(c, VMSIG_EV_MEMCTX, &m);
    g_assert_cmpuint(m.nfds, ==, 1);
    fd = vmsig_client_take_fd(c, 0); /* ours now */
    g_assert_cmpint(fd, ==, m.fds[0]);
    g_assert_cmpint(vmsig_client_take_fd(c, 0), ==, -EBADF);

    g_assert_cmpint(fcntl(fd, F_GETFL) & O_ACCMODE, ==, O_RDONLY);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpuint(st.st_mode & 07777, ==, 0400);

    /* no writable shared mapping, no upgrading a read-only one */
    p = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert_true(p == MAP_FAILED);
    g_assert_cmpint(errno, ==, EACCES);
    p = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0);
    g_assert_true(p != MAP_FAILED);
    g_assert_cmpint(mprotect(p, pg, PROT_READ | PROT_WRITE), ==, -1);
    g_assert_cmpint(errno, ==, EACCES);
    munmap(p, pg);
    /* a private copy may be written, and the guest never sees it */
    qtest_writeq(f.qts, 0x6000, 0x1234);
    p = mmap(NULL, 0x7000, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    g_assert_true(p != MAP_FAILED);
    *(volatile uint64_t *)((char *)p + 0x6000) = 0xdead;
    g_assert_cmphex(qtest_readq(f.qts, 0x6000), ==, 0x1234);
    munmap(p, 0x7000);

    /* no write(), ftruncate(), fallocate() */
    g_assert_cmpint(write(fd, "x", 1), ==, -1);
    g_assert_cmpint(errno, ==, EBADF);
    g_assert_cmpint(pwrite(fd, "x", 1, 0x6000), ==, -1);
    g_assert_cmpint(errno, ==, EBADF);
    g_assert_cmpint(ftruncate(fd, 0), ==, -1);
    g_assert_cmpint(errno, ==, EINVAL);
    g_assert_cmpint(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              0, pg), ==, -1);
    g_assert_cmpint(errno, ==, EBADF);

    /* another uid cannot reopen it through /proc, not even read-only */
    proc = g_strdup_printf("/proc/self/fd/%d", fd);
    if (getuid() == 0) {
        pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
            int e1, e2;

            if (setgid(65534) < 0 || setuid(65534) < 0) {
                _exit(90);
            }
            e1 = open(proc, O_RDWR) < 0 ? errno : 0;
            e2 = open(proc, O_RDONLY) < 0 ? errno : 0;
            _exit(e1 == EACCES && e2 == EACCES ? 0 : 91);
        }
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        /* root can (documented in docs/memory.md) */
        fd2 = open(proc, O_RDWR);
        g_assert_cmpint(fd2, >=, 0);
        close(fd2);
    } else {
        g_test_message("not root: skipping the other-uid reopen check");
    }
    close(fd);
    qtest_writeq(f.qts, 0x6000, 0x5678);
    g_assert_cmphex(qtest_readq(f.qts, 0x6000), ==, 0x5678);

    vmsig_client_close(c);
    fx_stop(&f);
}

/* ---- fds do not leak ---- */

static int count_fds(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    g_assert_nonnull(d);
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static void test_fd_leak(void)
{
    Fixture f;
    vmsig_client *c;
    vmsig_msg m;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int i, before, after;

    fx_start(&f, MEMFD_ARGS);
    c = connect_mem(&f, false);
    g_assert_cmpint(getsockopt(vmsig_client_fd(c), SOL_SOCKET, SO_PEERCRED,
                               &cred, &len), ==, 0);
    vmsig_client_close(c);
    /* the QMP round trip makes sure QEMU has seen the close */
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'query-status' }");
    before = count_fds(cred.pid);

    for (i = 0; i < 1000; i++) {
        c = connect_mem(&f, i & 1);
        next_kind(c, VMSIG_EV_MEMCTX, &m);
        g_assert_cmpuint(m.ev.u.memctx.status, ==, 0);
        vmsig_client_close(c);
    }
    /* a last control makes sure the previous closes were all handled */
    c = connect_mem(&f, false);
    next_kind(c, VMSIG_EV_MEMCTX, &m);
    vmsig_client_close(c);
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'query-status' }");
    g_usleep(100 * 1000);
    after = count_fds(cred.pid);
    g_test_message("QEMU fds: %d before, %d after 1000 controls", before,
                   after);
    g_assert_cmpint(after, <=, before);

    fx_stop(&f);
}

/* ---- CMD_INPUT ---- */

/* Linux input event codes (<linux/input-event-codes.h>, vmsig_keys.h) */
#define KEY_A     30
#define KEY_ENTER 28
#define KEY_F1    59
#define KEY_UP    103

static int input(vmsig_client *c, uint32_t op, uint32_t code, int32_t value,
                 const char *text)
{
    vmsig_wire_input in = { .op = op, .code = code, .value = value };

    return vmsig_client_input(c, EP, &in, text);
}

static int btn(vmsig_client *c, uint32_t code, int32_t value)
{
    return input(c, VMSIG_INPUT_BTN, code, value, NULL);
}

/* A key press refused by QEMU's glue: -EINVAL, and the reply names the code. */
static void key_refused(vmsig_client *c, uint32_t code)
{
    vmsig_event ev = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_INPUT,
                       .endpoint = EP,
                       .u.input = { .op = VMSIG_INPUT_KEY, .code = code,
                                    .value = 1 } };
    g_autofree char *want = g_strdup_printf("key code %u ", code);
    vmsig_reply rep;

    g_assert_cmpint(vmsig_client_call(c, &ev, &rep, TIMEOUT_MS), ==, -EINVAL);
    g_assert_cmpint(rep.status, ==, -EINVAL);
    g_assert_cmpuint(rep.len, >, 0);
    g_assert_cmpuint(rep.body[rep.len - 1], ==, '\0');
    g_test_message("key %u: %s", code, (const char *)rep.body);
    g_assert_nonnull(strstr((const char *)rep.body, want));
}

/* Write a byte to the PS/2 mouse (through the i8042's aux port). */
static void aux_write(QTestState *qts, uint8_t v)
{
    qtest_outb(qts, 0x64, 0xd4);
    qtest_outb(qts, 0x60, v);
}

/* Drain the i8042 output buffer (PS/2 scancode set 2, no translation). */
static GString *i8042_drain(QTestState *qts)
{
    GString *s = g_string_new(NULL);

    while (qtest_inb(qts, 0x64) & 0x01) {
        g_string_append_printf(s, "%02x ", qtest_inb(qts, 0x60));
    }
    return s;
}

static void expect_bytes(QTestState *qts, const char *want)
{
    g_autoptr(GString) got = i8042_drain(qts);

    g_test_message("i8042: %s", got->str);
    g_assert_cmpstr(got->str, ==, want);
}

static void test_input(void)
{
    Fixture f;
    vmsig_client *c;
    vmsig_client_config cfg;
    int err = 0;

    fx_start(&f, "-machine pc,memory-backend=ram0 -m 128M "
             "-object memory-backend-memfd,id=ram0,size=128M,share=on");
    cfg = (vmsig_client_config) {
        .version = VMSIG_CLIENT_CONFIG_VERSION,
        .path = f.sock,
        .sub = { .source_mask = 1u << VMSIG_SRC_SEAM,
                 .endpoint_mask = 1ull << EP },
        .timeout_ms = TIMEOUT_MS,
    };
    c = vmsig_client_connect(&cfg, &err);
    g_assert_nonnull(c);
    i8042_drain(f.qts);

    /* a key, down and up: Linux KEY_A is qcode 'a', scancode 0x1c in set 2 */
    g_assert_cmpuint(vmsig_key_by_name("a"), ==, KEY_A);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_A, 1, NULL), ==, 0);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_A, 0, NULL), ==, 0);
    expect_bytes(f.qts, "1c f0 1c ");
    /* KEY_ENTER is 'ret' (0x5a), KEY_F1 0x05, KEY_UP the extended e0 75 */
    g_assert_cmpuint(vmsig_key_by_name("ret"), ==, KEY_ENTER);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_ENTER, 1, NULL), ==, 0);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_ENTER, 0, NULL), ==, 0);
    expect_bytes(f.qts, "5a f0 5a ");
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_F1, 1, NULL), ==, 0);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_F1, 0, NULL), ==, 0);
    expect_bytes(f.qts, "05 f0 05 ");
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_UP, 1, NULL), ==, 0);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_UP, 0, NULL), ==, 0);
    expect_bytes(f.qts, "e0 75 e0 f0 75 ");

    /* text: Shift for capitals and symbols, one character per 10 ms */
    g_assert_cmpint(input(c, VMSIG_INPUT_TEXT, 0, 0, "aB!"), ==, 0);
    expect_bytes(f.qts, "1c f0 1c ");
    qtest_clock_step(f.qts, 10 * 1000 * 1000);
    expect_bytes(f.qts, "12 32 f0 32 f0 12 ");
    qtest_clock_step(f.qts, 10 * 1000 * 1000);
    expect_bytes(f.qts, "12 16 f0 16 f0 12 ");
    qtest_clock_step(f.qts, 100 * 1000 * 1000);
    expect_bytes(f.qts, "");

    /* text while earlier text is still in QEMU's (global) key queue would
     * overflow it silently: refused until that text has been typed */
    g_assert_cmpint(input(c, VMSIG_INPUT_TEXT, 0, 0, "ab"), ==, 0);
    g_assert_cmpint(input(c, VMSIG_INPUT_TEXT, 0, 0, "c"), ==, -EAGAIN);
    expect_bytes(f.qts, "1c f0 1c ");
    qtest_clock_step(f.qts, 10 * 1000 * 1000);
    expect_bytes(f.qts, "32 f0 32 ");
    qtest_clock_step(f.qts, 10 * 1000 * 1000);
    g_assert_cmpint(input(c, VMSIG_INPUT_TEXT, 0, 0, "c"), ==, 0);
    expect_bytes(f.qts, "21 f0 21 ");
    qtest_clock_step(f.qts, 100 * 1000 * 1000);
    expect_bytes(f.qts, "");

    /* the mouse, once the guest enabled it: 0xd4 to the aux port, 0xf4 */
    qtest_outb(f.qts, 0x64, 0xd4);
    qtest_outb(f.qts, 0x60, 0xf4);
    expect_bytes(f.qts, "fa ");
    g_assert_cmpint(input(c, VMSIG_INPUT_REL, 0, 5, NULL), ==, 0);
    expect_bytes(f.qts, "08 05 00 ");
    g_assert_cmpint(input(c, VMSIG_INPUT_REL, 1, 3, NULL), ==, 0);
    expect_bytes(f.qts, "28 00 fd "); /* PS/2 y grows upwards */
    /* vmsig's button numbers; PS/2 bits: left 0x01, right 0x02, middle 0x04 */
    g_assert_cmpint(btn(c, VMSIG_BTN_LEFT, 1), ==, 0);
    expect_bytes(f.qts, "09 00 00 ");
    g_assert_cmpint(btn(c, VMSIG_BTN_LEFT, 0), ==, 0);
    expect_bytes(f.qts, "08 00 00 ");
    g_assert_cmpint(btn(c, VMSIG_BTN_RIGHT, 1), ==, 0);
    expect_bytes(f.qts, "0a 00 00 ");
    g_assert_cmpint(btn(c, VMSIG_BTN_MIDDLE, 1), ==, 0);
    expect_bytes(f.qts, "0e 00 00 ");
    g_assert_cmpint(btn(c, VMSIG_BTN_RIGHT, 0), ==, 0);
    g_assert_cmpint(btn(c, VMSIG_BTN_MIDDLE, 0), ==, 0);
    expect_bytes(f.qts, "0c 00 00 08 00 00 ");
    /* a PS/2 mouse takes no absolute events; they are accepted and lost */
    g_assert_cmpint(input(c, VMSIG_INPUT_ABS, VMSIG_AXIS_X, 16384, NULL), ==,
                    0);
    expect_bytes(f.qts, "");

    /*
     * Wheel and side/extra buttons: switch the mouse to IntelliMouse
     * Explorer (sample rates 200, 200, 80), whose 4th byte carries the
     * wheel (low nibble, up is -1) and buttons 4/5 (0x10 side, 0x20 extra).
     */
    aux_write(f.qts, 0xf3);
    aux_write(f.qts, 200);
    aux_write(f.qts, 0xf3);
    aux_write(f.qts, 200);
    aux_write(f.qts, 0xf3);
    aux_write(f.qts, 80);
    expect_bytes(f.qts, "fa fa fa fa fa fa ");
    g_assert_cmpint(btn(c, VMSIG_BTN_WHEEL_UP, 1), ==, 0);
    g_assert_cmpint(btn(c, VMSIG_BTN_WHEEL_UP, 0), ==, 0);
    expect_bytes(f.qts, "08 00 00 0f 08 00 00 00 ");
    g_assert_cmpint(btn(c, VMSIG_BTN_WHEEL_DOWN, 1), ==, 0);
    g_assert_cmpint(btn(c, VMSIG_BTN_WHEEL_DOWN, 0), ==, 0);
    expect_bytes(f.qts, "08 00 00 01 08 00 00 00 ");
    g_assert_cmpint(btn(c, VMSIG_BTN_SIDE, 1), ==, 0);
    g_assert_cmpint(btn(c, VMSIG_BTN_SIDE, 0), ==, 0);
    expect_bytes(f.qts, "08 00 00 10 08 00 00 00 ");
    g_assert_cmpint(btn(c, VMSIG_BTN_EXTRA, 1), ==, 0);
    g_assert_cmpint(btn(c, VMSIG_BTN_EXTRA, 0), ==, 0);
    expect_bytes(f.qts, "08 00 00 20 08 00 00 00 ");
    g_assert_cmpint(input(c, VMSIG_INPUT_REL, VMSIG_AXIS_X, -2, NULL), ==, 0);
    expect_bytes(f.qts, "18 fe 00 00 ");

    /*
     * refusals; key codes QEMU has no key for: KEY_RESERVED (0), a code in
     * its table that maps to nothing (KEY_RFKILL, 0x20c), KEY_MAX (0x2ff,
     * past its table) and far beyond
     */
    key_refused(c, 0);
    key_refused(c, 0x20c);
    key_refused(c, 0x2ff);
    key_refused(c, 100000);
    key_refused(c, UINT32_MAX);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_A, 2, NULL), ==, -EINVAL);
    g_assert_cmpint(btn(c, VMSIG_BTN__COUNT, 1), ==, -EINVAL);
    g_assert_cmpint(btn(c, 99, 1), ==, -EINVAL);
    g_assert_cmpint(input(c, VMSIG_INPUT_REL, 2, 1, NULL), ==, -EINVAL);
    g_assert_cmpint(input(c, VMSIG_INPUT_ABS, 0, 32768, NULL), ==, -EINVAL);
    g_assert_cmpint(input(c, VMSIG_INPUT_ABS, 1, -1, NULL), ==, -EINVAL);
    g_assert_cmpint(input(c, VMSIG_INPUT_TEXT, 0, 0, "ok\x01"), ==, -EINVAL);
    g_assert_cmpint(input(c, VMSIG_INPUT_TEXT, 0, 0, "caf\xc3\xa9"), ==,
                    -EINVAL);
    g_assert_cmpint(input(c, 99, 0, 0, NULL), ==, -EINVAL);
    {
        char text[VMSIG_TEXT_MAX + 1];

        memset(text, 'A', VMSIG_TEXT_MAX);
        text[VMSIG_TEXT_MAX] = '\0';
        g_assert_cmpint(input(c, VMSIG_INPUT_TEXT, 0, 0, text), ==, -E2BIG);
    }
    expect_bytes(f.qts, "");
    /* a stopped VM drops input in QEMU's input layer: say so */
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'stop' }");
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_A, 1, NULL), ==, -EAGAIN);
    qtest_qmp_assert_success(f.qts, "{ 'execute': 'cont' }");
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_A, 1, NULL), ==, 0);
    g_assert_cmpint(input(c, VMSIG_INPUT_KEY, KEY_A, 0, NULL), ==, 0);
    expect_bytes(f.qts, "1c f0 1c ");

    vmsig_client_close(c);
    fx_stop(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/vmsig/mem/map", test_map);
    qtest_add_func("/vmsig/mem/memwrite", test_memwrite);
    qtest_add_func("/vmsig/mem/refusals", test_refusals);
    qtest_add_func("/vmsig/mem/hotplug", test_hotplug);
    qtest_add_func("/vmsig/mem/anonymous", test_anonymous);
    qtest_add_func("/vmsig/mem/private", test_private);
    qtest_add_func("/vmsig/mem/readonly-fd", test_readonly_fd);
    qtest_add_func("/vmsig/mem/fd-leak", test_fd_leak);
    qtest_add_func("/vmsig/input/i8042", test_input);
    return g_test_run();
}
