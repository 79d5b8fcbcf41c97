/*
 * bench-intro.c - introspection rows against a booted Linux guest (bench/run
 * boots the e2e guest for them):
 *
 *   vmsig-bench [--quick] introspect --vmsig VMSIG.sock --gdb PORT [--endpoint N]
 *
 * cpu.regs_us      CMD_CPU REGS of vCPU 0 (VM paused) vs the gdbstub's `g`
 *                  packet (all registers) on the same VM, paused by gdb
 * va.read_gbps     1 MiB of kernel memory mapped with 4 KiB pages read by
 *                  virtual address (vmsig_vmem_read through swapper_pg_dir
 *                  from VMCOREINFO) vs vmsig's physical read of the same
 *                  bytes (vmsig_memmap_read), and vs gdbstub `m` packets of
 *                  the same VAs (scaled from 256 KiB)
 *
 * Every reader's bytes are compared with vmsig's physical read: a wrong
 * byte fails the run instead of producing a number. The gdbstub rows come
 * last (attaching stops the VM, vmsig's commands are done by then).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmsig/vmsig_client.h>
#include <vmsig/vmsig_vmem.h>
#include "bench.h"

#define WIN (1u << 20)
#define GDB_M 2048u /* bytes per m packet (the stub's 4 KiB packet buffer holds the hex) */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vmsig-bench introspect: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---- a minimal gdbstub client (virtual addresses: the vCPU's own paging) ---- */

typedef struct gdbc {
    int fd, noack;
    char in[1 << 16];
    size_t have, pos;
} gdbc;

static int gc(gdbc *g)
{
    if (g->pos == g->have) {
        struct pollfd p = { .fd = g->fd, .events = POLLIN };
        if (poll(&p, 1, 20000) <= 0) {
            die("gdb: no answer");
        }
        ssize_t n = read(g->fd, g->in, sizeof(g->in));
        if (n <= 0) {
            die("gdb: connection closed");
        }
        g->have = (size_t)n;
        g->pos = 0;
    }
    return (unsigned char)g->in[g->pos++];
}

static size_t gdb_cmd(gdbc *g, const char *cmd, char *out, size_t cap)
{
    char pkt[512];
    unsigned sum = 0;
    for (const char *p = cmd; *p; p++) {
        sum += (unsigned char)*p;
    }
    int n = snprintf(pkt, sizeof(pkt), "$%s#%02x", cmd, sum & 0xff);
    if (write(g->fd, pkt, (size_t)n) != n) {
        die("gdb: write: %s", strerror(errno));
    }
    int c;
    while ((c = gc(g)) != '$') {
        if (c == '-') {
            die("gdb: retransmission asked");
        }
    }
    size_t len = 0;
    while ((c = gc(g)) != '#') {
        if (len + 1 >= cap) {
            die("gdb: reply too big");
        }
        out[len++] = (char)c;
    }
    out[len] = 0;
    gc(g);
    gc(g);
    if (!g->noack && write(g->fd, "+", 1) != 1) {
        die("gdb: ack");
    }
    return len;
}

static void gdb_open(gdbc *g, int port)
{
    static char r[1 << 14];
    memset(g, 0, sizeof(*g));
    g->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;
    setsockopt(g->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(g->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        die("gdb: connect 127.0.0.1:%d: %s", port, strerror(errno));
    }
    gdb_cmd(g, "qSupported:multiprocess+;swbreak+;hwbreak+", r, sizeof(r));
    if (strstr(r, "QStartNoAckMode+")) {
        gdb_cmd(g, "QStartNoAckMode", r, sizeof(r));
        g->noack = !strcmp(r, "OK");
    }
    gdb_cmd(g, "?", r, sizeof(r));
}

static int hexv(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static void gdb_mread(gdbc *g, uint64_t va, uint8_t *buf, size_t len)
{
    static char r[2 * GDB_M + 64];
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "m%" PRIx64 ",%zx", va, len);
    size_t n = gdb_cmd(g, cmd, r, sizeof(r));
    if (n != 2 * len) {
        die("gdb: %s -> %.16s (%zu chars)", cmd, r, n);
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(hexv(r[2 * i]) << 4 | hexv(r[2 * i + 1]));
    }
}

/* ---- helpers ---- */

static double med(double *v, int n)
{
    return n ? stat_median(v, (size_t)n) : NAN;
}

static int regs_call(vmsig_client *c, uint32_t ep, vmsig_reply *rep)
{
    vmsig_event cmd = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_CPU, .endpoint = ep };
    vmsig_wire_cpu req = { .op = VMSIG_CPU_REGS, .index = 0 };
    memcpy(cmd.u.raw, &req, sizeof(req));
    return vmsig_client_call(c, &cmd, rep, 5000);
}

/* A WIN-byte VA window in [lo, hi) whose pages are all 4 KiB (want4k) or
 * all in large pages, mapped, guest RAM and physically contiguous. */
static int find_window(const vmsig_memmap *m, const vmsig_linux_info *li, uint64_t lo, uint64_t hi,
                       int want4k, uint64_t *va, uint64_t *pa)
{
    for (uint64_t w = lo; w + WIN <= hi; w += 4096) {
        uint64_t first = 0, a;
        int ok = 1;
        for (a = w; a < w + WIN; a += 4096) {
            vmsig_vmem_xlat x;
            if (vmsig_vmem_translate(m, li->root, li->vmem_flags, a, &x) < 0 ||
                (want4k ? x.page_size != 4096 : x.page_size == 4096)) {
                ok = 0;
                break;
            }
            if (a == w) {
                first = x.pa;
            } else if (x.pa != first + (a - w)) {
                ok = 0;
                break;
            }
        }
        if (ok) {
            *va = w;
            *pa = first;
            return 0;
        }
        w = a & ~4095ull; /* restart after the page that broke the window */
    }
    return -ENOENT;
}

int bench_intro_main(const bench_opts *o, int argc, char **argv)
{
    const char *vmsig_path = NULL;
    int port = 0;
    uint32_t ep = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--vmsig")) vmsig_path = argv[i + 1];
        else if (!strcmp(argv[i], "--gdb")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--endpoint")) ep = (uint32_t)atoi(argv[i + 1]);
        else die("unknown option %s", argv[i]);
    }
    if (!vmsig_path || !port) {
        die("need --vmsig and --gdb");
    }
    const int q = o->quick;
    const int n_regs = q ? 200 : 2000, reps = q ? 9 : 41, reps_gdb = q ? 2 : 5;
    const size_t gdb_len = q ? 64u << 10 : 256u << 10;

    int err = 0;
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = vmsig_path,
                                .auto_map = 1 };
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    if (!c) {
        die("connect %s: %s", vmsig_path, strerror(-err));
    }
    vmsig_memmap *map = NULL;
    for (int i = 0; i < 60 && !(map = vmsig_client_memmap(c)); i++) {
        vmsig_msg m;
        vmsig_client_next(c, &m, 100);
    }
    if (!map) {
        die("no MEMCTX");
    }
    vmsig_sub sub = { .source_mask = 1u << VMSIG_SRC_SEAM, .endpoint_mask = 1ull << ep };
    vmsig_client_subscribe(c, &sub);
    static vmsig_linux_info li;
    if (vmsig_linux_find(map, &li) < 0 || !(li.flags & VMSIG_LINUX_F_VERIFIED)) {
        die("no verified VMCOREINFO in the guest");
    }
    uint64_t stext;
    if (vmsig_linux_symbol(&li, "_stext", &stext) < 0) {
        die("no _stext in VMCOREINFO");
    }

    /* ---- cpu.regs_us: vmsig, running and paused ---- */
    static vmsig_reply rep;
    double *rv = calloc((size_t)n_regs, sizeof(double)), *rr = calloc((size_t)n_regs, sizeof(double));
    double *rg = calloc((size_t)n_regs, sizeof(double));
    if (!rv || !rr || !rg) {
        die("out of memory");
    }
    const char *regs_note = NULL;
    int nrv = 0, nrr = 0, nrg = 0;
    blog("cpu.regs_us: vmsig (running, then paused)");
    for (int i = -10; i < n_regs; i++) {
        uint64_t t0 = now_ns();
        int r = regs_call(c, ep, &rep);
        uint64_t t1 = now_ns();
        if (r < 0) {
            regs_note = r == -EPERM ? "vmsig: CMD_CPU refused (grant lacks CPU)"
                      : r == -EOPNOTSUPP ? "vmsig: the server does not support CMD_CPU"
                                         : "vmsig: CMD_CPU REGS failed";
            blog("%s: %s", regs_note, strerror(-r));
            break;
        }
        if (i >= 0) rr[nrr++] = (double)(t1 - t0) / 1e3;
    }
    vmsig_client_vm(c, ep, VMSIG_VM_STOP, NULL);

    /* ---- va.read_gbps: vmsig by VA vs vmsig by PA (VM paused) ---- */
    uint64_t va4k = 0, pa4k = 0, vabig = 0, pabig = 0;
    const char *va_note = NULL;
    static char va_note_buf[200];
    if (find_window(map, &li, stext, stext + (1ull << 30), 1, &va4k, &pa4k) < 0) {
        va_note = "no 1 MiB window of 4 KiB pages in the kernel image";
    }
    find_window(map, &li, stext, stext + (1ull << 30), 0, &vabig, &pabig);
    uint8_t *bv = malloc(WIN), *bp = malloc(WIN), *bg = malloc(gdb_len);
    double tv[64], tp[64], tb[64], tg[16];
    int ntv = 0;
    for (int r = 0; r < reps && !va_note; r++) {
        uint64_t t0 = now_ns();
        if (vmsig_vmem_read(map, li.root, li.vmem_flags, va4k, bv, WIN) < 0) {
            die("vmsig_vmem_read of the window failed");
        }
        uint64_t t1 = now_ns();
        if (vmsig_memmap_read(map, pa4k, bp, WIN) < 0) {
            die("vmsig_memmap_read failed");
        }
        uint64_t t2 = now_ns();
        if (memcmp(bv, bp, WIN)) {
            die("virtual and physical reads differ");
        }
        tv[ntv] = (double)WIN / (double)(t1 - t0);
        tp[ntv++] = (double)WIN / (double)(t2 - t1);
    }
    int ntb = 0;
    for (int r = 0; vabig && r < reps; r++) {
        uint64_t t0 = now_ns();
        vmsig_vmem_read(map, li.root, li.vmem_flags, vabig, bv, WIN);
        tb[ntb++] = (double)WIN / (double)(now_ns() - t0);
    }
    if (!va_note) {
        snprintf(va_note_buf, sizeof(va_note_buf),
                 "1 MiB at VA 0x%" PRIx64 " (256 4 KiB pages) through swapper_pg_dir vs "
                 "vmsig_memmap_read at GPA 0x%" PRIx64, va4k, pa4k);
        va_note = va_note_buf;
    }

    /* ---- gdbstub: g and m (attaching keeps the VM stopped) ---- */
    blog("gdbstub: g packets, m packets (%zu KiB of the same VAs, scaled)", gdb_len >> 10);
    gdbc g;
    gdb_open(&g, port);
    static char gr[1 << 14];
    /*
     * The stopped vCPU both ways, in alternating blocks (so drift of the
     * machine hits both alike): CMD_CPU REGS of the VM the stub stopped,
     * then `g`; the first block of each is a warm-up.
     */
    const int blk = n_regs / 10;
    for (int b = -1; b < 10 && !regs_note; b++) {
        for (int i = 0; i < blk; i++) {
            uint64_t t0 = now_ns();
            int r = regs_call(c, ep, &rep);
            uint64_t t1 = now_ns();
            if (r < 0) {
                regs_note = "vmsig: CMD_CPU REGS failed while stopped";
                break;
            }
            if (b >= 0) rv[nrv++] = (double)(t1 - t0) / 1e3;
        }
        for (int i = 0; i < blk; i++) {
            uint64_t t0 = now_ns();
            size_t n = gdb_cmd(&g, "g", gr, sizeof(gr));
            uint64_t t1 = now_ns();
            if (n < 16 * 16) {
                die("gdb: short g reply (%zu chars)", n);
            }
            if (b >= 0) rg[nrg++] = (double)(t1 - t0) / 1e3;
        }
    }
    vmsig_wire_cpu_regs regs;
    memcpy(&regs, rep.body, sizeof(regs));
    /* gdb's rip (x86-64 g layout: 16 gprs then rip) equals REGS' */
    uint64_t grip = 0;
    for (int k = 7; k >= 0; k--) {
        grip = grip << 8 | (uint64_t)(hexv(gr[16 * 16 + 2 * k]) << 4 | hexv(gr[16 * 16 + 2 * k + 1]));
    }
    if (!regs_note && grip != regs.rip) {
        die("gdb's rip 0x%" PRIx64 " differs from CMD_CPU's 0x%" PRIx64, grip, regs.rip);
    }
    int ntg = 0;
    for (int r = 0; r < reps_gdb && va4k; r++) {
        uint64_t t0 = now_ns();
        for (size_t off = 0; off < gdb_len; off += GDB_M) {
            gdb_mread(&g, va4k + off, bg + off, GDB_M);
        }
        tg[ntg++] = (double)gdb_len / (double)(now_ns() - t0);
        if (memcmp(bg, bp, gdb_len)) {
            die("gdbstub m bytes differ from vmsig's");
        }
    }
    close(g.fd);

    char gnote[200];
    snprintf(gnote, sizeof(gnote), "gdbstub m packets of %u bytes (virtual, the vCPU's paging), "
             "%zu KiB of the same VAs, scaled", GDB_M, gdb_len >> 10);
    bench_row rows[] = {
        { .name = "cpu.regs_us", .unit = "us", .vmsig = med(rv, nrv), .vmsig_p99 = nrv ? stat_p99(rv, (size_t)nrv) : NAN,
          .peer = "gdbstub", .peer_value = med(rg, nrg), .peer_p99 = nrg ? stat_p99(rg, (size_t)nrg) : NAN,
          .lower_better = 1, .target = "vmsig <= 0.5x gdbstub g (ratio >= 2)", .target_ratio = 2,
          .target_abs = NAN,
          .note = regs_note ? regs_note : "CMD_CPU REGS of vCPU 0 vs the g packet, the VM stopped by the attached gdbstub, in alternating blocks",
          .samples_vmsig = nrv, .samples_peer = nrg,
          .extra_name = "vmsig_running_us", .extra_value = med(rr, nrr) },
        { .name = "va.read_gbps", .unit = "GB/s", .vmsig = med(tv, ntv), .vmsig_p99 = NAN,
          .peer = "pa", .peer_value = med(tp, ntv), .peer_p99 = NAN,
          .target = "vmsig >= 0.5x its physical read", .target_ratio = 0.5, .target_abs = NAN,
          .note = va_note, .samples_vmsig = ntv, .samples_peer = ntv,
          .extra_name = "large_pages_gbps", .extra_value = med(tb, ntb) },
        { .name = "va.read_gbps", .unit = "GB/s", .vmsig = med(tv, ntv), .vmsig_p99 = NAN,
          .peer = "gdbstub", .peer_value = med(tg, ntg), .peer_p99 = NAN,
          .target = "vmsig >= 100x gdbstub m", .target_ratio = 100, .target_abs = NAN,
          .note = gnote, .samples_vmsig = ntv, .samples_peer = ntg },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        bench_emit(&rows[i]);
    }
    free(rv);
    free(rr);
    free(rg);
    free(bv);
    free(bp);
    free(bg);
    vmsig_memmap_unref(map);
    vmsig_client_close(c);
    return 0;
}
