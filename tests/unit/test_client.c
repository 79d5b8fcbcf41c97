/*
 * test_client.c - the client library against a core served by its own
 * thread (the core is single-threaded: only that thread touches it), and
 * against a hostile server written here with raw socket code (floods,
 * never replies, never accepts).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmsig/vmsig_client.h"
#include "vmsig/vmsig_core.h"

typedef struct server {
    vmsig_core *core; /* touched by the server thread only */
    GThread *th;
    volatile int stop;
    char *dir, *path;
    GMutex lock;
    GCond cond;
    int ready;
} server;

static int backend_cmd(void *opaque, const vmsig_event *cmd, uint32_t principal,
                       vmsig_reply *reply)
{
    vmsig_core *core = ((server *)opaque)->core;
    if (cmd->kind == VMSIG_CMD_VM && cmd->u.cmd.op == VMSIG_VM_QUERY) {
        vmsig_wire_vminfo vi = { .state = VMSIG_RS_RUNNING, .running = 1, .vcpus = 4,
                                 .endpoint = cmd->endpoint, .ram_size = 1u << 30 };
        g_strlcpy(vi.name, "client-vm", sizeof(vi.name));
        g_strlcpy(vi.version, "7.2.22", sizeof(vi.version));
        memcpy(reply->body, &vi, sizeof(vi));
        /* Always the tail, as the QEMU glue does; the core trims it for
         * controls that did not negotiate VMSIG_FEAT_VMINFO_HOST. */
        vmsig_wire_vminfo_host host = { .pid = (uint32_t)getpid() };
        g_strlcpy(host.accel, "test", sizeof(host.accel));
        memcpy(reply->body + sizeof(vi), &host, sizeof(host));
        reply->len = sizeof(vi) + sizeof(host);
    }
    if (cmd->kind == VMSIG_CMD_LIFECYCLE && cmd->u.cmd.op == VMSIG_LC_PAUSE) {
        /* Events published before the reply is sent. */
        vmsig_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.dir = VMSIG_DIR_UP;
        ev.endpoint = cmd->endpoint;
        ev.kind = VMSIG_EV_RUNSTATE;
        ev.u.seam.state = VMSIG_RS_PAUSED;
        vmsig_core_publish(core, &ev);
        ev.kind = VMSIG_EV_SUSPEND;
        ev.u.seam.state = VMSIG_RS_SUSPENDED;
        vmsig_core_publish(core, &ev);
    }
    return 0;
}

static const vmsig_backend_ops backend = { .command = backend_cmd };

static gpointer serve(gpointer data)
{
    server *s = data;
    int err;
    char *text = g_strdup_printf("uid:%u endpoints=0,1 caps=OBSERVE,VM,INPUT,LIFECYCLE priority=1\n"
                                 "token:watcher endpoints=1 caps=OBSERVE\n",
                                 (unsigned)getuid());
    vmsig_grants *g = vmsig_grants_parse(text, &err, NULL, 0);
    g_free(text);
    g_assert_nonnull(g);
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .backend = &backend,
                              .backend_opaque = s };
    vmsig_core *core = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(core);
    s->core = core;
    g_assert_cmpint(vmsig_core_listen(core, s->path, g), ==, 0);
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.dir = VMSIG_DIR_UP;
    ev.kind = VMSIG_EV_RUNSTATE;
    ev.u.seam.state = VMSIG_RS_RUNNING;
    ev.u.seam.running = 1;
    vmsig_core_publish(core, &ev);
    g_mutex_lock(&s->lock);
    s->ready = 1;
    g_cond_signal(&s->cond);
    g_mutex_unlock(&s->lock);
    vmsig_loop_run(core, &s->stop, -1);
    vmsig_core_free(core);
    vmsig_grants_free(g);
    return NULL;
}

static server *server_start(void)
{
    server *s = g_new0(server, 1);
    s->dir = g_dir_make_tmp("vmsig-client-XXXXXX", NULL);
    s->path = g_build_filename(s->dir, "s", NULL);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    s->th = g_thread_new("server", serve, s);
    g_mutex_lock(&s->lock);
    while (!s->ready) {
        g_cond_wait(&s->cond, &s->lock);
    }
    g_mutex_unlock(&s->lock);
    return s;
}

static void server_stop(server *s)
{
    s->stop = 1;
    g_thread_join(s->th);
    rmdir(s->dir);
    g_free(s->path);
    g_free(s->dir);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
    g_free(s);
}

static vmsig_client *connect_to(server *s, const char *token, int *err)
{
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = s->path,
                                .token = token, .timeout_ms = 3000 };
    return vmsig_client_connect(&cfg, err);
}

/* The snapshot: our endpoints' current RUNSTATE, flagged. */
static void skip_snapshot(vmsig_client *c)
{
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 3000), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(m.ev.flags & VMSIG_F_SNAPSHOT, ==, VMSIG_F_SNAPSHOT);
    g_assert_cmpuint(m.ev.u.seam.state, ==, VMSIG_RS_RUNNING);
}

