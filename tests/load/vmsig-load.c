/*
 * vmsig-load - load generator for a vmsig server (the QEMU object, or any
 * vmsig core on a UNIX socket), for tests/e2e/load.sh and docs/benchmarks.md.
 * Each subcommand prints one result line of key=value pairs (the first word
 * names the subcommand) and exits 0 when it could measure, 1 on a setup
 * failure, 77 when it needs root and is not root. It asserts nothing: the
 * caller compares the numbers with what docs/protocol.rst promises.
 *
 *   vmsig-load -s SOCK burst N
 *       open N connections, then write N HELLOs, then read: how many got
 *       WELCOME, REPLY/BYE(-EMFILE), another BYE, or a bare EOF.
 *   vmsig-load -s SOCK flood [--flood N] [--flood-uid U] [--clients C]
 *                            [--seconds S] [--timeout MS] [--helper PATH]
 *       (root) a child of uid U (65534) keeps N connections that never send
 *       HELLO, reopening each as soon as it is closed; meanwhile C clients
 *       (uid 0) connect + CMD_VM query in a loop for S seconds with a connect
 *       timeout of MS, and `PATH -s SOCK status` runs 10 times.
 *   vmsig-load -s SOCK turns [--count N]
 *       control A pipelines N CMD_VM stop/cont; control B sends NOPs one
 *       at a time meanwhile and counts, per NOP, the RUNSTATE events (one
 *       per stop or cont of A) stamped after its send that arrive before its
 *       REPLY: how many of A's commands the server ran while B waited.
 *   vmsig-load -s SOCK fdlimit --qmp QMPSOCK --pid PID [--attach N] [--silent M]
 *       attach N controls (the first with MEMCTX), then open silent
 *       connections until one reads BYE(-EMFILE) "near its file descriptor
 *       limit" (at most M); then QMP query-status, QMP system_reset, and
 *       wait for the first control's new MEMCTX.
 *   vmsig-load -s SOCK idle N
 *       attach N controls and keep them until stdin closes (for the cost
 *       per control measurement in docs/benchmarks.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmsig/vmsig_client.h"
#include "vmsig/vmsig_wire.h"

static const char *g_sock;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
    return (double)(now_ns() - t0) / 1e6;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The p-th percentile (0..100) of v[0..n) (sorts v). */
