/*
 * bench-vm.c - rows against one running QEMU (started by bench/run):
 *
 *   vmsig-bench [--quick] vm --pid PID --qmp QMP.sock --vmsig VMSIG.sock
 *       --gdb PORT --gpa GPA --size BYTES --ram-size BYTES --tmp DIR [--endpoint N]
 *
 * QEMU is expected stopped (-S) with guest RAM in a memfd (the mapping
 * named memfd:memory-backend-memfd of --ram-size bytes in /proc/PID/maps,
 * file offset == guest-physical address, true for pc with < 3.5 GiB).
 *
 * Order matters: the gdbstub stops the VM when a debugger attaches, so the
 * VM rows (which cont/stop) and the other memory peers run first, and the
 * gdbstub rows last.
 *
 * [GPA, GPA+size) is filled with a pattern first (pwrite through
 * /proc/PID/mem: every 8-byte word holds its own guest-physical address
 * xor PATTERN), so every page is touched and every reader's result can be
 * checked: a read that returns the wrong bytes fails the run instead of
 * producing a number.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vmsig/vmsig_client.h>
#include "bench.h"

#define PATTERN UINT64_C(0x5a17c0de00000000)
#define IO_TIMEOUT_MS 20000
/* vm.stop_event_us: time the vCPU gets to run between cont and the timed
 * stop, the same for both methods (right after cont, SeaBIOS takes the BQL
 * often, and a stop sent then waits for it). */
#define QUERY_BLOCK 25 /* query samples per method, back to back */
#define QUERY_WARM 2   /* ... of which the first are not counted */
#define SETTLE_US 2000

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "vmsig-bench: vm: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

/*
 * Page-aligned, as guest RAM is: glibc's memcpy from a page-aligned source
 * into a destination 16 bytes past a page (what malloc returns for a block
 * this large) runs at under half speed here, so every buffer of the copy
 * rows is page-aligned and the peers copy between buffers aligned alike.
 */
static void *page_alloc(size_t n)
{
    void *p = NULL;

    if (posix_memalign(&p, 4096, n) != 0) {
        die("out of memory (%zu bytes)", n);
    }
    return p;
}

static int wait_fd(int fd, short ev, int ms)
{
    struct pollfd p = { .fd = fd, .events = ev };
    int r;

    do {
        r = poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    return r;
}

static void write_all(int fd, const void *buf, size_t n, const char *who)
{
    size_t put = 0;

    while (put < n) {
        ssize_t r = write(fd, (const char *)buf + put, n - put);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            die("%s: write: %s", who, strerror(errno));
        }
        put += (size_t)r;
    }
}

/* ------------------------------------------------------------------ QMP */

typedef struct qmp {
    int fd;
    char *buf;      /* bytes read, not yet returned */
    size_t len, cap;
    char *line;     /* last line returned */
    size_t line_cap;
} qmp;

/* Next line (without \r\n), or die after IO_TIMEOUT_MS. */
static const char *qmp_line(qmp *q)
{
    for (;;) {
        char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - q->buf);
            if (n + 1 > q->line_cap) {
                q->line_cap = (n + 1) * 2;
                q->line = realloc(q->line, q->line_cap);
            }
            memcpy(q->line, q->buf, n);
            q->line[n] = 0;
            if (n && q->line[n - 1] == '\r') {
                q->line[n - 1] = 0;
            }
            memmove(q->buf, nl + 1, q->len - n - 1);
            q->len -= n + 1;
            return q->line;
        }
        if (q->cap - q->len < 65536) {
            q->cap = q->cap ? q->cap * 2 : 1 << 20;
            q->buf = realloc(q->buf, q->cap);
        }
        if (wait_fd(q->fd, POLLIN, IO_TIMEOUT_MS) <= 0) {
            die("QMP: no answer in %d ms", IO_TIMEOUT_MS);
        }
        ssize_t r = read(q->fd, q->buf + q->len, q->cap - q->len);
        if (r <= 0) {
            die("QMP: connection closed");
        }
        q->len += (size_t)r;
    }
}

/* The name of the event on this line, or NULL. */
static int qmp_is_event(const char *line, const char *name)
{
    const char *p = strstr(line, "\"event\"");
    if (!p) {
        return 0;
    }
    p += 7;
    while (*p == ' ' || *p == ':') {
        p++;
    }
    return *p == '"' && !strncmp(p + 1, name, strlen(name)) && p[1 + strlen(name)] == '"';
}

static int qmp_is_reply(const char *line)
{
    return !strncmp(line, "{\"return\"", 9) || !strncmp(line, "{\"error\"", 8);
}

static void qmp_send(qmp *q, const char *json)
{
    write_all(q->fd, json, strlen(json), "QMP");
}

/* Send and return the reply line (events before it are dropped). */
static const char *qmp_cmd(qmp *q, const char *json)
{
    const char *l;

    qmp_send(q, json);
    while (!qmp_is_reply(l = qmp_line(q))) {
    }
    if (!strncmp(l, "{\"error\"", 8)) {
        die("QMP: %s -> %s", json, l);
    }
    return l;
}

static void qmp_connect(qmp *q, const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };

    memset(q, 0, sizeof(*q));
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        die("QMP: connect %s: %s", path, strerror(errno));
    }
    qmp_line(q); /* greeting */
    qmp_cmd(q, "{\"execute\":\"qmp_capabilities\"}\n");
}

/* Run one command and wait for its reply and for event `ev`. Events from
 * before the command are discarded first (a query-status round trip flushes
 * them: QMP output is in order). Returns ns from send until the event. */