static void test_handshake(void)
{
    server *s = server_start();
    int err = 1;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    g_assert_cmpint(err, ==, 0);
    const vmsig_wire_welcome *w = vmsig_client_welcome(c);
    g_assert_cmpuint(w->major, ==, VMSIG_WIRE_MAJOR);
    g_assert_cmpuint(w->minor, ==, VMSIG_WIRE_MINOR);
    g_assert_cmphex(w->features, ==, VMSIG_FEATURES_KNOWN);
    g_assert_cmpuint(w->principal, ==, getuid());
    g_assert_cmpuint(w->endpoint_mask, ==, 3);
    g_assert_cmpuint(w->caps, ==, VMSIG_CAP_OBSERVE | VMSIG_CAP_VM | VMSIG_CAP_INPUT | VMSIG_CAP_LIFECYCLE);
    g_assert_cmpint(w->priority, ==, 1);
    g_assert_cmpuint(w->sub.endpoint_mask, ==, 3);
    g_assert_cmpuint(w->sub.source_mask & (1u << VMSIG_SRC_SEAM), !=, 0);
    g_assert_cmpuint(w->sub.source_mask & (1u << VMSIG_SRC_MEMCTX), ==, 0); /* not granted */
    /* no CAP_MEMWRITE: only the largest other command fits */
    g_assert_cmpuint(w->max_payload, ==, sizeof(vmsig_wire_input) + VMSIG_TEXT_MAX);
    g_assert_cmpuint(w->max_fds, ==, VMSIG_WIRE_MAX_FDS);
    g_assert_cmpuint(w->queue_limit, ==, 256);
    g_assert_cmpint(vmsig_client_fd(c), >=, 0);
    skip_snapshot(c);
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 50), ==, -ETIMEDOUT);

    /* Token with a narrower grant; a wrong token is refused. */
    vmsig_client *t = connect_to(s, "watcher", &err);
    g_assert_nonnull(t);
    g_assert_cmpuint(vmsig_client_welcome(t)->endpoint_mask, ==, 2);
    g_assert_cmpuint(vmsig_client_welcome(t)->caps, ==, VMSIG_CAP_OBSERVE);
    vmsig_client_close(t);
    g_assert_null(connect_to(s, "nope", &err));
    g_assert_cmpint(err, ==, -EPERM);

    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = "/nonexistent/x" };
    g_assert_null(vmsig_client_connect(&cfg, &err));
    g_assert_cmpint(err, ==, -ENOENT);
    vmsig_client_close(c);
    server_stop(s);
}

static void test_call(void)
{
    server *s = server_start();
    int err;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    vmsig_wire_vminfo vi;
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, &vi), ==, 0);
    g_assert_cmpstr(vi.name, ==, "client-vm");
    g_assert_cmpstr(vi.version, ==, "7.2.22");
    g_assert_cmpuint(vi.vcpus, ==, 4);
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_CMD_VM;
    ev.endpoint = 1;
    ev.u.cmd.op = VMSIG_VM_QUERY;
    vmsig_reply rep;
    g_assert_cmpint(vmsig_client_call(c, &ev, &rep, 3000), ==, 0);
    g_assert_cmpuint(rep.len, ==, sizeof(vmsig_wire_vminfo) + sizeof(vmsig_wire_vminfo_host));
    g_assert_cmpuint(ev.seq, >, 0);
    /* Refusals come back as the reply status. */
    g_assert_cmpint(vmsig_client_vm(c, 7, VMSIG_VM_QUERY, NULL), ==, -EPERM);
    g_assert_cmpint(vmsig_client_power(c, 0, VMSIG_PWR_RESET), ==, -EPERM);
    vmsig_wire_input in = { .op = VMSIG_INPUT_TEXT };
    g_assert_cmpint(vmsig_client_input(c, 0, &in, "hello"), ==, 0);
    vmsig_sub sub = { 1u << VMSIG_SRC_SEAM, 2 };
    g_assert_cmpint(vmsig_client_subscribe(c, &sub), ==, 0);
    g_assert_cmpuint(vmsig_client_welcome(c)->sub.endpoint_mask, ==, 2);
    vmsig_client_close(c);
    server_stop(s);
}

static void test_events_during_call(void)
{
    server *s = server_start();
    int err;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    /* The snapshot is still unread; PAUSE publishes two events before its reply. */
    g_assert_cmpint(vmsig_client_lifecycle(c, 0, VMSIG_LC_PAUSE), ==, 0);
    vmsig_msg m;
    skip_snapshot(c);
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(m.ev.u.seam.state, ==, VMSIG_RS_PAUSED);
    g_assert_cmpuint(m.ev.flags & VMSIG_F_SNAPSHOT, ==, 0);
    uint64_t seq = m.ev.seq;
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_SUSPEND);
    g_assert_cmpuint(m.ev.seq, ==, seq + 1);
    g_assert_cmpint(vmsig_client_next(c, &m, 20), ==, -ETIMEDOUT);
    vmsig_client_close(c);
    server_stop(s);
}

