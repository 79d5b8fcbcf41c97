/*
 * bench-snap.c - vmsig-bench snap: in-memory snapshots (CMD_SNAPSHOT) of a
 * booted guest against QEMU's own internal snapshots (QMP snapshot-save /
 * snapshot-load jobs on a qcow2 disk) and against memcpy, in one run.
 *
 *   vmsig-bench [--quick] snap --vmsig SOCK --qmp SOCK --qcow2 FILE [--ram-size BYTES]
 *
 * --vmsig: the e2e guest with -object vmsig (grant with SNAPSHOT), a disk
 * attached read-only; --qmp: the same guest on a second QEMU, to which the
 * bench attaches a writable qcow2 disk made in FILE (an empty file), node
 * "disk0", that holds the internal snapshots. Each VM is stopped while the
 * other one is measured.
 *
 * Rows: snap.restore_ms (vs qmp-snapshot-load, after the guest ran 1 s),
 * snap.restore_full_ms (every page, vs memcpy of the guest's RAM size),
 * snap.save_ms (vs qmp-snapshot-save), snap.reset_loop_hz (RESTORE + run
 * cycles per second, the guest checked).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vmsig/vmsig_client.h>

#include "bench.h"

#define GUEST_COUNTER 0x0c800008ull /* scripts/guest: u32, +1 per poll (0.1 s) */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vmsig-bench snap: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static double ms_since(uint64_t t0)
{
    return (double)(now_ns() - t0) / 1e6;
}

/* ------------------------------------------------------------ vmsig side */

typedef struct vside {
    vmsig_client *c;
    vmsig_wire_snap_result last;
} vside;

/* Take what the calls queued (RUNSTATE, EV_SNAPSHOT, MEMCTX: auto_map keeps
 * the newest map): a reset loop must not fill the client's bounded queue. */
static void vdrain(vside *v)
{
    vmsig_msg m;
    while (vmsig_client_next(v->c, &m, 0) == 0) {
    }
}

static int vsnap(vside *v, uint32_t op, uint32_t then, uint32_t flags, const char *name)
{
    vmsig_event cmd = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_SNAPSHOT };
    static vmsig_reply rep;

    cmd.u.snapshot = (vmsig_wire_snapshot){ .op = op, .then = then, .flags = flags };
    snprintf(cmd.u.snapshot.name, sizeof(cmd.u.snapshot.name), "%s", name);
    int r = vmsig_client_call(v->c, &cmd, &rep, 60000);
    if (r < 0) {
        die("CMD_SNAPSHOT op %u '%s': %s (%s)", op, name, strerror(-r),
            rep.len && memchr(rep.body, 0, rep.len) ? (const char *)rep.body : "");
    }
    memset(&v->last, 0, sizeof(v->last));
    memcpy(&v->last, rep.body, rep.len < sizeof(v->last) ? rep.len : sizeof(v->last));
    vdrain(v);
    return r;
}

/* The guest's counter through the current (newest) map. */
static uint32_t vcounter(vside *v)
{
    vmsig_memmap *m = vmsig_client_memmap(v->c);
    uint32_t x;
    if (!m || vmsig_memmap_read(m, GUEST_COUNTER, &x, sizeof(x)) < 0) {
        die("cannot read the guest's counter through the mapping");
    }
    vmsig_memmap_unref(m);
    return x;
}

static void vrun(vside *v, uint32_t op)
{
    vmsig_wire_vminfo vi;
    int r = vmsig_client_vm(v->c, 0, op, op == VMSIG_VM_QUERY ? &vi : NULL);
    if (r < 0) {
        die("CMD_VM %u: %s", op, strerror(-r));
    }
}

/* The guest runs: its counter moves within 10 s. */
static void valive(vside *v, const char *when)
{
    uint32_t c0 = vcounter(v);
    for (int i = 0; i < 100; i++) {
        sleep_ms(100);
        if (vcounter(v) != c0) {
            return;
        }
    }
    die("the guest does not run %s (counter stays %u)", when, c0);
}

/* ------------------------------------------------------------- QMP side */

typedef struct qmp {
    int fd;
    FILE *in;
    char *line;
    size_t cap;
} qmp;

static const char *qline(qmp *q)
{
    if (getline(&q->line, &q->cap, q->in) < 0) {
        die("QMP: connection closed");
    }
    return q->line;
}