static uint64_t qmp_cmd_event(qmp *q, const char *json, const char *ev)
{
    int got_reply = 0, got_ev = 0;
    uint64_t t0, t_ev = 0;

    qmp_cmd(q, "{\"execute\":\"query-status\"}\n");
    t0 = now_ns();
    qmp_send(q, json);
    while (!got_reply || !got_ev) {
        const char *l = qmp_line(q);
        if (qmp_is_reply(l)) {
            if (!strncmp(l, "{\"error\"", 8)) {
                die("QMP: %s -> %s", json, l);
            }
            got_reply = 1;
        } else if (!got_ev && qmp_is_event(l, ev)) {
            t_ev = now_ns();
            got_ev = 1;
        }
    }
    return t_ev - t0;
}

static int qmp_running(qmp *q)
{
    return strstr(qmp_cmd(q, "{\"execute\":\"query-status\"}\n"), "\"running\": true") != NULL;
}

/* ------------------------------------------------------------ observer */

/*
 * A second vmsig control that only watches, on its own thread, blocked in
 * vmsig_client_next like a QMP client blocked in read: it notes when the
 * RUNSTATE it waits for arrives. (The commanding control cannot: its
 * vmsig_client_call returns events only after the reply.)
 */
typedef struct observer {
    vmsig_client *c;
    pthread_t th;
    int want_running;      /* the RUNSTATE.running awaited */
    int armed, seen, quit; /* accessed with __atomic */
    uint64_t t_seen;
} observer;