static void test_arbitration(void)
{
    server *s = server_start();
    int err;
    vmsig_client *a = connect_to(s, NULL, &err);
    vmsig_client *b = connect_to(s, NULL, &err);
    g_assert_nonnull(a);
    g_assert_nonnull(b);
    vmsig_wire_input key = { .op = VMSIG_INPUT_KEY, .code = 30, .value = 1 };
    g_assert_cmpint(vmsig_client_acquire(a, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpint(vmsig_client_acquire(b, 0, VMSIG_CLASS_INPUT), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_input(b, 0, &key, NULL), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_input(a, 0, &key, NULL), ==, 0);
    g_assert_cmpint(vmsig_client_release(b, 0, VMSIG_CLASS_INPUT), ==, -ENOENT);
    g_assert_cmpint(vmsig_client_release(a, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpint(vmsig_client_acquire(b, 0, VMSIG_CLASS_INPUT), ==, 0);
    /* A dead owner's slot is free. */
    vmsig_client_close(b);
    g_usleep(150 * 1000);
    g_assert_cmpint(vmsig_client_acquire(a, 0, VMSIG_CLASS_INPUT), ==, 0);
    /* ARB events reached the observer. */
    vmsig_msg m;
    int arb = 0;
    while (vmsig_client_next(a, &m, 100) == 0) {
        arb += m.ev.kind == VMSIG_EV_ARB;
    }
    g_assert_cmpint(arb, >, 0);
    vmsig_client_close(a);
    server_stop(s);
}

static void test_shutdown(void)
{
    server *s = server_start();
    int err;
    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    skip_snapshot(c);
    s->stop = 1; /* the server thread leaves its loop and frees the core */
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 3000), ==, -EPIPE);
    const char *text = NULL;
    g_assert_cmpint(vmsig_client_bye(c, &text), ==, -ESHUTDOWN);
    g_assert_nonnull(strstr(text, "shutting down"));
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, NULL), ==, -EPIPE);
    vmsig_client_close(c);
    server_stop(s);
}

/* ---- a hostile server: raw frames over the socket ---- */

typedef struct raw raw;
typedef void (*raw_fn)(raw *r, int cfd);

struct raw {
    GThread *th;
    volatile int stop;
    char *dir, *path;
    int lfd;
    raw_fn run;
    int fds[VMSIG_WIRE_MAX_FDS]; /* what MEMCTX frames carry (dups of one memfd) */
    volatile int sent;            /* frames sent by the scenario */
    const vmsig_wire_welcome *welcome; /* sent instead of the default WELCOME if set */
};

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    g_assert_nonnull(d);
    while (readdir(d)) {
        n++;
    }
    closedir(d);
    return n - 3; /* ".", "..", the DIR's own fd */
}

/* Wait for fd to be ready for `events`, checking r->stop every 50 ms.
 * 0 ready, -1 stopped. */
static int raw_wait(raw *r, int fd, short events)
{
    while (!r->stop) {
        struct pollfd p = { .fd = fd, .events = events };
        if (poll(&p, 1, 50) > 0) {
            return 0;
        }
    }
    return -1;
}

/* Write all of buf, fds on the first byte. 0, or -1 (stopped, or the peer
 * is gone). */