static void qsend(qmp *q, const char *json)
{
    size_t n = strlen(json), off = 0;
    while (off < n) {
        ssize_t w = write(q->fd, json + off, n - off);
        if (w <= 0) {
            die("QMP: write: %s", strerror(errno));
        }
        off += (size_t)w;
    }
}

/* Send, return the reply line (events before it are skipped). */
static const char *qcmd(qmp *q, const char *json)
{
    const char *l;
    qsend(q, json);
    while (strncmp(l = qline(q), "{\"return\"", 9)) {
        if (!strncmp(l, "{\"error\"", 8)) {
            die("QMP: %s -> %s", json, l);
        }
    }
    return l;
}

static void qconnect(qmp *q, const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    memset(q, 0, sizeof(*q));
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        die("QMP: connect %s: %s", path, strerror(errno));
    }
    q->in = fdopen(dup(q->fd), "r");
    qline(q); /* greeting */
    qcmd(q, "{\"execute\":\"qmp_capabilities\"}\n");
}

/* Wait for job `id` to conclude; dies if it failed. */
static void qwait_job(qmp *q, const char *id)
{
    char want[64];
    snprintf(want, sizeof(want), "\"%s\"", id);
    for (;;) {
        const char *l = qline(q);
        if (strstr(l, "JOB_STATUS_CHANGE") && strstr(l, want) && strstr(l, "\"concluded\"")) {
            break;
        }
    }
    const char *jobs = qcmd(q, "{\"execute\":\"query-jobs\"}\n");
    if (strstr(jobs, "\"error\"")) {
        die("QMP job %s failed: %s", id, jobs);
    }
    char json[128];
    snprintf(json, sizeof(json), "{\"execute\":\"job-dismiss\",\"arguments\":{\"id\":\"%s\"}}\n", id);
    qcmd(q, json);
}

/*
 * The QMP VM's disk: a qcow2 made in `file` (which exists, empty) by QEMU
 * itself (blockdev-create: the pinned build has no qemu-img), node "disk0",
 * attached writable to a virtio-blk device, where savevm keeps RAM and
 * device state.
 */
static void qattach_qcow2(qmp *q, const char *file, uint64_t size)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"file\","
             "\"node-name\":\"disk0-file\",\"filename\":\"%s\"}}\n", file);
    qcmd(q, json);
    snprintf(json, sizeof(json),
             "{\"execute\":\"blockdev-create\",\"arguments\":{\"job-id\":\"mk\","
             "\"options\":{\"driver\":\"qcow2\",\"file\":\"disk0-file\",\"size\":%" PRIu64 "}}}\n",
             size);
    qcmd(q, json);
    qwait_job(q, "mk");
    qcmd(q, "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"qcow2\","
            "\"node-name\":\"disk0\",\"file\":\"disk0-file\"}}\n");
    qcmd(q, "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"virtio-blk-pci\","
            "\"id\":\"vd0\",\"drive\":\"disk0\"}}\n");
}

/* Run a snapshot-save/-load/-delete job; ms from the command to its
 * JOB_STATUS_CHANGE "concluded"; dies if the job failed. */
static double qjob(qmp *q, const char *cmd, const char *tag)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"execute\":\"%s\",\"arguments\":{\"job-id\":\"vb\",\"tag\":\"%s\",%s"
             "\"devices\":[\"disk0\"]}}\n",
             cmd, tag, strcmp(cmd, "snapshot-delete") ? "\"vmstate\":\"disk0\"," : "");
    uint64_t t0 = now_ns();
    qcmd(q, json);
    qwait_job(q, "vb");
    return ms_since(t0);
}

/* ---------------------------------------------------------------- rows */

static double med(double *v, int n)
{
    return n ? stat_median(v, (size_t)n) : NAN;
}