static void *observer_main(void *opaque)
{
    observer *o = opaque;
    vmsig_msg m;
    while (!__atomic_load_n(&o->quit, __ATOMIC_ACQUIRE)) {
        if (vmsig_client_next(o->c, &m, 100) != 0) {
            continue;
        }
        if (m.ev.kind != VMSIG_EV_RUNSTATE || (m.ev.flags & VMSIG_F_SNAPSHOT) ||
            !__atomic_load_n(&o->armed, __ATOMIC_ACQUIRE) ||
            (int)m.ev.u.seam.running != o->want_running) {
            continue;
        }
        o->t_seen = now_ns();
        __atomic_store_n(&o->armed, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&o->seen, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void observer_arm(observer *o, int want_running)
{
    o->want_running = want_running;
    __atomic_store_n(&o->seen, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&o->armed, 1, __ATOMIC_RELEASE);
}

/* 0 once the awaited RUNSTATE was seen, -ETIMEDOUT after 5 s. */
static int observer_wait(observer *o)
{
    for (int i = 0; i < 500000; i++) {
        if (__atomic_load_n(&o->seen, __ATOMIC_ACQUIRE)) {
            return 0;
        }
        if (i > 1000) {
            usleep(10);
        }
    }
    __atomic_store_n(&o->armed, 0, __ATOMIC_RELEASE);
    return -ETIMEDOUT;
}

/* --------------------------------------------------------------- gdbstub */

typedef struct gdb {
    int fd;
    int noack;
    char in[16384];
    size_t inlen;
    char pkt[8192];
} gdb;

static void gdb_send(gdb *g, const char *payload, size_t n)
{
    unsigned sum = 0;
    char tail[4];

    if (n + 4 > sizeof(g->pkt)) {
        die("gdb: packet too big");
    }
    g->pkt[0] = '$';
    memcpy(g->pkt + 1, payload, n);
    for (size_t i = 0; i < n; i++) {
        sum += (unsigned char)payload[i];
    }
    snprintf(tail, sizeof(tail), "#%02x", sum & 0xff);
    memcpy(g->pkt + 1 + n, tail, 3);
    write_all(g->fd, g->pkt, n + 4, "gdb");
}

static int gdb_getc(gdb *g)
{
    static size_t pos;

    if (pos >= g->inlen) {
        if (wait_fd(g->fd, POLLIN, IO_TIMEOUT_MS) <= 0) {
            die("gdb: no answer in %d ms", IO_TIMEOUT_MS);
        }
        ssize_t r = read(g->fd, g->in, sizeof(g->in));
        if (r <= 0) {
            die("gdb: connection closed");
        }
        g->inlen = (size_t)r;
        pos = 0;
    }
    return (unsigned char)g->in[pos++];
}

/* Receive one packet's payload into out (NUL-terminated); returns length.
 * Skips acks; acks the packet unless in no-ack mode. */
static size_t gdb_recv(gdb *g, char *out, size_t cap)
{
    int c;
    size_t n = 0;
    unsigned sum = 0;

    while ((c = gdb_getc(g)) != '$') {
        if (c == '-') {
            die("gdb: stub asked for a retransmission");
        }
    }
    while ((c = gdb_getc(g)) != '#') {
        if (n + 1 >= cap) {
            die("gdb: reply too big");
        }
        out[n++] = (char)c;
        sum += (unsigned)c;
    }
    char cs[3] = { (char)gdb_getc(g), (char)gdb_getc(g), 0 };
    if (strtoul(cs, NULL, 16) != (sum & 0xff)) {
        die("gdb: bad checksum");
    }
    out[n] = 0;
    if (!g->noack) {
        write_all(g->fd, "+", 1, "gdb");
    }
    return n;
}

static size_t gdb_cmd(gdb *g, const char *payload, char *out, size_t cap)
{
    gdb_send(g, payload, strlen(payload));
    return gdb_recv(g, out, cap);
}

static void gdb_connect(gdb *g, int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;
    char r[8192];

    memset(g, 0, sizeof(*g));
    g->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (g->fd < 0 || connect(g->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        die("gdb: connect 127.0.0.1:%d: %s", port, strerror(errno));
    }
    setsockopt(g->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    gdb_cmd(g, "qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+", r, sizeof(r));
    blog("gdbstub qSupported: %s", r);
    if (strstr(r, "QStartNoAckMode+")) {
        gdb_cmd(g, "QStartNoAckMode", r, sizeof(r));
        if (!strcmp(r, "OK")) {
            g->noack = 1;
        }
    }
    gdb_cmd(g, "?", r, sizeof(r));
    gdb_cmd(g, "Qqemu.PhyMemMode:1", r, sizeof(r));
    if (strcmp(r, "OK")) {
        die("gdb: Qqemu.PhyMemMode:1 -> %s", r);
    }
}

static int hexval(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Read len (<= 2048) bytes at gpa. */
static void gdb_read(gdb *g, uint64_t gpa, void *buf, size_t len)
{
    char cmd[64];
    static char r[8192];

    snprintf(cmd, sizeof(cmd), "m%" PRIx64 ",%zx", gpa, len);
    size_t n = gdb_cmd(g, cmd, r, sizeof(r));
    if (n != 2 * len) {
        die("gdb: %s -> %.16s (%zu chars)", cmd, r, n);
    }
    for (size_t i = 0; i < len; i++) {
        ((uint8_t *)buf)[i] = (uint8_t)(hexval(r[2 * i]) << 4 | hexval(r[2 * i + 1]));
    }
}

static void gdb_write(gdb *g, uint64_t gpa, const void *buf, size_t len)
{
    static char cmd[8192];
    char r[64];
    static const char hx[] = "0123456789abcdef";
    int n = snprintf(cmd, sizeof(cmd), "M%" PRIx64 ",%zx:", gpa, len);

    for (size_t i = 0; i < len; i++) {
        cmd[n++] = hx[((const uint8_t *)buf)[i] >> 4];
        cmd[n++] = hx[((const uint8_t *)buf)[i] & 15];
    }
    gdb_send(g, cmd, (size_t)n);
    gdb_recv(g, r, sizeof(r));
    if (strcmp(r, "OK")) {
        die("gdb: M%" PRIx64 ",%zx -> %s", gpa, len, r);
    }
}

/* Largest M packet QEMU 7.2 takes: its line buffer is 4096 bytes,
 * "M<addr>,<len>:" plus two hex digits per byte must fit. */
#define GDB_READ_MAX 2048u
#define GDB_WRITE_MAX 2032u

/* ---------------------------------------------------------------- helpers */

static void fill_pattern(uint64_t *w, uint64_t gpa, size_t len)
{
    for (size_t i = 0; i < len / 8; i++) {
        w[i] = (gpa + 8 * i) ^ PATTERN;
    }
}

/* Check a few words of a buffer that should hold the pattern for gpa.
 * Returns 0, or -1 with the problem in msg (if msg) or fatal (if not). */
static int check_pattern_msg(const char *who, const void *buf, uint64_t gpa, size_t len,
                             char *msg, size_t msglen)
{
    const uint64_t *w = buf;
    size_t n = len / 8, idx[] = { 0, 1, n / 3, n / 2, n - 1 };

    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        uint64_t want = (gpa + 8 * idx[i]) ^ PATTERN;
        if (w[idx[i]] != want) {
            if (!msg) {
                die("%s: wrong data at gpa 0x%" PRIx64 ": 0x%016" PRIx64 ", want 0x%016" PRIx64,
                    who, gpa + 8 * idx[i], w[idx[i]], want);
            }
            snprintf(msg, msglen, "%s: wrong data at gpa 0x%" PRIx64 ": 0x%016" PRIx64
                     ", want 0x%016" PRIx64, who, gpa + 8 * idx[i], w[idx[i]], want);
            return -1;
        }
    }
    return 0;
}

static void check_pattern(const char *who, const void *buf, uint64_t gpa, size_t len)
{
    check_pattern_msg(who, buf, gpa, len, NULL, 0);
}

static uint64_t find_ram_hva(int pid, uint64_t ram_size)
{
    char path[64], line[512];
    FILE *f;
    uint64_t found = 0;

    snprintf(path, sizeof(path), "/proc/%d/maps", pid);
    if (!(f = fopen(path, "r"))) {
        die("%s: %s", path, strerror(errno));
    }
    while (fgets(line, sizeof(line), f)) {
        unsigned long long lo, hi, off;
        if (!strstr(line, "memfd:") || sscanf(line, "%llx-%llx %*s %llx", &lo, &hi, &off) != 3) {
            continue;
        }
        if (hi - lo == ram_size && off == 0) {
            found = lo;
            break;
        }
    }
    fclose(f);
    if (!found) {
        die("no memfd mapping of %" PRIu64 " bytes in %s", ram_size, path);
    }
    return found;
}

static void pread_all(int fd, void *buf, size_t len, uint64_t off, const char *who)
{
    size_t got = 0;

    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r <= 0) {
            die("%s: pread: %s", who, r ? strerror(errno) : "EOF");
        }
        got += (size_t)r;
    }
}

static void pwrite_all(int fd, const void *buf, size_t len, uint64_t off, const char *who)
{
    size_t put = 0;

    while (put < len) {
        ssize_t r = pwrite(fd, (const char *)buf + put, len - put, (off_t)(off + put));
        if (r <= 0) {
            die("%s: pwrite: %s", who, r ? strerror(errno) : "EOF");
        }
        put += (size_t)r;
    }
}

static double gbps(size_t bytes, uint64_t ns)
{
    return (double)bytes / (double)ns; /* bytes/ns == GB/s */
}

/* A latency series: n samples in us. */
typedef struct series {
    double *v;
    int n;
} series;

static series series_new(int n)
{
    series s = { calloc((size_t)n, sizeof(double)), 0 };
    if (!s.v) {
        die("out of memory");
    }
    return s;
}

static double s_med(series *s)
{
    return s->n ? stat_median(s->v, (size_t)s->n) : NAN;
}

static double s_p99(series *s)
{
    return s->n ? stat_p99(s->v, (size_t)s->n) : NAN;
}

/* ------------------------------------------------------------------ main */

int bench_vm_main(const bench_opts *o, int argc, char **argv)
{
    const char *qmp_path = NULL, *vmsig_path = NULL, *tmp = "/tmp";
    int pid = 0, port = 0;
    uint32_t ep = 0;
    uint64_t gpa = 16u << 20, size = 256u << 20, ram_size = 512u << 20;

    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--pid")) pid = atoi(v);
        else if (!strcmp(k, "--qmp")) qmp_path = v;
        else if (!strcmp(k, "--vmsig")) vmsig_path = v;
        else if (!strcmp(k, "--gdb")) port = atoi(v);
        else if (!strcmp(k, "--gpa")) gpa = strtoull(v, NULL, 0);
        else if (!strcmp(k, "--size")) size = strtoull(v, NULL, 0);
        else if (!strcmp(k, "--ram-size")) ram_size = strtoull(v, NULL, 0);
        else if (!strcmp(k, "--tmp")) tmp = v;
        else if (!strcmp(k, "--endpoint")) ep = (uint32_t)atoi(v);
        else die("unknown option %s", k);
    }
    if (!pid || !qmp_path || !vmsig_path || !port) {
        die("need --pid, --qmp, --vmsig and --gdb");
    }
    const int q = o->quick;
    const int n_query = q ? 300 : 3000, n_stop = q ? 20 : 200, reps_read = q ? 3 : 9;
    const int reps_slow = q ? 2 : 5, n_write = q ? 200 : 2000;
    const size_t xp_len = 64u << 10, gdb_len = q ? 1u << 20 : 4u << 20;
    const size_t bulk_len = q ? 32u << 20 : 128u << 20;

    /* Touch and fill the range through /proc/PID/mem. */
    uint64_t hva = find_ram_hva(pid, ram_size);
    char mempath[64];
    snprintf(mempath, sizeof(mempath), "/proc/%d/mem", pid);
    int memfd = open(mempath, O_RDWR | O_CLOEXEC);
    if (memfd < 0) {
        die("%s: %s", mempath, strerror(errno));
    }
    uint8_t *src = page_alloc(size), *dst = page_alloc(size);
    fill_pattern((uint64_t *)src, gpa, size);
    memset(dst, 0, size);
    blog("filling %" PRIu64 " MiB of guest RAM at gpa 0x%" PRIx64 " (hva 0x%" PRIx64 ")",
         size >> 20, gpa, hva + gpa);
    pwrite_all(memfd, src, size, hva + gpa, "fill");

    qmp qm;
    qmp_connect(&qm, qmp_path);

    /* vmsig client: may not be there yet (the module is being finished). */
    const char *vm_note = NULL, *mem_note = NULL, *memw_note = NULL;
    static char vm_note_buf[256], mem_note_buf[256], memw_note_buf[256];
    vmsig_client_config ccfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = vmsig_path,
                                 .auto_map = 1 };
    int err = 0;
    vmsig_client *c = vmsig_client_connect(&ccfg, &err);
    vmsig_wire_vminfo vi;
    if (!c) {
        snprintf(vm_note_buf, sizeof(vm_note_buf),
                 "vmsig: cannot connect to the QEMU object's socket: %s", strerror(-err));
        vm_note = mem_note = memw_note = vm_note_buf;
    } else if ((err = vmsig_client_vm(c, ep, VMSIG_VM_QUERY, &vi)) < 0) {
        snprintf(vm_note_buf, sizeof(vm_note_buf), "vmsig: CMD_VM query failed: %s",
                 strerror(-err));
        vm_note = vm_note_buf;
    }
    if (vm_note) {
        blog("%s", vm_note);
    }

    /* MEMCTX: wait (bounded) for the map. */
    vmsig_memmap *map = NULL;
    if (c) {
        uint64_t deadline = now_ns() + 3000000000ull;
        while (!(map = vmsig_client_memmap(c)) && now_ns() < deadline) {
            vmsig_msg m;
            int r = vmsig_client_next(c, &m, 500);
            if (r == 0 && m.ev.kind == VMSIG_EV_MEMCTX && m.ev.u.memctx.status) {
                snprintf(mem_note_buf, sizeof(mem_note_buf), "vmsig: MEMCTX unavailable: %.104s",
                         m.ev.u.memctx.why);
                break;
            }
            if (r < 0 && r != -ETIMEDOUT) {
                snprintf(mem_note_buf, sizeof(mem_note_buf), "vmsig: waiting for MEMCTX: %s",
                         strerror(-r));
                break;
            }
        }
        if (!map) {
            if (!mem_note_buf[0]) {
                snprintf(mem_note_buf, sizeof(mem_note_buf),
                         "vmsig: no MEMCTX event within 3 s of attaching");
            }
            mem_note = mem_note_buf;
            blog("%s", mem_note);
        }
        /* From here on only SEAM events: MEMWRITE_DONE notifications would
         * otherwise pile up in the client while we measure. */
        vmsig_sub sub = { .source_mask = 1u << VMSIG_SRC_SEAM, .endpoint_mask = 1ull << ep };
        vmsig_client_subscribe(c, &sub);
    }

    /* ---- vm.query_rtt_us ---- */
    series qv = series_new(n_query), qq = series_new(n_query);
    blog("vm.query_rtt_us");
    /*
     * In blocks: QUERY_BLOCK QMP queries back to back, then QUERY_BLOCK vmsig
     * queries, and so on, so each method is measured hot and neither waits
     * for what QEMU still does after answering the other (QMP's monitor
     * bottom halves, for one); the first QUERY_WARM of each block are not
     * counted. Sample by sample alternation measured the leftovers instead.
     */
    for (int b = -1; qq.n < n_query || (!vm_note && qv.n < n_query); b++) {
        for (int k = 0; k < QUERY_BLOCK; k++) {
            uint64_t t0 = now_ns();
            qmp_cmd(&qm, "{\"execute\":\"query-status\"}\n");
            uint64_t t1 = now_ns();
            if (b >= 0 && k >= QUERY_WARM && qq.n < n_query) qq.v[qq.n++] = (double)(t1 - t0) / 1e3;
        }
        for (int k = 0; k < QUERY_BLOCK && !vm_note; k++) {
            uint64_t t0 = now_ns();
            int r = vmsig_client_vm(c, ep, VMSIG_VM_QUERY, &vi);
            uint64_t t1 = now_ns();
            if (r < 0) {
                snprintf(vm_note_buf, sizeof(vm_note_buf), "vmsig: CMD_VM query failed: %s",
                         strerror(-r));
                vm_note = vm_note_buf;
                blog("%s", vm_note);
                qv.n = 0;
            } else if (b >= 0 && k >= QUERY_WARM && qv.n < n_query) {
                qv.v[qv.n++] = (double)(t1 - t0) / 1e3;
            }
        }
    }

    /* ---- vm.stop_event_us: alternate stop/cont, interleaving the two ---- */
    series sv = series_new(n_stop), sq = series_new(n_stop), sr = series_new(n_stop);
    const char *stop_note = NULL;
    static char stop_note_buf[256];
    blog("vm.stop_event_us");
    observer obs = { 0 };
    if (!vm_note) {
        vmsig_client_config ocfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = vmsig_path,
                                     .sub = { .source_mask = 1u << VMSIG_SRC_SEAM,
                                              .endpoint_mask = 1ull << ep } };
        obs.c = vmsig_client_connect(&ocfg, &err);
        if (!obs.c) {
            snprintf(stop_note_buf, sizeof(stop_note_buf),
                     "vmsig: observer cannot connect: %s", strerror(-err));
            stop_note = stop_note_buf;
        } else if (pthread_create(&obs.th, NULL, observer_main, &obs) != 0) {
            die("pthread_create");
        }
    }
    for (int i = -3; i < n_stop; i++) {
        /* QMP: cont (untimed), stop (timed until the STOP event). */
        if (!qmp_running(&qm)) {
            qmp_cmd_event(&qm, "{\"execute\":\"cont\"}\n", "RESUME");
        }
        usleep(SETTLE_US);
        uint64_t dt = qmp_cmd_event(&qm, "{\"execute\":\"stop\"}\n", "STOP");
        if (i >= 0) sq.v[sq.n++] = (double)dt / 1e3;
        if (vm_note || stop_note) {
            continue;
        }
        /* vmsig: cont (untimed), stop (timed until the observer holds the
         * RUNSTATE paused event). */
        for (int phase = 0; phase < 2 && !stop_note; phase++) {
            uint32_t op = phase ? VMSIG_VM_STOP : VMSIG_VM_CONT;
            vmsig_msg m;
            int r;
            if (phase) {
                usleep(SETTLE_US); /* the same settling time after cont as QMP gets */
            }
            observer_arm(&obs, phase ? 0 : 1);
            uint64_t t0 = now_ns();
            r = vmsig_client_vm(c, ep, op, NULL);
            uint64_t t_reply = now_ns();
            if (r == 0) {
                r = observer_wait(&obs);
            }
            while (vmsig_client_next(c, &m, 0) == 0) {
                /* drop what the commanding control queued */
            }
            if (r < 0) {
                snprintf(stop_note_buf, sizeof(stop_note_buf),
                         "vmsig: CMD_VM %s or its RUNSTATE event failed: %s",
                         phase ? "stop" : "cont", strerror(-r));
                stop_note = stop_note_buf;
                blog("%s", stop_note);
                sv.n = 0;
            } else if (phase && i >= 0) {
                sv.v[sv.n++] = (double)(obs.t_seen - t0) / 1e3;
                sr.v[sr.n++] = (double)(t_reply - t0) / 1e3;
            }
        }
    }
    if (!vm_note) {
        __atomic_store_n(&obs.quit, 1, __ATOMIC_RELEASE);
        pthread_join(obs.th, NULL);
        vmsig_client_close(obs.c);
    }
    if (qmp_running(&qm)) {
        qmp_cmd(&qm, "{\"execute\":\"stop\"}\n");
    }

    /* ---- mem.read_gbps ---- */
    double rd_vmsig = NAN, rd_memcpy, rd_proc, rd_pmem, rd_xp, rd_gdb;
    double tmpv[64];
    blog("mem.read_gbps: memcpy, vmsig, proc-pid-mem");
    {
        uint8_t *csrc = page_alloc(size);
        memcpy(csrc, src, size);
        for (int r = 0; r < reps_read; r++) {
            uint64_t t0 = now_ns();
            memcpy(dst, csrc, size);
            tmpv[r] = gbps(size, now_ns() - t0);
        }
        rd_memcpy = stat_median(tmpv, (size_t)reps_read);
        free(csrc);
    }
    if (map) {
        const void *p = vmsig_memmap_ptr(map, gpa, size);
        for (int r = 0; r < reps_read; r++) {
            memset(dst, 0, 4096);
            uint64_t t0 = now_ns();
            if (p) {
                memcpy(dst, p, size);
            } else if ((err = vmsig_memmap_read(map, gpa, dst, size)) < 0) {
                die("vmsig_memmap_read: %s", strerror(-err));
            }
            tmpv[r] = gbps(size, now_ns() - t0);
            if (check_pattern_msg("vmsig memmap", dst, gpa, size, mem_note_buf,
                                  sizeof(mem_note_buf)) < 0) {
                mem_note = mem_note_buf;
                blog("%s", mem_note);
                break;
            }
        }
        if (!mem_note) {
            rd_vmsig = stat_median(tmpv, (size_t)reps_read);
        }
    }
    for (int r = 0; r < reps_read; r++) {
        memset(dst, 0, 4096);
        uint64_t t0 = now_ns();
        pread_all(memfd, dst, size, hva + gpa, "proc-pid-mem");
        tmpv[r] = gbps(size, now_ns() - t0);
        check_pattern("proc-pid-mem", dst, gpa, size);
    }
    rd_proc = stat_median(tmpv, (size_t)reps_read);

    blog("mem.read_gbps: qmp-pmemsave");
    for (int r = 0; r < reps_slow; r++) {
        char file[512], cmd[1024];
        snprintf(file, sizeof(file), "%s/pmemsave.bin", tmp);
        snprintf(cmd, sizeof(cmd),
                 "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":%" PRIu64 ",\"size\":%" PRIu64
                 ",\"filename\":\"%s\"}}\n", gpa, size, file);
        memset(dst, 0, 4096);
        uint64_t t0 = now_ns();
        qmp_cmd(&qm, cmd);
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("%s: %s", file, strerror(errno));
        pread_all(fd, dst, size, 0, "pmemsave file");
        close(fd);
        tmpv[r] = gbps(size, now_ns() - t0);
        unlink(file);
        check_pattern("qmp-pmemsave", dst, gpa, size);
    }
    rd_pmem = stat_median(tmpv, (size_t)reps_slow);

    blog("mem.read_gbps: qmp-xp (%zu KiB, scaled)", xp_len >> 10);
    for (int r = 0; r < reps_slow + 1; r++) {
        char cmd[256], want[32];
        snprintf(cmd, sizeof(cmd),
                 "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
                 "\"xp /%zuxg 0x%" PRIx64 "\"}}\n", xp_len / 8, gpa);
        uint64_t t0 = now_ns();
        const char *l = qmp_cmd(&qm, cmd);
        tmpv[r] = gbps(xp_len, now_ns() - t0);
        snprintf(want, sizeof(want), "0x%016" PRIx64, (uint64_t)((gpa + xp_len - 8) ^ PATTERN));
        if (!strstr(l, want)) die("qmp-xp: last word %s not in the output", want);
    }
    rd_xp = stat_median(tmpv, (size_t)reps_slow + 1);

    /* ---- writes through vmsig and /proc/PID/mem ---- */
    series w8v = series_new(n_write), w8p = series_new(n_write), w8g = series_new(n_write);
    series w4v = series_new(n_write), w4p = series_new(n_write), w4g = series_new(n_write);
    double bulk_v[16], bulk_p[16];
    int nbulk_v = 0;
    blog("mem.write*: vmsig, proc-pid-mem");
    /* Writes put the pattern back, so the range stays checkable. */
    for (int i = -20; i < n_write; i++) {
        uint64_t a8 = gpa + 4096u * (uint64_t)(i & 1023), a4 = gpa + (1u << 20) + 4096u * (uint64_t)(i & 255);
        uint64_t t0, t1;
        if (!memw_note) {
            t0 = now_ns();
            int r = vmsig_client_memwrite(c, ep, a8, src + (a8 - gpa), 8);
            t1 = now_ns();
            if (r < 0) {
                snprintf(memw_note_buf, sizeof(memw_note_buf), "vmsig: CMD_MEMWRITE failed: %s",
                         strerror(-r));
                memw_note = memw_note_buf;
                blog("%s", memw_note);
            } else if (i >= 0) {
                w8v.v[w8v.n++] = (double)(t1 - t0) / 1e3;
            }
        }
        if (!memw_note) {
            t0 = now_ns();
            int r = vmsig_client_memwrite(c, ep, a4, src + (a4 - gpa), 4096);
            t1 = now_ns();
            if (r < 0) {
                snprintf(memw_note_buf, sizeof(memw_note_buf), "vmsig: CMD_MEMWRITE 4 KiB failed: %s",
                         strerror(-r));
                memw_note = memw_note_buf;
                blog("%s", memw_note);
                w8v.n = w4v.n = 0;
            } else if (i >= 0) {
                w4v.v[w4v.n++] = (double)(t1 - t0) / 1e3;
            }
        }
        t0 = now_ns();
        pwrite_all(memfd, src + (a8 - gpa), 8, hva + a8, "proc-pid-mem");
        t1 = now_ns();
        if (i >= 0) w8p.v[w8p.n++] = (double)(t1 - t0) / 1e3;
        t0 = now_ns();
        pwrite_all(memfd, src + (a4 - gpa), 4096, hva + a4, "proc-pid-mem");
        t1 = now_ns();
        if (i >= 0) w4p.v[w4p.n++] = (double)(t1 - t0) / 1e3;
    }
    blog("mem.write_bulk_gbps (%zu MiB in 1 MiB writes)", bulk_len >> 20);
    const char *bulk_note = NULL;
    static char bulk_note_buf[256];
    for (int r = 0; r < reps_read; r++) {
        uint64_t t0 = now_ns();
        for (size_t off = 0; off < bulk_len; off += 1u << 20) {
            pwrite_all(memfd, src + off, 1u << 20, hva + gpa + off, "proc-pid-mem");
        }
        bulk_p[r] = gbps(bulk_len, now_ns() - t0);
        if (memw_note || bulk_note) {
            continue;
        }
        t0 = now_ns();
        int e = 0;
        for (size_t off = 0; off < bulk_len && !e; off += 1u << 20) {
            e = vmsig_client_memwrite(c, ep, gpa + off, src + off, 1u << 20);
        }
        if (e < 0) {
            snprintf(bulk_note_buf, sizeof(bulk_note_buf), "vmsig: CMD_MEMWRITE 1 MiB failed: %s",
                     strerror(-e));
            bulk_note = bulk_note_buf;
            blog("%s", bulk_note);
            nbulk_v = 0;
            continue;
        }
        bulk_v[nbulk_v++] = gbps(bulk_len, now_ns() - t0);
    }

    /* ---- gdbstub (attaching stops the VM; it is stopped already) ---- */
    blog("gdbstub: read (%zu KiB in %u-byte m packets, scaled), write", gdb_len >> 10,
         GDB_READ_MAX);
    gdb g;
    gdb_connect(&g, port);
    for (int r = 0; r < reps_slow + 1; r++) {
        memset(dst, 0, 4096);
        uint64_t t0 = now_ns();
        for (size_t off = 0; off < gdb_len; off += GDB_READ_MAX) {
            gdb_read(&g, gpa + off, dst + off, GDB_READ_MAX);
        }
        tmpv[r] = gbps(gdb_len, now_ns() - t0);
        check_pattern("gdbstub", dst, gpa, gdb_len);
    }
    rd_gdb = stat_median(tmpv, (size_t)reps_slow + 1);
    for (int i = -20; i < n_write; i++) {
        uint64_t a8 = gpa + 4096u * (uint64_t)(i & 1023), a4 = gpa + (1u << 20) + 4096u * (uint64_t)(i & 255);
        uint64_t t0 = now_ns();
        gdb_write(&g, a8, src + (a8 - gpa), 8);
        uint64_t t1 = now_ns();
        if (i >= 0) w8g.v[w8g.n++] = (double)(t1 - t0) / 1e3;
        t0 = now_ns();
        for (size_t off = 0; off < 4096; off += GDB_WRITE_MAX) {
            size_t l = 4096 - off < GDB_WRITE_MAX ? 4096 - off : GDB_WRITE_MAX;
            gdb_write(&g, a4 + off, src + (a4 - gpa) + off, l);
        }
        t1 = now_ns();
        if (i >= 0) w4g.v[w4g.n++] = (double)(t1 - t0) / 1e3;
    }
    /* Everything written must still read back as the pattern. */
    pread_all(memfd, dst, size, hva + gpa, "proc-pid-mem");
    check_pattern("after writes", dst, gpa, size);
    check_pattern("after writes (4k area)", dst + (1u << 20), gpa + (1u << 20), 1u << 20);

    /* ---- rows ---- */
    char gdb_note[160], xp_note[160];
    snprintf(gdb_note, sizeof(gdb_note),
             "gdbstub read %zu KiB with %u-byte m packets (Qqemu.PhyMemMode:1, %s), scaled",
             gdb_len >> 10, GDB_READ_MAX, g.noack ? "no-ack mode" : "with acks: the stub has no no-ack mode");
    snprintf(xp_note, sizeof(xp_note), "HMP xp /%zuxg via human-monitor-command: %zu KiB, scaled",
             xp_len / 8, xp_len >> 10);
    bench_row rows[] = {
        { .name = "vm.query_rtt_us", .unit = "us", .vmsig = s_med(&qv), .vmsig_p99 = s_p99(&qv),
          .peer = "qmp", .peer_value = s_med(&qq), .peer_p99 = s_p99(&qq), .lower_better = 1,
          .target = "vmsig <= 1/10 of QMP (ratio >= 10)", .target_ratio = 10, .target_abs = NAN,
          .note = vm_note ? vm_note : "CMD_VM query vs QMP query-status",
          .samples_vmsig = qv.n, .samples_peer = qq.n },
        { .name = "vm.stop_event_us", .unit = "us", .vmsig = s_med(&sv), .vmsig_p99 = s_p99(&sv),
          .peer = "qmp", .peer_value = s_med(&sq), .peer_p99 = s_p99(&sq), .lower_better = 1,
          .target = "vmsig <= 1/5 of QMP (ratio >= 5)", .target_ratio = 5, .target_abs = NAN,
          .note = vm_note ? vm_note : stop_note ? stop_note : "stop sent -> RUNSTATE paused (seen by a second, observing control) / STOP event in hand",
          .samples_vmsig = sv.n, .samples_peer = sq.n,
          .extra_name = "vmsig_reply_us", .extra_value = s_med(&sr) },
        { .name = "mem.read_gbps", .unit = "GB/s", .vmsig = rd_vmsig, .vmsig_p99 = NAN,
          .peer = "memcpy", .peer_value = rd_memcpy, .peer_p99 = NAN, .target = "vmsig >= 0.8x memcpy", .target_ratio = 0.8,
          .target_abs = NAN, .note = mem_note ? mem_note : "memcpy is the ceiling",
          .samples_vmsig = map ? reps_read : 0, .samples_peer = reps_read },
        { .name = "mem.read_gbps", .unit = "GB/s", .vmsig = rd_vmsig, .vmsig_p99 = NAN,
          .peer = "proc-pid-mem", .peer_value = rd_proc, .peer_p99 = NAN, .target = "vmsig >= 3x /proc/<pid>/mem", .target_ratio = 3,
          .target_abs = NAN, .note = mem_note,
          .samples_vmsig = map ? reps_read : 0, .samples_peer = reps_read },
        { .name = "mem.read_gbps", .unit = "GB/s", .vmsig = rd_vmsig, .vmsig_p99 = NAN,
          .peer = "gdbstub", .peer_value = rd_gdb, .peer_p99 = NAN, .target_ratio = NAN,
          .target_abs = NAN, .note = mem_note ? mem_note : gdb_note,
          .samples_vmsig = map ? reps_read : 0, .samples_peer = reps_slow + 1 },
        { .name = "mem.read_gbps", .unit = "GB/s", .vmsig = rd_vmsig, .vmsig_p99 = NAN,
          .peer = "qmp-pmemsave", .peer_value = rd_pmem, .peer_p99 = NAN, .target = "vmsig >= 10x pmemsave", .target_ratio = 10,
          .target_abs = NAN, .note = mem_note ? mem_note : "pmemsave to a file in --tmp, then read it",
          .samples_vmsig = map ? reps_read : 0, .samples_peer = reps_slow },
        { .name = "mem.read_gbps", .unit = "GB/s", .vmsig = rd_vmsig, .vmsig_p99 = NAN,
          .peer = "qmp-xp", .peer_value = rd_xp, .peer_p99 = NAN, .target_ratio = NAN,
          .target_abs = NAN, .note = mem_note ? mem_note : xp_note,
          .samples_vmsig = map ? reps_read : 0, .samples_peer = reps_slow + 1 },
        { .name = "mem.write8_rtt_us", .unit = "us", .vmsig = s_med(&w8v), .vmsig_p99 = s_p99(&w8v),
          .peer = "gdbstub", .peer_value = s_med(&w8g), .peer_p99 = s_p99(&w8g), .lower_better = 1,
          .target = "no slower than gdbstub", .target_ratio = 1, .target_abs = NAN, .note = memw_note,
          .samples_vmsig = w8v.n, .samples_peer = w8g.n },
        { .name = "mem.write8_rtt_us", .unit = "us", .vmsig = s_med(&w8v), .vmsig_p99 = s_p99(&w8v),
          .peer = "proc-pid-mem", .peer_value = s_med(&w8p), .peer_p99 = s_p99(&w8p),
          .lower_better = 1, .target_ratio = NAN, .target_abs = NAN, .note = memw_note,
          .samples_vmsig = w8v.n, .samples_peer = w8p.n },
        { .name = "mem.write4k_rtt_us", .unit = "us", .vmsig = s_med(&w4v), .vmsig_p99 = s_p99(&w4v),
          .peer = "gdbstub", .peer_value = s_med(&w4g), .peer_p99 = s_p99(&w4g), .lower_better = 1,
          .target = "<= 1/5 of gdbstub", .target_ratio = 5, .target_abs = NAN,
          .note = memw_note ? memw_note : "gdbstub: 3 M packets (2032+2032+32 bytes, the 4 KiB packet buffer limit)",
          .samples_vmsig = w4v.n, .samples_peer = w4g.n },
        { .name = "mem.write4k_rtt_us", .unit = "us", .vmsig = s_med(&w4v), .vmsig_p99 = s_p99(&w4v),
          .peer = "proc-pid-mem", .peer_value = s_med(&w4p), .peer_p99 = s_p99(&w4p),
          .lower_better = 1, .target_ratio = NAN, .target_abs = NAN, .note = memw_note,
          .samples_vmsig = w4v.n, .samples_peer = w4p.n },
        { .name = "mem.write_bulk_gbps", .unit = "GB/s",
          .vmsig = nbulk_v ? stat_median(bulk_v, (size_t)nbulk_v) : NAN, .vmsig_p99 = NAN,
          .peer = "proc-pid-mem", .peer_value = stat_median(bulk_p, (size_t)reps_read),
          .peer_p99 = NAN, .target = ">= 0.5x pwrite to /proc/<pid>/mem", .target_ratio = 0.5, .target_abs = NAN,
          .note = memw_note ? memw_note : bulk_note ? bulk_note : "1 MiB writes (CMD_MEMWRITE max) vs 1 MiB pwrite",
          .samples_vmsig = nbulk_v, .samples_peer = reps_read },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        bench_emit(&rows[i]);
    }
    if (map) {
        vmsig_memmap_unref(map);
    }
    if (c) {
        vmsig_client_close(c);
    }
    close(g.fd);
    close(qm.fd);
    close(memfd);
    free(src);
    free(dst);
    return 0;
}