static int raw_send(raw *r, int cfd, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    size_t done = 0;
    while (done < len) {
        if (raw_wait(r, cfd, POLLOUT) < 0) {
            return -1;
        }
        struct iovec iov = { (char *)buf + done, len - done };
        char cbuf[CMSG_SPACE(sizeof(int) * VMSIG_WIRE_MAX_FDS)];
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (done == 0 && nfds) {
            memset(cbuf, 0, sizeof(cbuf));
            mh.msg_control = cbuf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(cfd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            if (errno == ETOOMANYREFS) { /* too many fds in flight: let the reader catch up */
                g_usleep(1000);
                continue;
            }
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static int raw_frame(raw *r, int cfd, uint16_t kind, uint32_t endpoint, uint64_t id,
                     const void *payload, uint32_t len, const int *fds, unsigned nfds)
{
    uint8_t buf[sizeof(vmsig_wire_hdr) + 256];
    vmsig_wire_hdr h = { .kind = kind, .nfds = (uint8_t)nfds, .len = len, .id = id,
                         .endpoint = endpoint };
    g_assert_cmpuint(len, <=, 256);
    memcpy(buf, &h, sizeof(h));
    if (len) {
        memcpy(buf + sizeof(h), payload, len);
    }
    return raw_send(r, cfd, buf, sizeof(h) + len, fds, nfds);
}

static int raw_memctx(raw *r, int cfd, uint32_t endpoint, uint64_t gen, unsigned nfds)
{
    vmsig_wire_memctx mc = { .generation = gen }; /* no segments: only fds */
    return raw_frame(r, cfd, VMSIG_EV_MEMCTX, endpoint, gen, &mc, sizeof(mc), r->fds, nfds);
}

static int raw_runstate(raw *r, int cfd, uint32_t endpoint, uint64_t seq)
{
    vmsig_wire_seam st = { .state = VMSIG_RS_RUNNING, .running = 1 };
    return raw_frame(r, cfd, VMSIG_EV_RUNSTATE, endpoint, seq, &st, sizeof(st), NULL, 0);
}

/* Read one client frame (its header into *h, payload discarded). 0 or -1. */
static int raw_read_frame(raw *r, int cfd, vmsig_wire_hdr *h)
{
    uint8_t buf[4096];
    size_t want = sizeof(*h), got = 0;
    int in_hdr = 1;
    while (got < want) {
        if (raw_wait(r, cfd, POLLIN) < 0) {
            return -1;
        }
        size_t room = want - got;
        ssize_t n = read(cfd, in_hdr ? (uint8_t *)h + got : buf, in_hdr ? room
                         : room < sizeof(buf) ? room : sizeof(buf));
        if (n <= 0) {
            return -1;
        }
        got += (size_t)n;
        if (in_hdr && got == want) {
            in_hdr = 0;
            got = 0;
            want = h->len;
        }
    }
    return 0;
}

static gpointer raw_serve(gpointer data)
{
    raw *r = data;
    if (raw_wait(r, r->lfd, POLLIN) < 0) {
        return NULL;
    }
    int cfd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
    g_assert_cmpint(cfd, >=, 0);
    vmsig_wire_hdr h;
    if (raw_read_frame(r, cfd, &h) == 0) {
        g_assert_cmpuint(h.kind, ==, VMSIG_MSG_HELLO);
        vmsig_wire_welcome w = { .major = VMSIG_WIRE_MAJOR, .endpoint_mask = ~0ull,
                                 .caps = VMSIG_CAP_ALL, .max_payload = VMSIG_WIRE_MAX_PAYLOAD,
                                 .max_fds = VMSIG_WIRE_MAX_FDS, .queue_limit = 256 };
        if (r->welcome) {
            w = *r->welcome;
        }
        if (raw_frame(r, cfd, VMSIG_MSG_WELCOME, 0, 0, &w, sizeof(w), NULL, 0) == 0) {
            r->run(r, cfd);
        }
    }
    while (!r->stop) {
        g_usleep(10 * 1000); /* never close first: the client must not see EOF */
    }
    close(cfd);
    return NULL;
}

static raw *raw_start_welcome(raw_fn run, const vmsig_wire_welcome *welcome)
{
    raw *r = g_new0(raw, 1);
    r->run = run;
    r->welcome = welcome;
    r->dir = g_dir_make_tmp("vmsig-raw-XXXXXX", NULL);
    r->path = g_build_filename(r->dir, "s", NULL);
    r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, r->path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(r->lfd, 4), ==, 0);
    int mfd = memfd_create("raw-ram", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(mfd, 4096), ==, 0);
    r->fds[0] = mfd;
    for (unsigned i = 1; i < VMSIG_WIRE_MAX_FDS; i++) {
        r->fds[i] = fcntl(mfd, F_DUPFD_CLOEXEC, 0);
    }
    r->th = g_thread_new("raw", raw_serve, r);
    return r;
}

static raw *raw_start(raw_fn run)
{
    return raw_start_welcome(run, NULL);
}

static void raw_stop(raw *r)
{
    r->stop = 1;
    g_thread_join(r->th);
    for (unsigned i = 0; i < VMSIG_WIRE_MAX_FDS; i++) {
        close(r->fds[i]);
    }
    close(r->lfd);
    unlink(r->path);
    rmdir(r->dir);
    g_free(r->path);
    g_free(r->dir);
    g_free(r);
}

static vmsig_client *raw_connect(raw *r)
{
    int err;
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = r->path,
                                .timeout_ms = 3000 };
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    g_assert_cmpint(err, ==, 0);
    g_assert_nonnull(c);
    return c;
}

/* A command whose reply never comes (or comes late). */
static int nop(vmsig_client *c, int timeout_ms)
{
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_CMD_NOP;
    return vmsig_client_call(c, &ev, NULL, timeout_ms);
}

#define FLOOD_US (3 * G_USEC_PER_SEC) /* a flood ends after this, if not stopped */

/* After the first command: MEMCTX of endpoint 0 with 16 fds, as fast as the
 * client takes them, never a reply. */
static void run_flood_memctx(raw *r, int cfd)
{
    vmsig_wire_hdr h;
    if (raw_read_frame(r, cfd, &h) < 0) {
        return;
    }
    gint64 end = g_get_monotonic_time() + FLOOD_US;
    for (uint64_t gen = 1; !r->stop && g_get_monotonic_time() < end; gen++) {
        if (raw_memctx(r, cfd, 0, gen, VMSIG_WIRE_MAX_FDS) < 0) {
            return;
        }
        r->sent++;
    }
}

static void test_flood_memctx(void)
{
    raw *r = raw_start(run_flood_memctx);
    vmsig_client *c = raw_connect(r);
    int before = open_fds();
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(nop(c, 300), ==, -ETIMEDOUT);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    int during = open_fds();
    g_test_message("%d MEMCTX frames sent, call took %" G_GINT64_FORMAT " ms, fds %d -> %d",
                   r->sent, ms, before, during);
    /* the deadline held: well before the flood's own 3 s end (generous for
     * a loaded machine; tests do not measure speed) */
    g_assert_cmpint(ms, <, 2500);
    g_assert_cmpint(r->sent, >, 1);
    /* One queued MEMCTX (newer ones replace it) and at most one in the reader. */
    g_assert_cmpint(during - before, <=, 2 * VMSIG_WIRE_MAX_FDS);
    r->stop = 1;
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpuint(m.nfds, ==, VMSIG_WIRE_MAX_FDS);
    g_assert_cmpuint(m.ev.u.memctx.generation, >, 1); /* not the first: replaced */
    vmsig_client_close(c);
    raw_stop(r);
    g_assert_cmpint(open_fds(), <=, before - VMSIG_WIRE_MAX_FDS - 2); /* all closed */
}

/* After the first command: MEMCTX frames of endpoint 0 without fds, written
 * in bulk so the socket never runs empty (a reader that only looks at its
 * deadline when it does would wait for the whole flood), never a reply. */
static void run_flood_bulk(raw *r, int cfd)
{
    vmsig_wire_hdr h;
    if (raw_read_frame(r, cfd, &h) < 0) {
        return;
    }
    enum { N = 100 };
    struct {
        vmsig_wire_hdr h;
        vmsig_wire_memctx mc;
    } *batch = g_new0(typeof(*batch), N);
    gint64 end = g_get_monotonic_time() + FLOOD_US;
    for (uint64_t gen = 1; !r->stop && g_get_monotonic_time() < end;) {
        for (unsigned i = 0; i < N; i++, gen++) {
            batch[i].h = (vmsig_wire_hdr){ .kind = VMSIG_EV_MEMCTX, .len = sizeof(batch[i].mc),
                                           .id = gen };
            batch[i].mc.generation = gen;
        }
        if (raw_send(r, cfd, batch, N * sizeof(*batch), NULL, 0) < 0) {
            break;
        }
        r->sent += N;
    }
    g_free(batch);
}

static void test_flood_deadline(void)
{
    raw *r = raw_start(run_flood_bulk);
    vmsig_client *c = raw_connect(r);
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(nop(c, 300), ==, -ETIMEDOUT);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    g_test_message("%d MEMCTX frames sent, call took %" G_GINT64_FORMAT " ms", r->sent, ms);
    /* the deadline held: well before the flood's own 3 s end (generous for
     * a loaded machine; tests do not measure speed) */
    g_assert_cmpint(ms, <, 2500);
    r->stop = 1;
    vmsig_msg m; /* one left: the newest */
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpuint(m.ev.u.memctx.generation, >, 1);
    vmsig_client_close(c);
    raw_stop(r);
}

/* After the first command: RUNSTATE events, more than the client queues. */
static void run_flood_events(raw *r, int cfd)
{
    vmsig_wire_hdr h;
    if (raw_read_frame(r, cfd, &h) < 0) {
        return;
    }
    for (uint64_t seq = 1; seq <= 2 * VMSIG_CLIENT_QUEUE_MAX && !r->stop; seq++) {
        if (raw_runstate(r, cfd, 0, seq) < 0) {
            return;
        }
        r->sent++;
    }
}

static void test_flood_events(void)
{
    raw *r = raw_start(run_flood_events);
    vmsig_client *c = raw_connect(r);
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(nop(c, 5000), ==, -ENOBUFS);
    g_assert_cmpint((g_get_monotonic_time() - t0) / 1000, <, 4500); /* before the 5 s timeout */
    const char *text = NULL;
    g_assert_cmpint(vmsig_client_bye(c, &text), ==, -ENOBUFS);
    g_assert_nonnull(strstr(text, "queued"));
    /* What was queued is still there, in order; then the connection is gone. */
    vmsig_msg m;
    for (unsigned i = 1; i <= VMSIG_CLIENT_QUEUE_MAX; i++) {
        g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
        g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
        g_assert_cmpuint(m.ev.seq, ==, i);
    }
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, -EPIPE);
    g_assert_cmpint(nop(c, 100), ==, -EPIPE);
    vmsig_client_close(c);
    raw_stop(r);
}

/* After the first command: MEMCTX with 16 fds for endpoints 0..63 (none
 * replaces another): the fd budget ends it. */
static void run_flood_endpoints(raw *r, int cfd)
{
    vmsig_wire_hdr h;
    if (raw_read_frame(r, cfd, &h) < 0) {
        return;
    }
    for (uint32_t ep = 0; ep < VMSIG_ENDPOINT_MAX && !r->stop; ep++) {
        if (raw_memctx(r, cfd, ep, 1, VMSIG_WIRE_MAX_FDS) < 0) {
            return;
        }
        r->sent++;
    }
}

static void test_flood_endpoints(void)
{
    raw *r = raw_start(run_flood_endpoints);
    vmsig_client *c = raw_connect(r);
    int before = open_fds();
    g_assert_cmpint(nop(c, 3000), ==, -ENOBUFS);
    g_assert_cmpint(open_fds() - before, <=, VMSIG_CLIENT_QUEUE_FDS);
    vmsig_msg m;
    unsigned n = 0;
    while (vmsig_client_next(c, &m, 0) == 0) {
        g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_MEMCTX);
        g_assert_cmpuint(m.ev.endpoint, ==, n);
        g_assert_cmpuint(m.nfds, ==, VMSIG_WIRE_MAX_FDS);
        n++;
    }
    g_assert_cmpuint(n, ==, VMSIG_CLIENT_QUEUE_FDS / VMSIG_WIRE_MAX_FDS);
    vmsig_client_close(c);
    g_assert_cmpint(open_fds(), <=, before);
    raw_stop(r);
}

