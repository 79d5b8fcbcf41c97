/*
 * bench-core.c - rows that need no QEMU.
 *
 * core.dispatch_ns.K: publish N SEAM events (RUNSTATE) into a core with K
 *   in-process controls subscribed to them; vmsig = median over repetitions
 *   of (elapsed / (N * K)), ns per event per control. Peer "fnptr-loop": the
 *   floor, N * K indirect calls of a callback that does what the benchmark's
 *   on_event does (count), through a volatile table so nothing is inlined.
 *
 * socket.rtt_us: CMD_NOP round trips through vmsig_client_call to a core in
 *   a forked child (vmsig_loop_run + vmsig_core_listen); peer "unix-pingpong":
 *   a 32-byte frame (the wire header's size) written and echoed back over a
 *   UNIX stream socketpair between two processes. Median and p99 of single
 *   round trips.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmsig/vmsig_client.h>
#include <vmsig/vmsig_core.h>
#include "bench.h"

/* ---------------------------------------------------------------- core */

static int count_event(void *opaque, const vmsig_event *up)
{
    (*(volatile uint64_t *)opaque)++;
    return 0;
}

typedef int (*event_fn)(void *opaque, const vmsig_event *up);

static void core_row(const bench_opts *o, unsigned k)
{
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION };
    vmsig_grant g = { .principal = 1, .endpoint_mask = ~0ull, .caps = VMSIG_CAP_ALL };
    vmsig_inproc *ic[64];
    uint64_t counter = 0;
    int err = 0;
    const unsigned reps = o->quick ? 9 : 31;
    const unsigned n = (o->quick ? 200000u : 1000000u) / k;
    double v[64], p[64];
    char name[64];

    vmsig_core *core = vmsig_core_new(&cfg, &err);
    if (!core) {
        blog("vmsig_core_new: %s", strerror(-err));
        exit(1);
    }
    for (unsigned i = 0; i < k; i++) {
        vmsig_inproc_cfg icfg = {
            .on_event = count_event,
            .opaque = &counter,
            .sub = { .source_mask = 1u << VMSIG_SRC_SEAM, .endpoint_mask = 1 },
        };
        ic[i] = vmsig_inproc_new(core, &icfg, &g, &err);
        if (!ic[i]) {
            blog("vmsig_inproc_new: %s", strerror(-err));
            exit(1);
        }
    }
    vmsig_event ev;
    for (unsigned r = 0; r <= reps; r++) { /* rep 0 warms up */
        uint64_t before = counter, t0 = now_ns();
        for (unsigned i = 0; i < n; i++) {
            memset(&ev, 0, offsetof(vmsig_event, u) + sizeof(ev.u.seam));
            ev.dir = VMSIG_DIR_UP;
            ev.kind = VMSIG_EV_RUNSTATE;
            ev.u.seam.state = (i & 1) ? VMSIG_RS_RUNNING : VMSIG_RS_PAUSED;
            ev.u.seam.running = i & 1;
            ev.ool = NULL;
            ev.ool_len = 0;
            vmsig_core_publish(core, &ev);
        }
        uint64_t t1 = now_ns();
        if (counter - before != (uint64_t)n * k) {
            blog("core: %u controls got %llu events, expected %llu", k,
                 (unsigned long long)(counter - before), (unsigned long long)n * k);
            exit(1);
        }
        if (r) {
            v[r - 1] = (double)(t1 - t0) / ((double)n * k);
        }
    }
    for (unsigned i = 0; i < k; i++) {
        vmsig_inproc_free(ic[i]);
    }
    vmsig_core_free(core);

    /* The floor: the same number of indirect calls, nothing else. */
    event_fn table[64];
    for (unsigned i = 0; i < k; i++) {
        table[i] = count_event;
    }
    event_fn *volatile tp = table;
    for (unsigned r = 0; r <= reps; r++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < n; i++) {
            ev.seq = i;
            for (unsigned j = 0; j < k; j++) {
                tp[j](&counter, &ev);
            }
        }
        uint64_t t1 = now_ns();
        if (r) {
            p[r - 1] = (double)(t1 - t0) / ((double)n * k);
        }
    }
    snprintf(name, sizeof(name), "core.dispatch_ns.%u", k);
    bench_row row = {
        .name = name, .unit = "ns/event/control",
        .vmsig = stat_median(v, reps), .vmsig_p99 = NAN,
        .peer = "fnptr-loop", .peer_value = stat_median(p, reps), .peer_p99 = NAN,
        .lower_better = 1,
        .target = "vmsig < 100 ns/event/control", .target_ratio = NAN, .target_abs = 100,
        .samples_vmsig = (int)reps, .samples_peer = (int)reps,
        .note = "peer is the floor (indirect calls only); ratio < 1 by construction",
    };
    bench_emit(&row);
}

int bench_core_main(const bench_opts *o, int argc, char **argv)
{
    static const unsigned ks[] = { 1, 8, 64 };

    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
        blog("core.dispatch_ns.%u", ks[i]);
        core_row(o, ks[i]);
    }
    return 0;
}

/* -------------------------------------------------------------- socket */

/* Pin the calling process to the which-th CPU it may run on. Both ends of
 * both round trips go on the same CPU: on this kind of machine (a 2-vCPU
 * VM) a cross-CPU wakeup costs 10-40 us, depends on where the scheduler
 * happens to put the processes and swings whole runs by 3x; on one CPU a
 * round trip is two context switches plus the syscalls, the part the
 * software controls, and it is stable. VMSIG_BENCH_NOPIN=1 turns it off.
 * Returns 1 if pinned. */