static double pct(double *v, size_t n, double p)
{
    if (!n) {
        return 0;
    }
    qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* ---- raw connections ---- */

/* Connect; blocking (bounded by timeout_ms, also while the backlog is full)
 * or, with timeout_ms 0, non-blocking (-EAGAIN when the backlog is full).
 * The socket is non-blocking on return. */
static int sock_connect(const char *path, int timeout_ms)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (timeout_ms ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0) {
        return -errno;
    }
    if (timeout_ms) {
        struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Write all of buf, polling for room. 0 or -errno. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pf = { .fd = fd, .events = POLLOUT };
            poll(&pf, 1, 1000);
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t mk_frame(void *buf, uint16_t kind, uint64_t id, uint32_t endpoint, const void *pl,
                       uint32_t len)
{
    vmsig_wire_hdr h = { .kind = kind, .len = len, .id = id, .endpoint = endpoint };
    memcpy(buf, &h, sizeof(h));
    if (len) {
        memcpy((char *)buf + sizeof(h), pl, len);
    }
    return sizeof(h) + len;
}

static int send_hello(int fd, uint32_t source_mask)
{
    vmsig_wire_hello h = { .major = VMSIG_WIRE_MAJOR, .minor = VMSIG_WIRE_MINOR,
                           .sub = { .source_mask = source_mask,
                                    .endpoint_mask = source_mask ? ~0ull : 0 } };
    uint8_t buf[sizeof(vmsig_wire_hdr) + sizeof(h)];
    size_t n = mk_frame(buf, VMSIG_MSG_HELLO, 0, 0, &h, sizeof(h));
    return write_all(fd, buf, n);
}

/* A connection's input: frames are taken out of buf whole. Descriptors that
 * come with them are counted and closed. */
typedef struct conn {
    int fd;
    size_t n;
    unsigned fds_seen; /* descriptors received so far */
    int eof;
    uint8_t buf[16384];
} conn;

/* Read what is there (non-blocking). 1 read something, 0 nothing, -1 EOF/error. */
static int conn_fill(conn *c)
{
    if (c->n == sizeof(c->buf)) {
        return 1;
    }
    union {
        char b[CMSG_SPACE(sizeof(int) * VMSIG_WIRE_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { c->buf + c->n, sizeof(c->buf) - c->n };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                        .msg_controllen = sizeof(ctl.b) };
    ssize_t r = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        return 0;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            unsigned k = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *fds = (int *)CMSG_DATA(cm);
            for (unsigned i = 0; i < k; i++) {
                close(fds[i]);
            }
            c->fds_seen += k;
        }
    }
    if (r <= 0) {
        c->eof = 1;
        return -1;
    }
    c->n += (size_t)r;
    return 1;
}

/* The next whole frame into *h and pl (at most plmax bytes copied). 1 or 0. */
static int conn_frame(conn *c, vmsig_wire_hdr *h, void *pl, size_t plmax)
{
    if (c->n < sizeof(*h)) {
        return 0;
    }
    memcpy(h, c->buf, sizeof(*h));
    size_t whole = sizeof(*h) + h->len;
    if (whole > sizeof(c->buf)) {
        c->eof = 1; /* not a frame we can hold: treat as the end */
        return 0;
    }
    if (c->n < whole) {
        return 0;
    }
    if (pl) {
        memcpy(pl, c->buf + sizeof(*h), h->len < plmax ? h->len : plmax);
    }
    memmove(c->buf, c->buf + whole, c->n - whole);
    c->n -= whole;
    return 1;
}

/* Wait (up to timeout_ms) for c's next frame. 1, 0 on timeout, -1 on EOF. */
static int conn_wait(conn *c, vmsig_wire_hdr *h, void *pl, size_t plmax, int timeout_ms)
{
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (conn_frame(c, h, pl, plmax)) {
            return 1;
        }
        if (c->eof) {
            return -1;
        }
        int64_t left = (int64_t)(end - now_ns()) / 1000000;
        if ((int64_t)(end - now_ns()) <= 0) {
            return 0;
        }
        struct pollfd pf = { .fd = c->fd, .events = POLLIN };
        poll(&pf, 1, (int)(left > 0 ? left : 1));
        conn_fill(c);
    }
}

/* Connect and handshake; the WELCOME (or refusal) status in *status. */
static conn *attach(const char *path, uint32_t source_mask, int *status, char *why, size_t whylen)
{
    conn *c = calloc(1, sizeof(*c));
    *status = 0;
    if (why && whylen) {
        why[0] = '\0';
    }
    c->fd = sock_connect(path, 5000);
    if (c->fd < 0) {
        *status = c->fd;
        free(c);
        return NULL;
    }
    vmsig_wire_hdr h;
    uint8_t pl[sizeof(vmsig_wire_bye)];
    if (send_hello(c->fd, source_mask) < 0 || conn_wait(c, &h, pl, sizeof(pl), 5000) != 1) {
        *status = -ECONNRESET;
    } else if (h.kind != VMSIG_MSG_WELCOME) {
        *status = h.status ? h.status : -EPROTO;
        if (h.kind == VMSIG_MSG_REPLY && conn_wait(c, &h, pl, sizeof(pl), 2000) == 1) {
            /* the BYE after a refused HELLO */
        }
        if (h.kind == VMSIG_MSG_BYE && why) {
            snprintf(why, whylen, "%.*s", (int)sizeof(pl), (char *)pl);
        }
    }
    if (*status) {
        close(c->fd);
        free(c);
        return NULL;
    }
    return c;
}

static void conn_free(conn *c)
{
    if (c) {
        close(c->fd);
        free(c);
    }
}

/* ---- burst ---- */

static int cmd_burst(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: vmsig-load -s SOCK burst N\n");
        return 1;
    }
    int n = atoi(argv[1]);
    raise_nofile();
    conn **c = calloc((size_t)n, sizeof(*c));
    enum { WAIT, GOT_REPLY, DONE };
    int *st = calloc((size_t)n, sizeof(int));
    int welcome = 0, emfile_reply = 0, emfile_bye = 0, other_bye = 0, bare_eof = 0,
        connect_failed = 0, timeouts = 0, other = 0;
    char emfile_text[128] = "", other_text[128] = "";
    int other_status = 0;
    uint64_t t0 = now_ns();
    /* all connect first ... */
    for (int i = 0; i < n; i++) {
        c[i] = calloc(1, sizeof(conn));
        c[i]->fd = sock_connect(g_sock, 10000);
        if (c[i]->fd < 0) {
            connect_failed++;
            st[i] = DONE;
        }
    }
    /* ... then every HELLO ... */
    for (int i = 0; i < n; i++) {
        if (st[i] == WAIT && send_hello(c[i]->fd, 1u << VMSIG_SRC_SEAM) < 0) {
            st[i] = WAIT; /* the server may have refused it already: read below */
        }
    }
    /* ... then read every answer. */
    struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
    uint64_t end = now_ns() + 20000000000ull;
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            pf[i].fd = st[i] == DONE ? -1 : c[i]->fd;
            pf[i].events = POLLIN;
            left += st[i] != DONE;
        }
        if (!left || now_ns() > end) {
            break;
        }
        poll(pf, (nfds_t)n, 200);
        for (int i = 0; i < n; i++) {
            if (st[i] == DONE || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            conn_fill(c[i]);
            vmsig_wire_hdr h;
            char pl[sizeof(vmsig_wire_bye) + 1] = "";
            while (st[i] != DONE && conn_frame(c[i], &h, pl, sizeof(pl) - 1)) {
                if (st[i] == WAIT && h.kind == VMSIG_MSG_WELCOME) {
                    welcome++;
                    st[i] = DONE;
                } else if (st[i] == WAIT && h.kind == VMSIG_MSG_REPLY && h.status == -EMFILE) {
                    emfile_reply++;
                    st[i] = GOT_REPLY; /* its BYE follows */
                } else if (h.kind == VMSIG_MSG_BYE && h.status == -EMFILE) {
                    if (st[i] == WAIT) {
                        emfile_bye++;
                    }
                    snprintf(emfile_text, sizeof(emfile_text), "%s", pl);
                    st[i] = DONE;
                } else if (h.kind == VMSIG_MSG_BYE) {
                    other_bye++;
                    other_status = h.status;
                    snprintf(other_text, sizeof(other_text), "%s", pl);
                    st[i] = DONE;
                } else {
                    other++;
                    st[i] = DONE;
                }
            }
            if (st[i] != DONE && c[i]->eof) {
                bare_eof++; /* closed with no BYE (after a REPLY: no BYE either) */
                st[i] = DONE;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (st[i] != DONE) {
            timeouts++;
        }
    }
    double ms = ms_since(t0);
    for (int i = 0; i < n; i++) {
        if (c[i]->fd >= 0) {
            close(c[i]->fd);
        }
        free(c[i]);
    }
    printf("burst n=%d welcome=%d emfile=%d emfile_reply_bye=%d emfile_bye=%d other_bye=%d "
           "bare_eof=%d connect_failed=%d timeout=%d other=%d ms=%.0f\n",
           n, welcome, emfile_reply + emfile_bye, emfile_reply, emfile_bye, other_bye, bare_eof,
           connect_failed, timeouts, other, ms);
    if (emfile_text[0]) {
        printf("# emfile text: %s\n", emfile_text);
    }
    if (other_text[0]) {
        printf("# other bye (%d): %s\n", other_status, other_text);
    }
    free(c);
    free(st);
    free(pf);
    return 0;
}

/* ---- flood ---- */

static volatile sig_atomic_t g_term;

static void on_term(int sig)
{
    (void)sig;
    g_term = 1;
}

/* The flood child: n silent connections, each reopened when closed. */
static void flood_child(int n, int report_fd)
{
    signal(SIGTERM, on_term);
    int *fd = malloc(sizeof(int) * (size_t)n);
    struct pollfd *pf = calloc((size_t)n, sizeof(*pf));
    unsigned long opened = 0, closed = 0, refused_connect = 0;
    for (int i = 0; i < n; i++) {
        fd[i] = -1;
    }
    char buf[4096];
    while (!g_term) {
        for (int i = 0; i < n; i++) {
            if (fd[i] < 0) {
                fd[i] = sock_connect(g_sock, 0);
                if (fd[i] >= 0) {
                    opened++;
                } else {
                    refused_connect++; /* backlog full (EAGAIN): next round */
                }
            }
            pf[i].fd = fd[i];
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        poll(pf, (nfds_t)n, 10);
        for (int i = 0; i < n; i++) {
            if (fd[i] < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            ssize_t r;
            while ((r = recv(fd[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
            }
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                close(fd[i]); /* its BYE was read: reopen at once */
                fd[i] = -1;
                closed++;
            }
        }
    }
    dprintf(report_fd, "%lu %lu %lu\n", opened, closed, refused_connect);
    _exit(0);
}

typedef struct client_stats {
    int timeout_ms;
    uint64_t end;
    unsigned attempts, ok, failed;
    double max_ms;
    int last_err;
    char last_why[128];
    double *lat;
    size_t nlat, caplat;
} client_stats;

static void *client_thread(void *opaque)
{
    client_stats *s = opaque;
    while (now_ns() < s->end) {
        uint64_t t0 = now_ns();
        char why[128] = "";
        vmsig_client_config cc = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = g_sock,
                                   .timeout_ms = s->timeout_ms, .why = why, .whylen = sizeof(why) };
        int err = 0;
        vmsig_client *c = vmsig_client_connect(&cc, &err);
        int rc = err;
        if (c) {
            vmsig_wire_vminfo vi;
            rc = vmsig_client_vm(c, 0, VMSIG_VM_QUERY, &vi);
            vmsig_client_close(c);
        }
        double ms = ms_since(t0);
        s->attempts++;
        if (rc == 0) {
            s->ok++;
        } else {
            s->failed++;
            s->last_err = rc;
            snprintf(s->last_why, sizeof(s->last_why), "%s", why);
        }
        if (ms > s->max_ms) {
            s->max_ms = ms;
        }
        if (s->nlat == s->caplat) {
            s->caplat = s->caplat ? s->caplat * 2 : 256;
            s->lat = realloc(s->lat, s->caplat * sizeof(double));
        }
        s->lat[s->nlat++] = ms;
        usleep(5000);
    }
    return NULL;
}

static int cmd_flood(int argc, char **argv)
{
    int nflood = 1000, uid = 65534, nclients = 4, seconds = 8, timeout_ms = 5000;
    const char *helper = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--flood") && i + 1 < argc) {
            nflood = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--flood-uid") && i + 1 < argc) {
            uid = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--clients") && i + 1 < argc) {
            nclients = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            timeout_ms = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--helper") && i + 1 < argc) {
            helper = argv[++i];
        } else {
            fprintf(stderr, "flood: unknown argument %s\n", argv[i]);
            return 1;
        }
    }
    if (getuid() != 0) {
        printf("flood skipped=needs-root\n");
        return 77;
    }
    struct rlimit rl = { .rlim_cur = (rlim_t)nflood + 256, .rlim_max = (rlim_t)nflood + 256 };
    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    if (old.rlim_max > rl.rlim_max) {
        rl.rlim_max = old.rlim_max;
    }
    setrlimit(RLIMIT_NOFILE, &rl);
    int pfd[2];
    if (pipe(pfd) < 0) {
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (uid != 0 && (setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
                         setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)) {
            _exit(2);
        }
        flood_child(nflood, pfd[1]);
    }
    close(pfd[1]);
    usleep(1500000); /* let the flood take its places */

    client_stats *cs = calloc((size_t)nclients, sizeof(*cs));
    pthread_t *th = calloc((size_t)nclients, sizeof(*th));
    uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
    for (int i = 0; i < nclients; i++) {
        cs[i].timeout_ms = timeout_ms;
        cs[i].end = end;
        pthread_create(&th[i], NULL, client_thread, &cs[i]);
    }
    /* vmsig-helper status, 10 times, meanwhile */
    int helper_ok = 0, helper_runs = 0;
    char helper_err[300] = "";
    double helper_max = 0;
    for (int k = 0; helper && k < 10; k++) {
        uint64_t t0 = now_ns();
        int ep[2];
        if (pipe2(ep, O_CLOEXEC) < 0) {
            break;
        }
        pid_t h = fork();
        if (h == 0) {
            int dn = open("/dev/null", O_WRONLY);
            dup2(dn, 1);
            dup2(ep[1], 2);
            execl(helper, helper, "-s", g_sock, "status", (char *)NULL);
            _exit(127);
        }
        close(ep[1]);
        char eb[256];
        ssize_t en = read(ep[0], eb, sizeof(eb) - 1);
        close(ep[0]);
        int st = 0;
        waitpid(h, &st, 0);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && en > 0) {
            eb[en] = '\0';
            eb[strcspn(eb, "\n")] = '\0';
            snprintf(helper_err, sizeof(helper_err), "exit %d: %s",
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1, eb);
        }
        double ms = ms_since(t0);
        helper_runs++;
        helper_ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (ms > helper_max) {
            helper_max = ms;
        }
        usleep((useconds_t)seconds * 1000000u / 12u);
    }
    unsigned attempts = 0, ok = 0, failed = 0;
    double max_ms = 0;
    double *all = NULL;
    size_t nall = 0;
    int last_err = 0;
    char last_why[128] = "";
    for (int i = 0; i < nclients; i++) {
        pthread_join(th[i], NULL);
        attempts += cs[i].attempts;
        ok += cs[i].ok;
        failed += cs[i].failed;
        if (cs[i].max_ms > max_ms) {
            max_ms = cs[i].max_ms;
        }
        if (cs[i].failed) {
            last_err = cs[i].last_err;
            snprintf(last_why, sizeof(last_why), "%s", cs[i].last_why);
        }
        all = realloc(all, (nall + cs[i].nlat) * sizeof(double));
        memcpy(all + nall, cs[i].lat, cs[i].nlat * sizeof(double));
        nall += cs[i].nlat;
    }
    kill(pid, SIGTERM);
    char rep[128] = "";
    ssize_t r = read(pfd[0], rep, sizeof(rep) - 1);
    rep[r > 0 ? r : 0] = '\0';
    waitpid(pid, NULL, 0);
    unsigned long opened = 0, closed = 0, again = 0;
    sscanf(rep, "%lu %lu %lu", &opened, &closed, &again);
    printf("flood uid=%d flood=%d clients=%d seconds=%d timeout_ms=%d attempts=%u ok=%u failed=%u "
           "p50_ms=%.1f p99_ms=%.1f max_ms=%.1f helper_ok=%d helper_runs=%d helper_max_ms=%.0f "
           "flood_opened=%lu flood_closed=%lu flood_eagain=%lu",
           uid, nflood, nclients, seconds, timeout_ms, attempts, ok, failed, pct(all, nall, 50),
           pct(all, nall, 99), max_ms, helper_ok, helper_runs, helper_max, opened, closed, again);
    for (int i = 0; i < nclients; i++) {
        printf(" client%d=%u/%u", i, cs[i].ok, cs[i].attempts);
        free(cs[i].lat);
    }
    printf("\n");
    if (failed) {
        printf("# last failure: %s (%s)\n", strerror(-last_err), last_why);
    }
    if (helper_err[0]) {
        printf("# helper failed: %s\n", helper_err);
    }
    free(all);
    free(cs);
    free(th);
    return 0;
}

/* ---- turns ---- */

typedef struct turn_a {
    conn *c;
    int count;
    int replies, errors, first_err;
    uint64_t t_done;
    volatile int done;
} turn_a;

static void *turn_a_thread(void *opaque)
{
    turn_a *a = opaque;
    size_t one = sizeof(vmsig_wire_hdr) + sizeof(vmsig_wire_cmd);
    uint8_t *buf = malloc(one * (size_t)a->count);
    for (int i = 0; i < a->count; i++) {
        vmsig_wire_cmd cmd = { .op = (i & 1) ? VMSIG_VM_CONT : VMSIG_VM_STOP };
        mk_frame(buf + one * (size_t)i, VMSIG_CMD_VM, (uint64_t)i + 1, 0, &cmd, sizeof(cmd));
    }
    size_t off = 0, total = one * (size_t)a->count;
    while (a->replies < a->count && !a->c->eof) {
        struct pollfd pf = { .fd = a->c->fd, .events = POLLIN | (off < total ? POLLOUT : 0) };
        poll(&pf, 1, 1000);
        if (off < total && (pf.revents & POLLOUT)) {
            ssize_t n = send(a->c->fd, buf + off, total - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                off += (size_t)n;
            }
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            conn_fill(a->c);
            vmsig_wire_hdr h;
            while (conn_frame(a->c, &h, NULL, 0)) {
                if (h.kind == VMSIG_MSG_REPLY) {
                    a->replies++;
                    if (h.status) {
                        a->errors++;
                        a->first_err = a->first_err ? a->first_err : h.status;
                    }
                }
            }
        }
    }
    a->t_done = now_ns();
    a->done = 1;
    free(buf);
    return NULL;
}

static int cmd_turns(int argc, char **argv)
{
    int count = 20000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            count = atoi(argv[++i]);
        }
    }
    int st = 0;
    char why[128];
    conn *a = attach(g_sock, 1u << VMSIG_SRC_SEAM, &st, why, sizeof(why));
    conn *b = attach(g_sock, 1u << VMSIG_SRC_SEAM, &st, why, sizeof(why));
    if (!a || !b) {
        fprintf(stderr, "turns: cannot attach: %s %s\n", strerror(-st), why);
        return 1;
    }
    /* B: drain the snapshot first */
    vmsig_wire_hdr h;
    while (conn_wait(b, &h, NULL, 0, 200) == 1) {
    }
    turn_a ta = { .c = a, .count = count };
    pthread_t th;
    uint64_t t0 = now_ns();
    pthread_create(&th, NULL, turn_a_thread, &ta);
    usleep(20000); /* A's flood is in */
    size_t cap = 4096, nrtt = 0;
    double *rtt = malloc(cap * sizeof(double));
    unsigned max_between = 0, lost_max = 0, lossy = 0;
    unsigned long sum_between = 0, b_events = 0;
    uint64_t id = 1000000, last_seq = 0;
    int rc = 0;
    while (!ta.done) {
        uint8_t f[sizeof(vmsig_wire_hdr)];
        mk_frame(f, VMSIG_CMD_NOP, ++id, 0, NULL, 0);
        if (write_all(b->fd, f, sizeof(f)) < 0) {
            rc = 1;
            break;
        }
        /* After the send: if we are descheduled in between, fewer events
         * count, never more (the count is an upper-bound check). */
        uint64_t ts = now_ns();
        unsigned between = 0, lost = 0;
        for (;;) {
            int w = conn_wait(b, &h, NULL, 0, 10000);
            if (w != 1) {
                fprintf(stderr, "turns: B's NOP got no reply\n");
                rc = 1;
                goto out;
            }
            if (h.kind == VMSIG_EV_RUNSTATE) {
                b_events++;
                if (h.ts_ns >= ts) {
                    between++;
                }
                if (last_seq && h.id > last_seq + 1) {
                    lost += (unsigned)(h.id - last_seq - 1);
                }
                last_seq = h.id;
                continue;
            }
            if (h.kind == VMSIG_MSG_REPLY && h.id == id) {
                break;
            }
        }
        double ms = ms_since(ts);
        if (nrtt == cap) {
            cap *= 2;
            rtt = realloc(rtt, cap * sizeof(double));
        }
        rtt[nrtt++] = ms;
        if (lost) {
            /* B itself fell behind (its queue was full: events coalesced,
             * its input paused): not the server's fairness at stake. */
            lossy++;
            lost_max = lost > lost_max ? lost : lost_max;
            continue;
        }
        sum_between += between;
        if (between > max_between) {
            max_between = between;
        }
    }