/* After the first command: MEMCTX ep 0 gen 1, RUNSTATE, MEMCTX ep 1 gen 1,
 * MEMCTX ep 0 gen 2, then the reply. */
static void run_coalesce(raw *r, int cfd)
{
    vmsig_wire_hdr h;
    if (raw_read_frame(r, cfd, &h) < 0 || raw_memctx(r, cfd, 0, 1, 3) < 0 ||
        raw_runstate(r, cfd, 0, 2) < 0 || raw_memctx(r, cfd, 1, 1, 1) < 0 ||
        raw_memctx(r, cfd, 0, 2, 2) < 0) {
        return;
    }
    raw_frame(r, cfd, VMSIG_MSG_REPLY, 0, h.id, NULL, 0, NULL, 0);
}

static void test_coalesce_memctx(void)
{
    raw *r = raw_start(run_coalesce);
    vmsig_client *c = raw_connect(r);
    int before = open_fds();
    g_assert_cmpint(nop(c, 3000), ==, 0);
    g_assert_cmpint(open_fds() - before, ==, 1 + 2); /* gen 1 of ep 0 was closed */
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpuint(m.ev.endpoint, ==, 1);
    g_assert_cmpint(vmsig_client_next(c, &m, 0), ==, 0);
    g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpuint(m.ev.endpoint, ==, 0);
    g_assert_cmpuint(m.ev.u.memctx.generation, ==, 2);
    g_assert_cmpuint(m.nfds, ==, 2);
    g_assert_cmpint(vmsig_client_next(c, &m, 20), ==, -ETIMEDOUT);
    vmsig_client_close(c);
    raw_stop(r);
}