static int pin_to(int which)
{
    cpu_set_t all, one;
    int n = 0, cpu = -1;

    if (getenv("VMSIG_BENCH_NOPIN") || sched_getaffinity(0, sizeof(all), &all) < 0) {
        return 0;
    }
    for (int i = 0; i < CPU_SETSIZE; i++) {
        if (CPU_ISSET(i, &all) && n++ == which) {
            cpu = i;
        }
    }
    if (n < 2 || cpu < 0) {
        return 0;
    }
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof(one), &one) == 0;
}

static volatile sig_atomic_t server_stop;
static volatile int loop_stop;

static void on_term(int sig)
{
    loop_stop = 1;
    server_stop = 1;
}

static void serve(const char *path)
{
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION };
    char errbuf[256];
    int err = 0;
    struct sigaction sa = { .sa_handler = on_term };

    sigaction(SIGTERM, &sa, NULL);
    vmsig_grants *gr = vmsig_grants_parse("default endpoints=all caps=all\n", &err, errbuf,
                                          sizeof(errbuf));
    vmsig_core *core = gr ? vmsig_core_new(&cfg, &err) : NULL;
    if (!core || (err = vmsig_core_listen(core, path, gr)) < 0) {
        blog("server: %s %s", strerror(-err), gr ? "" : errbuf);
        _exit(1);
    }
    vmsig_loop_run(core, &loop_stop, -1);
    vmsig_core_free(core);
    vmsig_grants_free(gr);
    _exit(0);
}

static int readn(int fd, void *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int writen(int fd, const void *buf, size_t n)
{
    size_t put = 0;

    while (put < n) {
        ssize_t r = write(fd, (const char *)buf + put, n - put);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        put += (size_t)r;
    }
    return 0;
}

int bench_socket_main(const bench_opts *o, int argc, char **argv)
{
    const int n = o->quick ? 5000 : 30000, warm = 500;
    double *v = calloc((size_t)n, sizeof(double)), *p = calloc((size_t)n, sizeof(double));
    char dir[] = "/tmp/vmsig-bench-XXXXXX", path[128];
    int err = 0, status;

    if (!v || !p || !mkdtemp(dir)) {
        blog("socket: setup failed");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/core.sock", dir);

    /* vmsig: a core in another process. */
    pid_t srv = fork();
    if (srv == 0) {
        pin_to(0);
        serve(path);
    }
    int pinned = pin_to(0);
    vmsig_client *c = NULL;
    vmsig_client_config ccfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = path };
    for (int i = 0; i < 200 && !c; i++) {
        c = vmsig_client_connect(&ccfg, &err);
        if (!c) {
            usleep(10000);
        }
    }
    if (!c) {
        blog("socket: connect: %s", strerror(-err));
        kill(srv, SIGTERM);
        waitpid(srv, NULL, 0);
        return 1;
    }
    /* ping-pong partner */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return 1;
    }
    pid_t echo = fork();
    if (echo == 0) {
        char f[32];
        pin_to(0);
        close(sv[0]);
        while (readn(sv[1], f, sizeof(f)) == 0 && writen(sv[1], f, sizeof(f)) == 0) {
        }
        _exit(0);
    }
    close(sv[1]);

    /* Interleave blocks of both so drift hits both alike. */
    const int block = 500;
    int iv = 0, ip = 0;
    for (int b = -warm; iv < n || ip < n; b += block) {
        for (int i = 0; i < block; i++) {
            vmsig_event cmd = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_NOP };
            uint64_t t0 = now_ns();
            int r = vmsig_client_call(c, &cmd, NULL, 5000);
            uint64_t t1 = now_ns();
            if (r != 0) {
                blog("socket: CMD_NOP: %s", strerror(-r));
                goto out;
            }
            if (b >= 0 && iv < n) {
                v[iv++] = (double)(t1 - t0) / 1000.0;
            }
        }
        for (int i = 0; i < block; i++) {
            char f[32] = { 0 };
            uint64_t t0 = now_ns();
            if (writen(sv[0], f, sizeof(f)) < 0 || readn(sv[0], f, sizeof(f)) < 0) {
                blog("socket: ping-pong failed");
                goto out;
            }
            uint64_t t1 = now_ns();
            if (b >= 0 && ip < n) {
                p[ip++] = (double)(t1 - t0) / 1000.0;
            }
        }
    }
    {
        double vp99 = stat_p99(v, (size_t)n), pp99 = stat_p99(p, (size_t)n);
        bench_row row = {
            .name = "socket.rtt_us", .unit = "us",
            .vmsig = stat_median(v, (size_t)n), .vmsig_p99 = vp99,
            .peer = "unix-pingpong", .peer_value = stat_median(p, (size_t)n), .peer_p99 = pp99,
            .lower_better = 1,
            .target = "vmsig within 1.5x of unix-pingpong (ratio >= 0.667)",
            .target_ratio = 1 / 1.5, .target_abs = NAN,
            .samples_vmsig = n, .samples_peer = n,
            .note = pinned ? "both ends of both pairs pinned to one CPU (VMSIG_BENCH_NOPIN=1: unpinned)"
                           : "not pinned to CPUs",
        };
        bench_emit(&row);
    }
out:
    vmsig_client_close(c);
    close(sv[0]);
    kill(srv, SIGTERM);
    waitpid(srv, &status, 0);
    waitpid(echo, NULL, 0);
    unlink(path);
    rmdir(dir);
    free(v);
    free(p);
    return iv == n ? 0 : 1;
}