out:
    pthread_join(th, NULL);
    double a_ms = (double)(ta.t_done - t0) / 1e6;
    double maxrtt = 0;
    for (size_t i = 0; i < nrtt; i++) {
        maxrtt = rtt[i] > maxrtt ? rtt[i] : maxrtt;
    }
    printf("turns count=%d a_replies=%d a_errors=%d a_first_err=%d a_ms=%.0f nops=%zu "
           "b_events=%lu max_between=%u mean_between=%.1f b_lossy_windows=%u b_lost_max=%u b_p50_ms=%.3f b_p99_ms=%.3f "
           "b_max_ms=%.3f\n",
           count, ta.replies, ta.errors, ta.first_err, a_ms, nrtt, b_events, max_between,
           nrtt > lossy ? (double)sum_between / (double)(nrtt - lossy) : 0.0, lossy, lost_max, pct(rtt, nrtt, 50),
           pct(rtt, nrtt, 99), maxrtt);
    free(rtt);
    conn_free(a);
    conn_free(b);
    return rc;
}

/* ---- fdlimit ---- */

/* A QMP session: greeting, qmp_capabilities. Returns the fd or -errno. */
static int qmp_open(const char *path)
{
    int fd = sock_connect(path, 5000);
    if (fd < 0) {
        return fd;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Read one line (a QMP message) into buf. Length or -1. */
static int qmp_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    while (n + 1 < len) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r <= 0) {
            return -1;
        }
        if (ch == '\n') {
            break;
        }
        buf[n++] = ch;
    }
    buf[n] = '\0';
    return (int)n;
}