/* The fds of a received event are the client's until taken. */
static void run_fds(raw *r, int cfd)
{
    vmsig_wire_hdr h;
    if (raw_memctx(r, cfd, 0, 1, 3) < 0 || raw_read_frame(r, cfd, &h) < 0) {
        return;
    }
    raw_frame(r, cfd, VMSIG_MSG_REPLY, 0, h.id, NULL, 0, NULL, 0);
}

static void test_take_fd(void)
{
    raw *r = raw_start(run_fds);
    vmsig_client *c = raw_connect(r);
    vmsig_msg m;
    g_assert_cmpint(vmsig_client_next(c, &m, 3000), ==, 0);
    g_assert_cmpuint(m.nfds, ==, 3);
    int fds[3] = { m.fds[0], m.fds[1], m.fds[2] };
    g_assert_cmpint(vmsig_client_take_fd(c, 3), ==, -EBADF);
    int kept = vmsig_client_take_fd(c, 1);
    g_assert_cmpint(kept, ==, fds[1]);
    g_assert_cmpint(vmsig_client_take_fd(c, 1), ==, -EBADF);
    /* The caller's struct does not matter any more (here: all "-1"). */
    memset(&m, 0xff, sizeof(m));
    g_assert_cmpint(nop(c, 3000), ==, 0);
    g_assert_cmpint(fcntl(fds[0], F_GETFD), ==, -1);
    g_assert_cmpint(fcntl(fds[2], F_GETFD), ==, -1);
    g_assert_cmpint(fcntl(kept, F_GETFD), >=, 0);
    g_assert_cmpint(vmsig_client_take_fd(c, 0), ==, -EBADF); /* after another call */
    vmsig_client_close(c);
    g_assert_cmpint(fcntl(kept, F_GETFD), >=, 0);
    close(kept);
    raw_stop(r);
}

/* Never accepts: after 3 s it closes the listener so that a connect() that
 * ignores its timeout ends anyway (and the test fails instead of hanging). */
typedef struct backlog {
    int lfd;
    GMutex lock;
    GCond cond;
    int done;
} backlog;

static gpointer backlog_watchdog(gpointer data)
{
    backlog *b = data;
    gint64 end = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
    g_mutex_lock(&b->lock);
    while (!b->done && g_cond_wait_until(&b->cond, &b->lock, end)) {
    }
    if (!b->done) {
        close(b->lfd); /* wakes a connect() blocked on the backlog */
        b->lfd = -1;
    }
    g_mutex_unlock(&b->lock);
    return NULL;
}

static void test_connect_backlog(void)
{
    char *dir = g_dir_make_tmp("vmsig-backlog-XXXXXX", NULL);
    char *path = g_build_filename(dir, "s", NULL);
    backlog b = { .lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) };
    g_mutex_init(&b.lock);
    g_cond_init(&b.cond);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(b.lfd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(b.lfd, 0), ==, 0);
    /* Fill the backlog: non-blocking connects until the kernel says EAGAIN. */
    int fill[8], nfill = 0;
    for (;;) {
        g_assert_cmpint(nfill, <, 8);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            g_assert_cmpint(errno, ==, EAGAIN);
            close(fd);
            break;
        }
        fill[nfill++] = fd;
    }
    g_assert_cmpint(nfill, >, 0);
    GThread *th = g_thread_new("watchdog", backlog_watchdog, &b);

    int err = 0;
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = path,
                                .timeout_ms = 200 };
    gint64 t0 = g_get_monotonic_time();
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    g_test_message("connect with a full backlog: %d after %" G_GINT64_FORMAT " ms", err, ms);
    g_mutex_lock(&b.lock);
    b.done = 1;
    g_cond_signal(&b.cond);
    g_mutex_unlock(&b.lock);
    g_thread_join(th);
    g_assert_null(c);
    g_assert_cmpint(err, ==, -ETIMEDOUT);
    g_assert_cmpint(ms, >=, 190);  /* it waited for its timeout */
    g_assert_cmpint(ms, <, 2500);  /* and not for the 3 s watchdog */

    for (int i = 0; i < nfill; i++) {
        close(fill[i]);
    }
    if (b.lfd >= 0) {
        close(b.lfd);
    }
    unlink(path);
    rmdir(dir);
    g_free(path);
    g_free(dir);
    g_mutex_clear(&b.lock);
    g_cond_clear(&b.cond);
}