int bench_snap_main(const bench_opts *o, int argc, char **argv)
{
    const char *vpath = NULL, *qpath = NULL, *qcow2 = NULL;
    uint64_t ram_size = 256ull << 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--vmsig")) vpath = argv[i + 1];
        else if (!strcmp(argv[i], "--qmp")) qpath = argv[i + 1];
        else if (!strcmp(argv[i], "--qcow2")) qcow2 = argv[i + 1];
        else if (!strcmp(argv[i], "--ram-size")) ram_size = strtoull(argv[i + 1], NULL, 0);
        else die("unknown option %s", argv[i]);
    }
    if (!vpath || !qpath || !qcow2) {
        die("need --vmsig, --qmp and --qcow2");
    }
    const int q = o->quick;
    const int n_save = q ? 3 : 5, n_rest = q ? 5 : 15, n_full = q ? 3 : 7, n_cp = q ? 5 : 15;
    const int n_loop = q ? 100 : 500, n_qsave = q ? 2 : 3, n_qload = q ? 3 : 5;

    int err = 0;
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = vpath,
                                .auto_map = 1 };
    vside v = { .c = vmsig_client_connect(&cfg, &err) };
    if (!v.c) {
        die("connect %s: %s", vpath, strerror(-err));
    }
    if (!(vmsig_client_welcome(v.c)->features & VMSIG_FEAT_SNAPSHOT)) {
        die("the vmsig server does not offer VMSIG_FEAT_SNAPSHOT");
    }
    for (int i = 0; i < 100 && !vmsig_client_memmap(v.c); i++) {
        vmsig_msg m;
        vmsig_client_next(v.c, &m, 100);
    }
    vmsig_memmap *m0 = vmsig_client_memmap(v.c);
    if (!m0) {
        die("no MEMCTX from %s", vpath);
    }
    vmsig_memmap_unref(m0);
    qmp qm;
    qconnect(&qm, qpath);
    qattach_qcow2(&qm, qcow2, 64ull << 20);

    /* ---- vmsig, with the QMP VM stopped ---- */
    qcmd(&qm, "{\"execute\":\"stop\"}\n");
    double *sv = calloc(64, sizeof(double)), *rv = calloc(64, sizeof(double));
    double *fv = calloc(64, sizeof(double)), *cv = calloc(64, sizeof(double));
    double *qs = calloc(64, sizeof(double)), *ql = calloc(64, sizeof(double));
    double stopped_rest = 0, pages_rest = 0;
    for (int i = 0; i < n_save; i++) {
        uint64_t t0 = now_ns();
        vsnap(&v, VMSIG_SNAP_SAVE, VMSIG_SNAP_THEN_KEEP, 0, "bench-save");
        sv[i] = ms_since(t0);
    }
    vsnap(&v, VMSIG_SNAP_DELETE, 0, 0, "bench-save");
    /* the state to go back to, saved paused so its counter is known */
    vrun(&v, VMSIG_VM_STOP);
    uint32_t c0 = vcounter(&v);
    vsnap(&v, VMSIG_SNAP_SAVE, VMSIG_SNAP_THEN_RUN, 0, "bench");
    for (int i = 0; i < n_rest; i++) {
        sleep_ms(1000);
        uint64_t t0 = now_ns();
        vsnap(&v, VMSIG_SNAP_RESTORE, VMSIG_SNAP_THEN_RUN, 0, "bench");
        rv[i] = ms_since(t0);
        stopped_rest += (double)v.last.stopped_ns / 1e6;
        pages_rest += (double)v.last.pages;
        /* right after: the saved counter, or one poll on */
        uint32_t c = vcounter(&v);
        if (c - c0 > 1) {
            die("after RESTORE the counter is %u, saved %u", c, c0);
        }
    }
    valive(&v, "after the restores");
    for (int i = 0; i < n_full; i++) {
        uint64_t t0 = now_ns();
        vsnap(&v, VMSIG_SNAP_RESTORE, VMSIG_SNAP_THEN_RUN, VMSIG_SNAP_F_FULL, "bench");
        fv[i] = ms_since(t0);
        if (!v.last.full) {
            die("RESTORE --full did not copy every page");
        }
    }
    /* reset loop: RESTORE+run back to back; the state checked every 50 */
    uint64_t tl = now_ns();
    for (int i = 0; i < n_loop; i++) {
        vsnap(&v, VMSIG_SNAP_RESTORE, VMSIG_SNAP_THEN_RUN, 0, "bench");
        if (i % 50 == 49) {
            uint32_t c = vcounter(&v);
            if (c - c0 > 1) {
                die("reset loop %d: counter %u, saved %u", i, c, c0);
            }
        }
    }
    double loop_hz = n_loop / ((double)(now_ns() - tl) / 1e9);
    valive(&v, "after the reset loop");
    vsnap(&v, VMSIG_SNAP_DELETE, 0, 0, "bench");

    /* memcpy of the guest's RAM size, the floor of a full restore */
    char *a = malloc(ram_size), *b = malloc(ram_size);
    if (!a || !b) {
        die("no memory for the memcpy peer");
    }
    memset(a, 1, ram_size);
    memset(b, 2, ram_size);
    for (int i = 0; i < n_cp; i++) {
        uint64_t t0 = now_ns();
        memcpy(b, a, ram_size);
        cv[i] = ms_since(t0);
        a[i] ^= b[ram_size - 1 - (size_t)i]; /* keep the copies live */
    }
    free(a);
    free(b);

    /* ---- QMP internal snapshots, with the vmsig VM stopped ---- */
    vrun(&v, VMSIG_VM_STOP);
    qcmd(&qm, "{\"execute\":\"cont\"}\n");
    char tag[32];
    for (int i = 0; i < n_qsave; i++) {
        snprintf(tag, sizeof(tag), "bench%d", i);
        qs[i] = qjob(&qm, "snapshot-save", tag);
    }
    for (int i = 0; i < n_qload; i++) {
        sleep_ms(1000);
        ql[i] = qjob(&qm, "snapshot-load", "bench0");
    }
    for (int i = 0; i < n_qsave; i++) {
        snprintf(tag, sizeof(tag), "bench%d", i);
        qjob(&qm, "snapshot-delete", tag);
    }
    qcmd(&qm, "{\"execute\":\"stop\"}\n");
    vrun(&v, VMSIG_VM_CONT);

    char rnote[256], fnote[200], lnote[256];
    snprintf(rnote, sizeof(rnote),
             "RESTORE (then run) after the guest ran 1 s, client round trip; %.0f pages copied "
             "back and %.2f ms with the vCPUs stopped on average; peer: snapshot-load job of an "
             "internal qcow2 snapshot, to JOB concluded",
             pages_rest / n_rest, stopped_rest / n_rest);
    snprintf(fnote, sizeof(fnote), "RESTORE --full (every page of %" PRIu64 " MiB) vs one memcpy of "
             "that size in this process", ram_size >> 20);
    snprintf(lnote, sizeof(lnote), "%d RESTORE+run cycles back to back; the counter checked to "
             "be the saved one every 50, the guest seen running after; no peer", n_loop);
    bench_row rows[] = {
        { .name = "snap.restore_ms", .unit = "ms", .vmsig = med(rv, n_rest),
          .vmsig_p99 = stat_p99(rv, (size_t)n_rest), .peer = "qmp-snapshot-load",
          .peer_value = med(ql, n_qload), .peer_p99 = NAN, .lower_better = 1,
          .target = "vmsig <= 0.05x QMP snapshot-load (ratio >= 20)", .target_ratio = 20,
          .target_abs = NAN, .note = rnote, .samples_vmsig = n_rest, .samples_peer = n_qload },
        { .name = "snap.restore_full_ms", .unit = "ms", .vmsig = med(fv, n_full), .vmsig_p99 = NAN,
          .peer = "memcpy", .peer_value = med(cv, n_cp), .peer_p99 = NAN, .lower_better = 1,
          .target = "vmsig <= 2x memcpy (ratio >= 0.5)", .target_ratio = 0.5, .target_abs = NAN,
          .note = fnote, .samples_vmsig = n_full, .samples_peer = n_cp },
        { .name = "snap.save_ms", .unit = "ms", .vmsig = med(sv, n_save), .vmsig_p99 = NAN,
          .peer = "qmp-snapshot-save", .peer_value = med(qs, n_qsave), .peer_p99 = NAN,
          .lower_better = 1, .target = NULL, .target_ratio = NAN, .target_abs = NAN,
          .note = "SAVE of the running guest (client round trip) vs snapshot-save job to "
                  "concluded (RAM and devices into the qcow2)",
          .samples_vmsig = n_save, .samples_peer = n_qsave },
        { .name = "snap.reset_loop_hz", .unit = "Hz", .vmsig = loop_hz, .vmsig_p99 = NAN,
          .peer = NULL, .peer_value = NAN, .peer_p99 = NAN, .lower_better = 0, .target = NULL,
          .target_ratio = NAN, .target_abs = NAN, .note = lnote, .samples_vmsig = n_loop },
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        bench_emit(&rows[i]);
    }
    free(sv);
    free(rv);
    free(fv);
    free(cv);
    free(qs);
    free(ql);
    fclose(qm.in);
    close(qm.fd);
    free(qm.line);
    vmsig_client_close(v.c);
    return 0;
}