/* Send one QMP command and wait for its "return" (or "error"); events are
 * skipped. 0 on return, -1 otherwise; the answer in out. */
static int qmp_cmd(int fd, const char *json, char *out, size_t outlen)
{
    if (write_all(fd, json, strlen(json)) < 0 || write_all(fd, "\n", 1) < 0) {
        return -1;
    }
    for (;;) {
        if (qmp_line(fd, out, outlen) < 0) {
            return -1;
        }
        if (strstr(out, "\"return\"")) {
            return 0;
        }
        if (strstr(out, "\"error\"")) {
            return -1;
        }
    }
}

static int count_fds(int pid, unsigned long *soft)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/fd", pid);
    int n = 0;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "ls %s 2>/dev/null | wc -l", p);
    FILE *f = popen(cmd, "r");
    if (f) {
        if (fscanf(f, "%d", &n) != 1) {
            n = -1;
        }
        pclose(f);
    }
    *soft = 0;
    snprintf(p, sizeof(p), "/proc/%d/limits", pid);
    f = fopen(p, "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            if (!strncmp(line, "Max open files", 14)) {
                sscanf(line + 14, "%lu", soft);
            }
        }
        fclose(f);
    }
    return n;
}

static int cmd_fdlimit(int argc, char **argv)
{
    const char *qmp = NULL;
    int pid = 0, nattach = 100, nsilent = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--qmp") && i + 1 < argc) {
            qmp = argv[++i];
        } else if (!strcmp(argv[i], "--pid") && i + 1 < argc) {
            pid = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--attach") && i + 1 < argc) {
            nattach = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--silent") && i + 1 < argc) {
            nsilent = atoi(argv[++i]);
        }
    }
    if (!qmp || !pid) {
        fprintf(stderr, "usage: vmsig-load -s SOCK fdlimit --qmp QMPSOCK --pid PID ...\n");
        return 1;
    }
    raise_nofile();
    unsigned long soft;
    int fds0 = count_fds(pid, &soft);
    /* the MEMCTX watcher */
    int st = 0;
    char why[128] = "";
    conn *m = attach(g_sock, (1u << VMSIG_SRC_SEAM) | (1u << VMSIG_SRC_MEMCTX), &st, why,
                     sizeof(why));
    if (!m) {
        fprintf(stderr, "fdlimit: cannot attach: %s %s\n", strerror(-st), why);
        return 1;
    }
    vmsig_wire_hdr h;
    uint8_t pl[4096];
    uint64_t gen0 = 0;
    while (conn_wait(m, &h, pl, sizeof(pl), 300) == 1) {
        if (h.kind == VMSIG_EV_MEMCTX) {
            vmsig_wire_memctx mc;
            memcpy(&mc, pl, sizeof(mc));
            gen0 = mc.generation;
        }
    }
    conn **ctl = calloc((size_t)nattach, sizeof(*ctl));
    int attached = 1, attach_refused = 0, attach_err = 0;
    for (int i = 1; i < nattach; i++) {
        ctl[i] = attach(g_sock, 1u << VMSIG_SRC_SEAM, &st, why, sizeof(why));
        if (ctl[i]) {
            attached++;
        } else {
            attach_refused++;
            attach_err = st;
        }
    }
    /* silent connections until the server says it is near its limit */
    int *sil = malloc(sizeof(int) * (size_t)nsilent);
    int nsil = 0, near = 0, other_bye = 0, bare_eof = 0, other_emfile = 0;
    char near_text[128] = "", other_text[128] = "";
    for (int i = 0; i < nsilent && !near; i++) {
        int fd = sock_connect(g_sock, 2000);
        if (fd < 0) {
            break;
        }
        sil[nsil++] = fd;
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        if (poll(&pf, 1, 20) == 1) {
            struct {
                vmsig_wire_hdr h;
                vmsig_wire_bye b;
            } bye;
            ssize_t r = recv(fd, &bye, sizeof(bye), MSG_WAITALL);
            if (r == (ssize_t)sizeof(bye) && bye.h.kind == VMSIG_MSG_BYE) {
                bye.b.text[sizeof(bye.b.text) - 1] = '\0';
                if (bye.h.status == -EMFILE && strstr(bye.b.text, "near its file descriptor")) {
                    near++;
                    snprintf(near_text, sizeof(near_text), "%s", bye.b.text);
                } else if (bye.h.status == -EMFILE) {
                    other_emfile++;
                    snprintf(other_text, sizeof(other_text), "%s", bye.b.text);
                } else {
                    other_bye++;
                    snprintf(other_text, sizeof(other_text), "%s", bye.b.text);
                }
            } else {
                bare_eof++;
            }
        }
    }
    int fds1 = count_fds(pid, &soft);
    /* QMP still answers */
    uint64_t tq = now_ns();
    int q = qmp_open(qmp);
    char line[4096] = "";
    int qmp_ok = 0;
    if (q >= 0 && qmp_line(q, line, sizeof(line)) > 0 &&
        qmp_cmd(q, "{\"execute\":\"qmp_capabilities\"}", line, sizeof(line)) == 0 &&
        qmp_cmd(q, "{\"execute\":\"query-status\"}", line, sizeof(line)) == 0) {
        qmp_ok = 1;
    }
    double qmp_ms = ms_since(tq);
    /* Run the firmware (it remaps 0xc0000-0xfffff: new MEMCTXs), so that a
     * reset changes the map back: the reset's MEMCTX must come, with fds. */
    int cont_ok = q >= 0 && qmp_cmd(q, "{\"execute\":\"cont\"}", line, sizeof(line)) == 0;
    uint64_t end = now_ns() + 1500000000ull;
    while (now_ns() < end) {
        if (conn_wait(m, &h, pl, sizeof(pl), 100) == 1 && h.kind == VMSIG_EV_MEMCTX) {
            vmsig_wire_memctx mc;
            memcpy(&mc, pl, sizeof(mc));
            gen0 = mc.generation;
        }
    }
    int reset_ok = q >= 0 && qmp_cmd(q, "{\"execute\":\"system_reset\"}", line, sizeof(line)) == 0;
    uint64_t gen1 = 0;
    int mstatus = 1;
    unsigned mfds = 0, fds_before = m->fds_seen;
    end = now_ns() + 5000000000ull;
    while (!gen1 && now_ns() < end) {
        if (conn_wait(m, &h, pl, sizeof(pl), 500) != 1) {
            if (m->eof) {
                break;
            }
            continue;
        }
        if (h.kind == VMSIG_EV_MEMCTX) {
            vmsig_wire_memctx mc;
            memcpy(&mc, pl, sizeof(mc));
            if (mc.generation > gen0) {
                gen1 = mc.generation;
                mstatus = mc.status;
                mfds = m->fds_seen - fds_before;
            }
        }
    }
    if (q >= 0) {
        close(q);
    }
    printf("fdlimit soft=%lu qemu_fds_idle=%d qemu_fds_full=%d attached=%d attach_refused=%d "
           "attach_err=%d silent=%d near_limit_bye=%d other_emfile=%d other_bye=%d bare_eof=%d "
           "qmp_ok=%d qmp_ms=%.1f cont_ok=%d reset_ok=%d memctx_gen0=%llu memctx_gen1=%llu memctx_status=%d "
           "memctx_fds=%u\n",
           soft, fds0, fds1, attached, attach_refused, attach_err, nsil, near, other_emfile,
           other_bye, bare_eof, qmp_ok, qmp_ms, cont_ok, reset_ok, (unsigned long long)gen0,
           (unsigned long long)gen1, mstatus, mfds);
    if (near_text[0]) {
        printf("# near-limit text: %s\n", near_text);
    }
    if (other_text[0]) {
        printf("# other text: %s\n", other_text);
    }
    for (int i = 0; i < nsil; i++) {
        close(sil[i]);
    }
    for (int i = 1; i < nattach; i++) {
        conn_free(ctl[i]);
    }
    conn_free(m);
    free(ctl);
    free(sil);
    return 0;
}