/* ---- negotiation ---- */

static int query_len(vmsig_client *c, vmsig_reply *rep)
{
    vmsig_event cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.dir = VMSIG_DIR_DOWN;
    cmd.kind = VMSIG_CMD_VM;
    cmd.u.cmd.op = VMSIG_VM_QUERY;
    g_assert_cmpint(vmsig_client_call(c, &cmd, rep, 3000), ==, 0);
    return (int)rep->len;
}

/* All features offered: the tail is there. None (a v2 config that turns
 * every one off): WELCOME says 0 and the reply is the 1.0 layout. A v1
 * config (no features_off field) offers everything. */
static void test_features(void)
{
    server *s = server_start();
    int err = 1;
    vmsig_reply rep;

    vmsig_client *c = connect_to(s, NULL, &err);
    g_assert_nonnull(c);
    g_assert_cmphex(vmsig_client_welcome(c)->features, ==, VMSIG_FEATURES_KNOWN);
    g_assert_cmpint(query_len(c, &rep), ==, sizeof(vmsig_wire_vminfo) + sizeof(vmsig_wire_vminfo_host));
    vmsig_wire_vminfo_host host;
    memcpy(&host, rep.body + sizeof(vmsig_wire_vminfo), sizeof(host));
    g_assert_cmpuint(host.pid, ==, (uint32_t)getpid());
    g_assert_cmpstr(host.accel, ==, "test");
    vmsig_client_close(c);

    vmsig_client_config cfg = { .version = 2, .path = s->path, .timeout_ms = 3000,
                                .features_off = ~0ull };
    c = vmsig_client_connect(&cfg, &err);
    g_assert_nonnull(c);
    g_assert_cmphex(vmsig_client_welcome(c)->features, ==, 0);
    g_assert_cmpint(query_len(c, &rep), ==, sizeof(vmsig_wire_vminfo));
    vmsig_wire_vminfo vi;
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, &vi), ==, 0);
    g_assert_cmpstr(vi.name, ==, "client-vm");
    vmsig_client_close(c);

    cfg = (vmsig_client_config){ .version = 1, .path = s->path, .timeout_ms = 3000 };
    c = vmsig_client_connect(&cfg, &err);
    g_assert_nonnull(c);
    g_assert_cmphex(vmsig_client_welcome(c)->features, ==, VMSIG_FEATURES_KNOWN);
    vmsig_client_close(c);

    cfg.version = VMSIG_CLIENT_CONFIG_VERSION + 1;
    g_assert_null(vmsig_client_connect(&cfg, &err));
    g_assert_cmpint(err, ==, -EINVAL);
    cfg.version = 0;
    g_assert_null(vmsig_client_connect(&cfg, &err));
    g_assert_cmpint(err, ==, -EINVAL);
    server_stop(s);
}

static void run_idle(raw *r, int cfd)
{
}

/* A server may answer only with what was offered, 0 in reserved fields, a
 * minor no newer than ours and our major. */
static void test_welcome_checks(void)
{
    static const struct {
        vmsig_wire_welcome w;
        int err;
    } cases[] = {
        { { .major = VMSIG_WIRE_MAJOR, .features = 1ull << 50 }, -EPROTO },
        { { .major = VMSIG_WIRE_MAJOR, .reserved = 1 }, -EPROTO },
        { { .major = VMSIG_WIRE_MAJOR, .minor = VMSIG_WIRE_MINOR + 1 }, -EPROTO },
        { { .major = VMSIG_WIRE_MAJOR + 1 }, -EPROTONOSUPPORT },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        raw *r = raw_start_welcome(run_idle, &cases[i].w);
        int err = 0;
        vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = r->path,
                                    .timeout_ms = 3000 };
        vmsig_client *c = vmsig_client_connect(&cfg, &err);
        g_assert_null(c);
        g_assert_cmpint(err, ==, cases[i].err);
        raw_stop(r);
    }
    /* Offered but withheld by the server is fine: the intersection. */
    vmsig_wire_welcome w = { .major = VMSIG_WIRE_MAJOR, .features = 0 };
    raw *r = raw_start_welcome(run_idle, &w);
    vmsig_client *c = raw_connect(r);
    g_assert_cmphex(vmsig_client_welcome(c)->features, ==, 0);
    vmsig_client_close(c);
    raw_stop(r);
}

/* Delivery seqs with gaps: vmsig_msg.lost is each gap, 0 otherwise. */
static void run_gaps(raw *r, int cfd)
{
    static const uint64_t ids[] = { 1, 2, 5, 6, 10 };
    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        if (raw_runstate(r, cfd, 0, ids[i]) < 0) {
            return;
        }
    }
}

static void test_lost(void)
{
    static const uint64_t lost[] = { 0, 0, 2, 0, 3 };
    raw *r = raw_start(run_gaps);
    vmsig_client *c = raw_connect(r);
    for (size_t i = 0; i < G_N_ELEMENTS(lost); i++) {
        vmsig_msg m;
        g_assert_cmpint(vmsig_client_next(c, &m, 3000), ==, 0);
        g_assert_cmpuint(m.lost, ==, lost[i]);
    }
    vmsig_client_close(c);
    raw_stop(r);
}

/* The server says BYE and closes before our command: the send fails, and
 * the BYE that was already there still tells why. */
static void run_bye_then_close(raw *r, int cfd)
{
    vmsig_wire_bye bye;
    memset(&bye, 0, sizeof(bye));
    g_strlcpy(bye.text, "going away for a test", sizeof(bye.text));
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_BYE, .len = sizeof(bye), .status = -ESHUTDOWN };
    uint8_t buf[sizeof(h) + sizeof(bye)];
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &bye, sizeof(bye));
    if (raw_send(r, cfd, buf, sizeof(buf), NULL, 0) == 0) {
        shutdown(cfd, SHUT_RDWR); /* raw_serve closes it later */
        r->sent = 1;
    }
}

static void test_bye_after_failed_send(void)
{
    raw *r = raw_start(run_bye_then_close);
    vmsig_client *c = raw_connect(r);
    while (!r->sent) {
        g_usleep(1000);
    }
    g_usleep(20 * 1000);
    const char *text = NULL;
    int rc = nop(c, 3000);
    g_assert_cmpint(rc, ==, -EPIPE);
    g_assert_cmpint(vmsig_client_bye(c, &text), ==, -ESHUTDOWN);
    g_assert_cmpstr(text, ==, "going away for a test");
    vmsig_client_close(c);
    raw_stop(r);
}

/* The server closes before WELCOME: named as such (-ECONNRESET and words),
 * never -EPROTO or a broken pipe, whichever side of the race we are on. */
static gpointer close_early(gpointer data)
{
    raw *r = data;
    for (int i = 0; i < 2; i++) {
        if (raw_wait(r, r->lfd, POLLIN) < 0) {
            return NULL;
        }
        int cfd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (i == 1) {
            vmsig_wire_hdr h;
            raw_read_frame(r, cfd, &h); /* after the HELLO */
        }
        close(cfd);
    }
    return NULL;
}

static void test_closed_before_welcome(void)
{
    raw *r = g_new0(raw, 1);
    r->dir = g_dir_make_tmp("vmsig-raw-XXXXXX", NULL);
    r->path = g_build_filename(r->dir, "s", NULL);
    r->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, r->path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(r->lfd, 4), ==, 0);
    GThread *th = g_thread_new("early", close_early, r);
    for (int i = 0; i < 2; i++) {
        char why[256] = "";
        vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = r->path,
                                    .timeout_ms = 3000, .why = why, .whylen = sizeof(why) };
        int err = 0;
        g_assert_null(vmsig_client_connect(&cfg, &err));
        g_assert_cmpint(err, ==, -ECONNRESET);
        g_assert_cmpstr(why, ==, "the server closed the connection before WELCOME");
    }
    r->stop = 1;
    g_thread_join(th);
    close(r->lfd);
    unlink(r->path);
    rmdir(r->dir);
    g_free(r->path);
    g_free(r->dir);
    g_free(r);
}

/* A refused handshake: the REPLY's status, the BYE's words. */
static void test_refusal_words(void)
{
    server *s = server_start();
    char why[256] = "";
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = s->path,
                                .token = "nosuch", .timeout_ms = 3000, .why = why,
                                .whylen = sizeof(why) };
    int err = 0;
    g_assert_null(vmsig_client_connect(&cfg, &err));
    g_assert_cmpint(err, ==, -EPERM);
    g_assert_nonnull(strstr(why, "no grant"));
    server_stop(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/client/handshake", test_handshake);
    g_test_add_func("/client/features", test_features);
    g_test_add_func("/client/welcome-checks", test_welcome_checks);
    g_test_add_func("/client/lost", test_lost);
    g_test_add_func("/client/bye-after-failed-send", test_bye_after_failed_send);
    g_test_add_func("/client/closed-before-welcome", test_closed_before_welcome);
    g_test_add_func("/client/refusal-words", test_refusal_words);
    g_test_add_func("/client/call", test_call);
    g_test_add_func("/client/events-during-call", test_events_during_call);
    g_test_add_func("/client/arbitration", test_arbitration);
    g_test_add_func("/client/shutdown", test_shutdown);
    g_test_add_func("/client/take-fd", test_take_fd);
    g_test_add_func("/client/coalesce-memctx", test_coalesce_memctx);
    g_test_add_func("/client/flood-memctx", test_flood_memctx);
    g_test_add_func("/client/flood-deadline", test_flood_deadline);
    g_test_add_func("/client/flood-events", test_flood_events);
    g_test_add_func("/client/flood-endpoints", test_flood_endpoints);
    g_test_add_func("/client/connect-backlog", test_connect_backlog);
    return g_test_run();
}