/* ---- idle ---- */

static int cmd_idle(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    raise_nofile();
    conn **c = calloc((size_t)n + 1, sizeof(*c));
    int ok = 0, st = 0;
    char why[128];
    for (int i = 0; i < n; i++) {
        c[i] = attach(g_sock, (1u << VMSIG_SRC_SEAM) | (1u << VMSIG_SRC_MEMCTX), &st, why,
                      sizeof(why));
        ok += c[i] != NULL;
    }
    printf("idle attached=%d\n", ok);
    fflush(stdout);
    /* keep them (reading what comes, so none is a slow reader) until stdin closes */
    struct pollfd *pf = calloc((size_t)n + 1, sizeof(*pf));
    for (;;) {
        pf[0].fd = 0;
        pf[0].events = POLLIN;
        for (int i = 0; i < n; i++) {
            pf[i + 1].fd = c[i] ? c[i]->fd : -1;
            pf[i + 1].events = POLLIN;
        }
        poll(pf, (nfds_t)n + 1, -1);
        if (pf[0].revents) {
            char b[64];
            if (read(0, b, sizeof(b)) <= 0) {
                break;
            }
        }
        for (int i = 0; i < n; i++) {
            if (c[i] && pf[i + 1].revents) {
                vmsig_wire_hdr h;
                conn_fill(c[i]);
                while (conn_frame(c[i], &h, NULL, 0)) {
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        conn_free(c[i]);
    }
    free(c);
    free(pf);
    return 0;
}

/* ---- inflight (issue 10 item 5) ---- */

/*
 * inflight [N [T]]: N controls (OBSERVE+MEMCTX) re-subscribe to MEMCTX T
 * times each and never read, then a well-behaved control attaches and must
 * get the map with its descriptors, and is not dropped. Then the hoarders
 * read what they were sent: the descriptors that were in flight.
 */
static int cmd_inflight(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 60, toggles = argc > 2 ? atoi(argv[2]) : 40;
    raise_nofile();
    conn **h = calloc((size_t)n, sizeof(*h));
    int st = 0, attached = 0;
    char why[128];
    uint32_t both = (1u << VMSIG_SRC_SEAM) | (1u << VMSIG_SRC_MEMCTX);
    for (int i = 0; i < n; i++) {
        h[i] = attach(g_sock, both, &st, why, sizeof(why));
        attached += h[i] != NULL;
    }
    for (int t = 0; t < toggles; t++) {
        for (int i = 0; i < n; i++) {
            if (!h[i]) {
                continue;
            }
            vmsig_wire_sub sub = { .source_mask = t % 2 ? both : 1u << VMSIG_SRC_SEAM,
                                   .endpoint_mask = ~0ull };
            uint8_t buf[sizeof(vmsig_wire_hdr) + sizeof(sub)];
            size_t len = mk_frame(buf, VMSIG_MSG_SUBSCRIBE, (uint64_t)t + 2, 0, &sub, sizeof(sub));
            if (write_all(h[i]->fd, buf, len) < 0) {
                conn_free(h[i]);
                h[i] = NULL;
            }
        }
    }
    usleep(300 * 1000); /* let the server send what it will */
    /* the well-behaved one */
    int good_memctx = 0, good_fds = 0, good_nop = 0, err = 0;
    char gwhy[256] = "";
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = g_sock,
                                .timeout_ms = 5000, .why = gwhy, .whylen = sizeof(gwhy) };
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    if (c) {
        uint64_t end = now_ns() + 5000000000ull;
        while (now_ns() < end && !good_memctx) {
            vmsig_msg m;
            if (vmsig_client_next(c, &m, 500) == 0 && m.ev.kind == VMSIG_EV_MEMCTX) {
                good_memctx = m.ev.u.memctx.status == 0;
                good_fds = (int)m.nfds;
            }
        }
        vmsig_event nop = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_NOP };
        good_nop = vmsig_client_call(c, &nop, NULL, 5000) == 0;
        vmsig_client_close(c);
    }
    /* what the hoarders had in flight */
    unsigned fds = 0, dropped = 0;
    for (int i = 0; i < n; i++) {
        if (!h[i]) {
            dropped++;
            continue;
        }
        for (int k = 0; k < 200; k++) {
            vmsig_wire_hdr hh;
            int r = conn_fill(h[i]);
            while (conn_frame(h[i], &hh, NULL, 0)) {
                if (hh.kind == VMSIG_MSG_BYE) {
                    dropped++;
                }
            }
            if (r <= 0) {
                break;
            }
        }
        fds += h[i]->fds_seen;
        conn_free(h[i]);
    }
    free(h);
    printf("inflight hoarders=%d attached=%d toggles=%d hoarder_fds=%u hoarders_dropped=%u "
           "good_connect=%d good_memctx=%d good_fds=%d good_nop=%d\n",
           n, attached, toggles, fds, dropped, c != NULL, good_memctx, good_fds, good_nop);
    if (!c) {
        printf("# good connect: %d %s\n", err, gwhy);
    }
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            g_sock = argv[++i];
        } else {
            break;
        }
    }
    if (!g_sock) {
        g_sock = getenv("VMSIG_SOCKET");
    }
    if (i >= argc || !g_sock) {
        fprintf(stderr, "usage: vmsig-load -s SOCK burst|flood|turns|fdlimit|idle|inflight ...\n");
        return 1;
    }
    const char *cmd = argv[i];
    argc -= i;
    argv += i;
    if (!strcmp(cmd, "burst")) {
        return cmd_burst(argc, argv);
    }
    if (!strcmp(cmd, "flood")) {
        return cmd_flood(argc, argv);
    }
    if (!strcmp(cmd, "turns")) {
        return cmd_turns(argc, argv);
    }
    if (!strcmp(cmd, "fdlimit")) {
        return cmd_fdlimit(argc, argv);
    }
    if (!strcmp(cmd, "idle")) {
        return cmd_idle(argc, argv);
    }
    if (!strcmp(cmd, "inflight")) {
        return cmd_inflight(argc, argv);
    }
    fprintf(stderr, "vmsig-load: unknown subcommand %s\n", cmd);
    return 1;
}
