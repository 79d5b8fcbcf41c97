/*
 * test_sock.c - the listener and socket controls over real UNIX sockets.
 * The core runs in this process, driven with vmsig_core_dispatch; peers are
 * raw socket code. Every refusal asserts its exact errno, and after every bad
 * peer a witness control proves the core and the others still work.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sys/wait.h>

#include "vmsig/vmsig_client.h"
#include "vmsig/vmsig_core.h"
#include "../../lib/wire.h"

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    g_assert_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* ---- fixture: a core listening, a witness peer attached ---- */

typedef struct detach_rec {
    int count;
    int last_why;
    char last_text[128];
} detach_rec;

typedef struct peer {
    int fd;
    vmsig_wire_reader *rd;
    vmsig_wire_welcome welcome;
} peer;

typedef struct fx {
    char *dir, *path;
    vmsig_core *core;
    vmsig_grants *grants;
    detach_rec det;
    peer witness;
    uint64_t witness_id;
} fx;

static void on_detach(void *opaque, const vmsig_grant *g, int why, const char *text)
{
    detach_rec *d = opaque;
    d->count++;
    d->last_why = why;
    g_strlcpy(d->last_text, text ? text : "", sizeof(d->last_text));
}

/* Backend calls so far, and the call number of the last query of endpoint 1. */
static unsigned backend_calls, backend_ep1_at;

static int backend_cmd(void *opaque, const vmsig_event *cmd, uint32_t principal,
                       vmsig_reply *reply)
{
    backend_calls++;
    if (cmd->endpoint == 1) {
        backend_ep1_at = backend_calls;
    }
    if (cmd->kind == VMSIG_CMD_VM && cmd->u.cmd.op == VMSIG_VM_QUERY) {
        vmsig_wire_vminfo vi = { .state = VMSIG_RS_RUNNING, .running = 1, .vcpus = 2,
                                 .endpoint = cmd->endpoint, .ram_size = 1u << 20 };
        g_strlcpy(vi.name, "testvm", sizeof(vi.name));
        memcpy(reply->body, &vi, sizeof(vi));
        /* Always the tail, as the QEMU glue does; the core trims it. */
        vmsig_wire_vminfo_host host = { .pid = (uint32_t)getpid() };
        memcpy(reply->body + sizeof(vi), &host, sizeof(host));
        reply->len = sizeof(vi) + sizeof(host);
    }
    return 0;
}

static const vmsig_backend_ops backend = { .command = backend_cmd };

static void pump(fx *f, int ms)
{
    vmsig_loop_run(f->core, NULL, ms);
}

static void dispatch_now(fx *f)
{
    for (int i = 0; i < 4; i++) {
        vmsig_core_dispatch(f->core);
    }
}

static int peer_connect(fx *f, peer *p)
{
    memset(p, 0, sizeof(*p));
    p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    g_assert_cmpint(p->fd, >=, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, f->path, sizeof(sa.sun_path));
    int rc = connect(p->fd, (struct sockaddr *)&sa, sizeof(sa));
    g_assert_cmpint(rc, ==, 0);
    p->rd = vmsig__wire_reader_new(VMSIG_WIRE_S2C);
    dispatch_now(f);
    return 0;
}

static void peer_close(peer *p)
{
    if (p->fd >= 0) {
        close(p->fd);
    }
    p->fd = -1;
    vmsig__wire_reader_free(p->rd);
    p->rd = NULL;
}

/* Write all bytes (with fds on the first sendmsg), running the core when the
 * socket is full. */
static void peer_write(fx *f, peer *p, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    const uint8_t *b = buf;
    int first = 1;
    while (len || first) {
        struct iovec iov = { (void *)b, len };
        union {
            char c[CMSG_SPACE(64 * sizeof(int))];
            struct cmsghdr a;
        } cm;
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (first && nfds) {
            memset(&cm, 0, sizeof(cm));
            msg.msg_control = cm.c;
            msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
            memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
        }
        ssize_t n = sendmsg(p->fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            pump(f, 5);
            continue;
        }
        if (n < 0) {
            return; /* the server closed on us: fine, the test checks why */
        }
        first = 0;
        b += n;
        len -= (size_t)n;
    }
}

static void peer_frame(fx *f, peer *p, uint16_t kind, uint64_t id, uint32_t ep, const void *pl,
                       uint32_t len)
{
    uint8_t buf[sizeof(vmsig_wire_hdr) + 2048];
    g_assert_cmpuint(len, <=, 2048);
    vmsig_wire_hdr h = { .kind = kind, .len = len, .id = id, .endpoint = ep };
    memcpy(buf, &h, sizeof(h));
    if (len) {
        memcpy(buf + sizeof(h), pl, len);
    }
    peer_write(f, p, buf, sizeof(h) + len, NULL, 0);
}

/* Next frame from the server within ms: 1, 0 (timeout), -EPIPE (closed). */
static int peer_next(fx *f, peer *p, vmsig_wire_frame *fr, uint8_t *payload, int ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
    for (;;) {
        int rc = vmsig__wire_reader_next(p->rd, fr);
        g_assert_cmpint(rc, >=, 0);
        if (rc == 1) {
            if (payload) {
                memcpy(payload, fr->payload, fr->hdr.len);
            }
            fr->payload = payload;
            for (unsigned i = 0; i < fr->nfds; i++) {
                close(fr->fds[i]);
            }
            return 1;
        }
        rc = vmsig__wire_reader_fill(p->rd, p->fd);
        if (rc > 0) {
            continue;
        }
        if (rc == -EPIPE) {
            return -EPIPE;
        }
        g_assert_cmpint(rc, ==, -EAGAIN);
        if (g_get_monotonic_time() > end) {
            return 0;
        }
        pump(f, 2);
    }
}

/* Read and drop whatever the server has sent so far. */
static void peer_drain(peer *p)
{
    vmsig_wire_frame fr;
    for (;;) {
        int rc = vmsig__wire_reader_next(p->rd, &fr);
        g_assert_cmpint(rc, >=, 0);
        if (rc == 1) {
            for (unsigned i = 0; i < fr.nfds; i++) {
                close(fr.fds[i]);
            }
            continue;
        }
        if (vmsig__wire_reader_fill(p->rd, p->fd) <= 0) {
            return;
        }
    }
}

/* Skip events; return the first REPLY or BYE. */
static int peer_wait(fx *f, peer *p, vmsig_wire_frame *fr, uint8_t *payload, int ms)
{
    for (;;) {
        int rc = peer_next(f, p, fr, payload, ms);
        if (rc != 1 || fr->hdr.kind == VMSIG_MSG_REPLY || fr->hdr.kind == VMSIG_MSG_BYE ||
            fr->hdr.kind == VMSIG_MSG_WELCOME) {
            return rc;
        }
    }
}

/* The server says BYE(status) with text containing `words`, then closes. */
static void expect_bye(fx *f, peer *p, int status, const char *words)
{
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    int rc = peer_wait(f, p, &fr, pl, 3000);
    if (rc == 1 && fr.hdr.kind == VMSIG_MSG_REPLY) {
        rc = peer_wait(f, p, &fr, pl, 3000);
    }
    g_assert_cmpint(rc, ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_BYE);
    g_assert_cmpint(fr.hdr.status, ==, status);
    vmsig_wire_bye bye;
    memcpy(&bye, pl, sizeof(bye));
    bye.text[sizeof(bye.text) - 1] = '\0';
    if (words) {
        if (!strstr(bye.text, words)) {
            g_error("BYE text '%s' does not name '%s'", bye.text, words);
        }
    }
    g_assert_cmpint(peer_next(f, p, &fr, pl, 3000), ==, -EPIPE);
}

static vmsig_wire_hello mkhello(const char *token)
{
    vmsig_wire_hello h;
    memset(&h, 0, sizeof(h));
    h.major = VMSIG_WIRE_MAJOR;
    h.minor = VMSIG_WIRE_MINOR;
    h.features = VMSIG_FEATURES_KNOWN;
    h.sub.source_mask = VMSIG_SRC_ALL;
    h.sub.endpoint_mask = ~0ull;
    if (token) {
        memcpy(h.token, token, strlen(token));
    }
    return h;
}

static void peer_attach(fx *f, peer *p, const char *token)
{
    peer_connect(f, p);
    vmsig_wire_hello h = mkhello(token);
    peer_frame(f, p, VMSIG_MSG_HELLO, 1, 0, &h, sizeof(h));
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(f, p, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_WELCOME);
    memcpy(&p->welcome, pl, sizeof(p->welcome));
}

/* A command and its reply status. */
static int peer_call(fx *f, peer *p, uint16_t kind, uint32_t ep, const void *pl, uint32_t len,
                     uint64_t id)
{
    peer_frame(f, p, kind, id, ep, pl, len);
    vmsig_wire_frame fr;
    uint8_t buf[2048];
    g_assert_cmpint(peer_wait(f, p, &fr, buf, 3000), ==, 1);
    if (fr.hdr.kind == VMSIG_MSG_BYE) {
        g_error("BYE %d '%.*s' instead of a REPLY to id %" G_GUINT64_FORMAT, fr.hdr.status,
                (int)sizeof(vmsig_wire_bye), (const char *)buf, id);
    }
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
    g_assert_cmpuint(fr.hdr.id, ==, id);
    return fr.hdr.status;
}

static void publish_runstate(fx *f, uint32_t ep, uint32_t state)
{
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.dir = VMSIG_DIR_UP;
    ev.kind = VMSIG_EV_RUNSTATE;
    ev.endpoint = ep;
    ev.u.seam.state = state;
    ev.u.seam.running = state == VMSIG_RS_RUNNING;
    g_assert_cmpint(vmsig_core_publish(f->core, &ev), ==, 0);
}

/* The core and the witness still work: a command round trip and an event. */
static void witness_ok(fx *f)
{
    g_assert_cmpint(peer_call(f, &f->witness, VMSIG_CMD_NOP, 0, NULL, 0, ++f->witness_id), ==, 0);
    publish_runstate(f, 0, VMSIG_RS_PAUSED);
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    for (;;) {
        g_assert_cmpint(peer_next(f, &f->witness, &fr, pl, 3000), ==, 1);
        if (fr.hdr.kind == VMSIG_EV_RUNSTATE && !(fr.hdr.flags & VMSIG_F_SNAPSHOT)) {
            break;
        }
    }
    vmsig_wire_seam s;
    memcpy(&s, pl, sizeof(s));
    g_assert_cmpuint(s.state, ==, VMSIG_RS_PAUSED);
    publish_runstate(f, 0, VMSIG_RS_RUNNING);
    do {
        g_assert_cmpint(peer_next(f, &f->witness, &fr, pl, 3000), ==, 1);
    } while (fr.hdr.kind != VMSIG_EV_RUNSTATE);
}

static void fx_setup_cfg(fx *f, const vmsig_core_config *over)
{
    memset(f, 0, sizeof(*f));
    f->dir = g_dir_make_tmp("vmsig-sock-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->path = g_build_filename(f->dir, "ctl.sock", NULL);
    char *text = g_strdup_printf("uid:%u endpoints=0,1 caps=OBSERVE,VM,MEMCTX,INPUT\n"
                                 "token:observer endpoints=0 caps=OBSERVE\n"
                                 "token:root endpoints=all caps=all priority=10\n",
                                 (unsigned)getuid());
    int err = 0;
    char eb[256];
    f->grants = vmsig_grants_parse(text, &err, eb, sizeof(eb));
    g_free(text);
    g_assert_nonnull(f->grants);
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION };
    if (over) {
        cfg = *over;
    }
    cfg.backend = &backend;
    cfg.on_detach = on_detach;
    cfg.log_opaque = &f->det;
    f->core = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(f->core);
    g_assert_cmpint(vmsig_core_listen(f->core, f->path, f->grants), ==, 0);
    publish_runstate(f, 0, VMSIG_RS_RUNNING);
    peer_attach(f, &f->witness, NULL);
    g_assert_cmpuint(vmsig_core_control_count(f->core), ==, 1);
}

static void fx_setup(fx *f, gconstpointer data)
{
    fx_setup_cfg(f, NULL);
}

static void fx_teardown(fx *f, gconstpointer data)
{
    peer_close(&f->witness);
    vmsig_core_free(f->core);
    vmsig_grants_free(f->grants);
    g_assert_false(g_file_test(f->path, G_FILE_TEST_EXISTS)); /* unlinked on free */
    rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
}

/* ---- bad input ---- */

static void test_truncated_header(fx *f, gconstpointer d)
{
    int before = count_fds();
    peer p;
    peer_connect(f, &p);
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_HELLO, .len = sizeof(vmsig_wire_hello) };
    peer_write(f, &p, &h, 10, NULL, 0);
    pump(f, 20);
    peer_close(&p);
    pump(f, 50);
    g_assert_cmpint(count_fds(), ==, before);
    witness_ok(f);
}

static void test_oversized(fx *f, gconstpointer d)
{
    /* An oversized HELLO before the handshake, an oversized command after
     * it: -EMSGSIZE; only the header is ever sent. */
    for (int attached = 0; attached < 2; attached++) {
        peer p;
        if (attached) {
            peer_attach(f, &p, NULL);
        } else {
            peer_connect(f, &p);
        }
        vmsig_wire_hdr h = { .kind = attached ? VMSIG_CMD_MEMWRITE : VMSIG_MSG_HELLO,
                             .len = VMSIG_WIRE_MAX_PAYLOAD + 1 };
        peer_write(f, &p, &h, sizeof(h), NULL, 0);
        expect_bye(f, &p, -EMSGSIZE, "limit");
        peer_close(&p);
        witness_ok(f);
    }
    g_assert_cmpint(f->det.last_why, ==, -EMSGSIZE);
    /* A first frame that is not HELLO is -EPROTO whatever its size or kind:
     * a stranger learns nothing else before the handshake. */
    static const struct {
        uint16_t kind;
        uint32_t len;
    } first[] = {
        { VMSIG_CMD_MEMWRITE, VMSIG_WIRE_MAX_PAYLOAD + 1 }, /* too big */
        { VMSIG_CMD_VM, 3 },                                /* wrong size */
        { 0x7777, 0 },                                      /* unknown kind */
        { VMSIG_EV_RUNSTATE, 16 },                          /* wrong direction */
    };
    for (size_t i = 0; i < G_N_ELEMENTS(first); i++) {
        peer p;
        peer_connect(f, &p);
        vmsig_wire_hdr h = { .kind = first[i].kind, .len = first[i].len };
        peer_write(f, &p, &h, sizeof(h), NULL, 0);
        expect_bye(f, &p, -EPROTO, "expected HELLO first");
        peer_close(&p);
    }
    witness_ok(f);
}

static void test_unknown_kind(fx *f, gconstpointer d)
{
    peer p;
    peer_attach(f, &p, NULL);
    peer_frame(f, &p, 0x7777, 5, 0, NULL, 0);
    expect_bye(f, &p, -EPROTO, "unknown frame kind 0x7777");
    peer_close(&p);
    g_assert_cmpint(f->det.last_why, ==, -EPROTO);
    /* A server-only kind from a client is refused the same way. */
    peer_attach(f, &p, NULL);
    vmsig_wire_seam s = { 0 };
    peer_frame(f, &p, VMSIG_EV_RUNSTATE, 5, 0, &s, sizeof(s));
    expect_bye(f, &p, -EPROTO, "may not be sent by the client");
    peer_close(&p);
    witness_ok(f);
}

/* An unknown command kind is answered -EOPNOTSUPP and the connection
 * stays: a newer client learns what this server lacks without losing it. */
static void test_unknown_command(fx *f, gconstpointer d)
{
    peer p;
    peer_attach(f, &p, NULL);
    uint8_t pl[12] = { 1, 2, 3 };
    g_assert_cmpint(peer_call(f, &p, 0x1abc, 0, pl, sizeof(pl), 7), ==, -EOPNOTSUPP);
    g_assert_cmpint(peer_call(f, &p, 0x1fff, 0, NULL, 0, 8), ==, -EOPNOTSUPP);
    g_assert_cmpint(peer_call(f, &p, VMSIG_CMD_NOP, 0, NULL, 0, 9), ==, 0);
    peer_close(&p);
    witness_ok(f);
}

/* A payload tail on a kind that has none is a framing error. */
static void test_tail_on_fixed_kind(fx *f, gconstpointer d)
{
    static const struct {
        uint16_t kind;
        uint32_t len;
        const char *words;
    } cases[] = {
        { VMSIG_CMD_VM, sizeof(vmsig_wire_cmd) + 4, "expected 8" },
        { VMSIG_CMD_NOP, 4, "expected 0" },
        { VMSIG_MSG_SUBSCRIBE, sizeof(vmsig_wire_sub) + 8, "expected 16" },
        { VMSIG_CMD_ACQUIRE, sizeof(vmsig_wire_cmd) + 1, "expected 8" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        peer p;
        uint8_t pl[64] = { 0 };
        pl[0] = 1;
        peer_attach(f, &p, NULL);
        peer_frame(f, &p, cases[i].kind, 5, 0, pl, cases[i].len);
        expect_bye(f, &p, -EBADMSG, cases[i].words);
        peer_close(&p);
    }
    witness_ok(f);
}

/* Header fields a client must leave 0: flags, ts_ns, status. */
static void test_reserved_header(fx *f, gconstpointer d)
{
    for (int which = 0; which < 3; which++) {
        peer p;
        peer_attach(f, &p, NULL);
        vmsig_wire_hdr h = { .kind = VMSIG_CMD_NOP, .id = 3 };
        if (which == 0) {
            h.flags = VMSIG_F_SNAPSHOT;
        } else if (which == 1) {
            h.ts_ns = 1;
        } else {
            h.status = -1;
        }
        peer_write(f, &p, &h, sizeof(h), NULL, 0);
        expect_bye(f, &p, -EPROTO, "must be 0 from a client");
        peer_close(&p);
    }
    /* HELLO and SUBSCRIBE are about no VM: endpoint 0. */
    peer p;
    peer_connect(f, &p);
    vmsig_wire_hello hello = mkhello(NULL);
    peer_frame(f, &p, VMSIG_MSG_HELLO, 1, 3, &hello, sizeof(hello));
    expect_bye(f, &p, -EPROTO, "HELLO names endpoint 3");
    peer_close(&p);
    peer_attach(f, &p, NULL);
    vmsig_wire_sub sub = { .source_mask = VMSIG_SRC_ALL, .endpoint_mask = 1 };
    peer_frame(f, &p, VMSIG_MSG_SUBSCRIBE, 2, 1, &sub, sizeof(sub));
    expect_bye(f, &p, -EPROTO, "SUBSCRIBE names endpoint 1");
    peer_close(&p);
    witness_ok(f);
}

/* Reserved payload fields: HELLO flags and sub.reserved refuse the
 * handshake with -EINVAL; SUBSCRIBE's, a command's arg and MEMWRITE's flags
 * get REPLY -EINVAL and the connection stays. */
static void test_reserved_payload(fx *f, gconstpointer d)
{
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    for (int which = 0; which < 2; which++) {
        peer p;
        peer_connect(f, &p);
        vmsig_wire_hello h = mkhello(NULL);
        if (which == 0) {
            h.flags = 0x100;
        } else {
            h.sub.reserved = 1;
        }
        peer_frame(f, &p, VMSIG_MSG_HELLO, 4, 0, &h, sizeof(h));
        g_assert_cmpint(peer_wait(f, &p, &fr, pl, 3000), ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
        g_assert_cmpint(fr.hdr.status, ==, -EINVAL);
        expect_bye(f, &p, -EINVAL, "reserved field");
        peer_close(&p);
    }
    peer p;
    peer_attach(f, &p, "root");
    vmsig_wire_sub sub = { .source_mask = VMSIG_SRC_ALL, .reserved = 2, .endpoint_mask = 1 };
    g_assert_cmpint(peer_call(f, &p, VMSIG_MSG_SUBSCRIBE, 0, &sub, sizeof(sub), 10), ==, -EINVAL);
    vmsig_wire_cmd cmd = { .op = VMSIG_VM_QUERY, .arg = 1 };
    g_assert_cmpint(peer_call(f, &p, VMSIG_CMD_VM, 0, &cmd, sizeof(cmd), 11), ==, -EINVAL);
    cmd.arg = 0;
    g_assert_cmpint(peer_call(f, &p, VMSIG_CMD_VM, 0, &cmd, sizeof(cmd), 12), ==, 0);
    vmsig_wire_memwrite mw = { .gpa = 0x1000, .len = 4, .flags = 1 };
    uint8_t mwbuf[sizeof(mw) + 4] = { 0 };
    memcpy(mwbuf, &mw, sizeof(mw));
    g_assert_cmpint(peer_call(f, &p, VMSIG_CMD_MEMWRITE, 0, mwbuf, sizeof(mwbuf), 13), ==, -EINVAL);
    sub.reserved = 0;
    g_assert_cmpint(peer_call(f, &p, VMSIG_MSG_SUBSCRIBE, 0, &sub, sizeof(sub), 14), ==, 0);
    peer_close(&p);
    witness_ok(f);
}

/* Offered features: the answer is the intersection with the server's; bits
 * this server does not know are dropped, not refused; a newer minor is
 * answered with ours. */
static void test_negotiation(fx *f, gconstpointer d)
{
    static const struct {
        uint64_t offer;
        uint16_t minor;
        uint64_t want;
    } cases[] = {
        { VMSIG_FEATURES_KNOWN, VMSIG_WIRE_MINOR, VMSIG_FEATURES_KNOWN },
        { 0, VMSIG_WIRE_MINOR, 0 },                                          /* none */
        { ~0ull, VMSIG_WIRE_MINOR, VMSIG_FEATURES_KNOWN },                   /* unknown bits */
        { (1ull << 63) | (1ull << 40), VMSIG_WIRE_MINOR, 0 },                /* only unknown */
        { VMSIG_FEATURES_KNOWN, VMSIG_WIRE_MINOR + 7, VMSIG_FEATURES_KNOWN }, /* newer minor */
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        peer p;
        peer_connect(f, &p);
        vmsig_wire_hello h = mkhello(NULL);
        h.features = cases[i].offer;
        h.minor = cases[i].minor;
        peer_frame(f, &p, VMSIG_MSG_HELLO, 1, 0, &h, sizeof(h));
        vmsig_wire_frame fr;
        uint8_t pl[2048];
        g_assert_cmpint(peer_wait(f, &p, &fr, pl, 3000), ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_WELCOME);
        g_assert_cmpuint(fr.hdr.id, ==, 1);
        vmsig_wire_welcome w;
        memcpy(&w, pl, sizeof(w));
        g_assert_cmpuint(w.major, ==, VMSIG_WIRE_MAJOR);
        g_assert_cmpuint(w.minor, ==, VMSIG_WIRE_MINOR);
        g_assert_cmphex(w.features, ==, cases[i].want);
        g_assert_cmpuint(w.reserved, ==, 0);
        /* The query reply carries the host tail only if negotiated. */
        vmsig_wire_cmd q = { .op = VMSIG_VM_QUERY };
        peer_frame(f, &p, VMSIG_CMD_VM, 2, 0, &q, sizeof(q));
        g_assert_cmpint(peer_wait(f, &p, &fr, pl, 3000), ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
        g_assert_cmpint(fr.hdr.status, ==, 0);
        g_assert_cmpuint(fr.hdr.len, ==,
                         sizeof(vmsig_wire_vminfo) +
                             (cases[i].want & VMSIG_FEAT_VMINFO_HOST ? sizeof(vmsig_wire_vminfo_host) : 0));
        peer_close(&p);
    }
    witness_ok(f);
}

/* A server configured with fewer features than the client offers. */
static void test_server_fewer_features(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION,
                              .features_off = VMSIG_FEAT_VMINFO_HOST };
    fx_setup_cfg(&f, &cfg);
    g_assert_cmphex(f.witness.welcome.features, ==, VMSIG_FEATURES_KNOWN & ~VMSIG_FEAT_VMINFO_HOST);
    vmsig_wire_cmd q = { .op = VMSIG_VM_QUERY };
    peer_frame(&f, &f.witness, VMSIG_CMD_VM, 2, 0, &q, sizeof(q));
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(&f, &f.witness, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.len, ==, sizeof(vmsig_wire_vminfo));
    fx_teardown(&f, NULL);

    /* Without SNAPSHOT: its command is unknown, its event
     * never sent (the next frame after publishing one is the NOP's REPLY). */
    cfg.features_off = VMSIG_FEAT_SNAPSHOT;
    fx_setup_cfg(&f, &cfg);
    g_assert_cmphex(f.witness.welcome.features & VMSIG_FEAT_SNAPSHOT, ==, 0);
    vmsig_wire_snapshot sc = { .op = VMSIG_SNAP_LIST };
    peer_frame(&f, &f.witness, VMSIG_CMD_SNAPSHOT, 2, 0, &sc, sizeof(sc));
    g_assert_cmpint(peer_wait(&f, &f.witness, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
    g_assert_cmpint(fr.hdr.status, ==, -EOPNOTSUPP);
    vmsig_event sev = { .kind = VMSIG_EV_SNAPSHOT, .endpoint = 0,
                        .u.snap = { .what = VMSIG_SNAP_SAVE, .name = "s0" } };
    g_assert_cmpint(vmsig_core_publish(f.core, &sev), ==, 0);
    peer_frame(&f, &f.witness, VMSIG_CMD_NOP, 4, 0, NULL, 0);
    g_assert_cmpint(peer_wait(&f, &f.witness, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
    g_assert_cmpuint(fr.hdr.id, ==, 4);
    fx_teardown(&f, NULL);

    /* A version-1 config (no features_off) offers everything. */
    cfg = (vmsig_core_config){ .version = 1 };
    fx_setup_cfg(&f, &cfg);
    g_assert_cmphex(f.witness.welcome.features, ==, VMSIG_FEATURES_KNOWN);
    fx_teardown(&f, NULL);

    int err = 0;
    cfg.version = VMSIG_CORE_CONFIG_VERSION + 1;
    g_assert_null(vmsig_core_new(&cfg, &err));
    g_assert_cmpint(err, ==, -EINVAL);
    cfg.version = 0;
    g_assert_null(vmsig_core_new(&cfg, &err));
    g_assert_cmpint(err, ==, -EINVAL);
}

/* A frame must be complete within handshake_timeout_ms of its first byte
 * (after the handshake too): a frame sent in pieces inside that time is
 * fine; a half-sent one gets BYE(-ETIMEDOUT), never a connection open for
 * ever. */
static void test_half_sent_frame(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .handshake_timeout_ms = 300 };
    fx_setup_cfg(&f, &cfg);
    peer p;
    peer_attach(&f, &p, NULL);
    /* In two pieces, 10 ms apart: fine. */
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_NOP, .id = 77 };
    peer_write(&f, &p, &h, 16, NULL, 0);
    pump(&f, 10);
    peer_write(&f, &p, (const uint8_t *)&h + 16, sizeof(h) - 16, NULL, 0);
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(&f, &p, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
    g_assert_cmpuint(fr.hdr.id, ==, 77);
    /* A header and half a payload, then silence. */
    vmsig_wire_cmd q = { .op = VMSIG_VM_QUERY };
    uint8_t buf[sizeof(vmsig_wire_hdr) + sizeof(q)];
    h = (vmsig_wire_hdr){ .kind = VMSIG_CMD_VM, .len = sizeof(q), .id = 78 };
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &q, sizeof(q));
    gint64 t0 = g_get_monotonic_time();
    peer_write(&f, &p, buf, sizeof(h) + 3, NULL, 0);
    expect_bye(&f, &p, -ETIMEDOUT, "half-sent frame: 35 bytes");
    gint64 dt = (g_get_monotonic_time() - t0) / 1000;
    g_assert_cmpint(dt, >=, 250);
    g_assert_cmpint(f.det.last_why, ==, -ETIMEDOUT);
    peer_close(&p);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* Loss is visible, filtering is not loss: a control subscribed to endpoint 1
 * only, while endpoint 0 is just as busy, sees 1, 2, 3, ... when it reads
 * as it goes; when it stops reading, the coalesced events are exactly the
 * gaps: frames received + gaps = events published for it. */
static void test_loss_visible(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .queue_limit = 8 };
    fx_setup_cfg(&f, &cfg);
    peer p;
    peer_connect(&f, &p);
    vmsig_wire_hello h = mkhello(NULL);
    h.sub.endpoint_mask = 1ull << 1;
    h.sub.source_mask = 1u << VMSIG_SRC_SEAM;
    peer_frame(&f, &p, VMSIG_MSG_HELLO, 1, 0, &h, sizeof(h));
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(&f, &p, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_WELCOME);

    /* Reading as it goes: no gaps, though endpoint 0 events interleave. */
    uint64_t next = 1;
    for (int i = 0; i < 50; i++) {
        publish_runstate(&f, 0, i % 2 ? VMSIG_RS_PAUSED : VMSIG_RS_RUNNING);
        publish_runstate(&f, 1, i % 2 ? VMSIG_RS_PAUSED : VMSIG_RS_RUNNING);
        g_assert_cmpint(peer_next(&f, &p, &fr, pl, 3000), ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_EV_RUNSTATE);
        g_assert_cmpuint(fr.hdr.endpoint, ==, 1);
        g_assert_cmpuint(fr.hdr.id, ==, next);
        next++;
        peer_drain(&f.witness);
    }

    /* Not reading: state events coalesce, and each one lost is a gap. */
    const int n = 5000;
    for (int i = 0; i < n; i++) {
        publish_runstate(&f, 0, i % 2 ? VMSIG_RS_PAUSED : VMSIG_RS_RUNNING);
        publish_runstate(&f, 1, i % 2 ? VMSIG_RS_PAUSED : VMSIG_RS_RUNNING);
        vmsig_core_dispatch(f.core);
        peer_drain(&f.witness);
    }
    uint64_t frames = 0, lost = 0, last = next - 1;
    for (;;) {
        int rc = peer_next(&f, &p, &fr, pl, 200);
        if (rc == 0) {
            break;
        }
        g_assert_cmpint(rc, ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_EV_RUNSTATE);
        g_assert_cmpuint(fr.hdr.id, >, last);
        lost += fr.hdr.id - last - 1;
        last = fr.hdr.id;
        frames++;
    }
    g_assert_cmpuint(last, ==, next - 1 + (uint64_t)n); /* numbers only for its events */
    g_assert_cmpuint(frames + lost, ==, (uint64_t)n);
    g_assert_cmpuint(lost, >, 0);
    g_assert_cmpuint(frames, <, (uint64_t)n);
    peer_close(&p);
    fx_teardown(&f, NULL);
}

static void test_wrong_size(fx *f, gconstpointer d)
{
    peer p;
    peer_attach(f, &p, NULL);
    uint8_t four[4] = { 1, 0, 0, 0 };
    peer_frame(f, &p, VMSIG_CMD_VM, 5, 0, four, sizeof(four));
    expect_bye(f, &p, -EBADMSG, "expected 8");
    peer_close(&p);
    /* Inner length disagreeing with the frame. */
    peer_attach(f, &p, NULL);
    struct {
        vmsig_wire_input in;
        char text[4];
    } in = { { .op = VMSIG_INPUT_TEXT, .len = 9 }, "abcd" };
    peer_frame(f, &p, VMSIG_CMD_INPUT, 6, 0, &in, sizeof(in));
    expect_bye(f, &p, -EBADMSG, "INPUT");
    peer_close(&p);
    g_assert_cmpint(f->det.last_why, ==, -EBADMSG);
    witness_ok(f);
}

static void test_split_bytes(fx *f, gconstpointer d)
{
    peer p;
    peer_connect(f, &p);
    vmsig_wire_hello hello = mkhello(NULL);
    uint8_t buf[sizeof(vmsig_wire_hdr) + sizeof(hello)];
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_HELLO, .len = sizeof(hello), .id = 1 };
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &hello, sizeof(hello));
    for (size_t i = 0; i < sizeof(buf); i++) {
        peer_write(f, &p, buf + i, 1, NULL, 0);
        dispatch_now(f);
    }
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(f, &p, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_WELCOME);
    vmsig_wire_cmd q = { .op = VMSIG_VM_QUERY };
    h = (vmsig_wire_hdr){ .kind = VMSIG_CMD_VM, .len = sizeof(q), .id = 77 };
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &q, sizeof(q));
    for (size_t i = 0; i < sizeof(h) + sizeof(q); i++) {
        peer_write(f, &p, buf + i, 1, NULL, 0);
        dispatch_now(f);
    }
    g_assert_cmpint(peer_wait(f, &p, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
    g_assert_cmpuint(fr.hdr.id, ==, 77);
    g_assert_cmpint(fr.hdr.status, ==, 0);
    g_assert_cmpuint(fr.hdr.len, ==, sizeof(vmsig_wire_vminfo) + sizeof(vmsig_wire_vminfo_host));
    vmsig_wire_vminfo vi;
    memcpy(&vi, pl, sizeof(vi));
    g_assert_cmpstr(vi.name, ==, "testvm");
    peer_close(&p);
    witness_ok(f);
}

static void test_many_in_one_write(fx *f, gconstpointer d)
{
    peer p;
    peer_attach(f, &p, NULL);
    enum { N = 200 };
    static uint8_t buf[N * sizeof(vmsig_wire_hdr)];
    for (int i = 0; i < N; i++) {
        vmsig_wire_hdr h = { .kind = VMSIG_CMD_NOP, .id = 1000 + (uint64_t)i };
        memcpy(buf + i * sizeof(h), &h, sizeof(h));
    }
    peer_write(f, &p, buf, sizeof(buf), NULL, 0);
    for (int i = 0; i < N; i++) {
        vmsig_wire_frame fr;
        g_assert_cmpint(peer_wait(f, &p, &fr, NULL, 3000), ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
        g_assert_cmpuint(fr.hdr.id, ==, 1000 + (uint64_t)i);
        g_assert_cmpint(fr.hdr.status, ==, 0);
    }
    peer_close(&p);
    witness_ok(f);
}

static void test_fds_undeclared(fx *f, gconstpointer d)
{
    int before = count_fds();
    peer p;
    peer_attach(f, &p, NULL);
    int pfd[2];
    g_assert_cmpint(pipe2(pfd, O_CLOEXEC), ==, 0);
    int fds[3] = { pfd[0], pfd[1], pfd[0] };
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_NOP, .id = 9 };
    peer_write(f, &p, &h, sizeof(h), fds, 3);
    close(pfd[0]);
    close(pfd[1]);
    expect_bye(f, &p, -EPROTO, "3 fds on a client frame");
    peer_close(&p);
    pump(f, 10);
    g_assert_cmpint(count_fds(), ==, before);
    witness_ok(f);

    /* Declared on a kind that carries none: refused from the header. */
    peer_attach(f, &p, NULL);
    h.nfds = 1;
    peer_write(f, &p, &h, sizeof(h), NULL, 0);
    expect_bye(f, &p, -EPROTO, "carries none");
    peer_close(&p);
    witness_ok(f);
}

static void test_too_many_fds(fx *f, gconstpointer d)
{
    int before = count_fds();
    peer p;
    peer_attach(f, &p, NULL);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int fds[VMSIG_WIRE_MAX_FDS + 4];
    for (unsigned i = 0; i < G_N_ELEMENTS(fds); i++) {
        fds[i] = nul;
    }
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_NOP, .id = 9 };
    peer_write(f, &p, &h, sizeof(h), fds, G_N_ELEMENTS(fds));
    close(nul);
    expect_bye(f, &p, -EPROTO, "truncated");
    peer_close(&p);
    pump(f, 10);
    g_assert_cmpint(count_fds(), ==, before);
    witness_ok(f);
}

static void test_cmd_before_hello(fx *f, gconstpointer d)
{
    peer p;
    peer_connect(f, &p);
    vmsig_wire_cmd c = { .op = VMSIG_VM_QUERY };
    peer_frame(f, &p, VMSIG_CMD_VM, 3, 0, &c, sizeof(c));
    expect_bye(f, &p, -EPROTO, "expected HELLO");
    peer_close(&p);
    witness_ok(f);
}

static void test_second_hello(fx *f, gconstpointer d)
{
    peer p;
    peer_attach(f, &p, NULL);
    vmsig_wire_hello h = mkhello(NULL);
    peer_frame(f, &p, VMSIG_MSG_HELLO, 2, 0, &h, sizeof(h));
    expect_bye(f, &p, -EPROTO, "second HELLO");
    peer_close(&p);
    g_assert_cmpint(f->det.last_why, ==, -EPROTO);
    witness_ok(f);
}

static void test_wrong_version(fx *f, gconstpointer d)
{
    peer p;
    peer_connect(f, &p);
    vmsig_wire_hello h = mkhello(NULL);
    h.major = 99;
    peer_frame(f, &p, VMSIG_MSG_HELLO, 42, 0, &h, sizeof(h));
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(f, &p, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
    g_assert_cmpuint(fr.hdr.id, ==, 42);
    g_assert_cmpint(fr.hdr.status, ==, -EPROTONOSUPPORT);
    expect_bye(f, &p, -EPROTONOSUPPORT, "version 99");
    peer_close(&p);
    witness_ok(f);
}

static void test_no_grant(fx *f, gconstpointer d)
{
    /* A table with no entry for our uid and no default. */
    int err;
    vmsig_grants *only = vmsig_grants_parse("token:right endpoints=0 caps=OBSERVE\n", &err, NULL, 0);
    g_assert_nonnull(only);
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION };
    vmsig_core *c2 = vmsig_core_new(&cfg, &err);
    char *path2 = g_build_filename(f->dir, "other.sock", NULL);
    g_assert_cmpint(vmsig_core_listen(c2, path2, only), ==, 0);
    vmsig_core *keep = f->core;
    char *keep_path = f->path;
    f->core = c2;
    f->path = path2;
    for (int tok = 0; tok < 2; tok++) {
        peer p;
        peer_connect(f, &p);
        vmsig_wire_hello h = mkhello(tok ? "wrong" : NULL);
        peer_frame(f, &p, VMSIG_MSG_HELLO, 1, 0, &h, sizeof(h));
        vmsig_wire_frame fr;
        uint8_t pl[2048];
        g_assert_cmpint(peer_wait(f, &p, &fr, pl, 3000), ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
        g_assert_cmpint(fr.hdr.status, ==, -EPERM);
        char *uidtext = g_strdup_printf("uid %u", (unsigned)getuid());
        expect_bye(f, &p, -EPERM, uidtext);
        g_free(uidtext);
        peer_close(&p);
    }
    g_assert_cmpuint(vmsig_core_control_count(c2), ==, 0);
    f->core = keep;
    f->path = keep_path;
    vmsig_core_free(c2);
    vmsig_grants_free(only);
    g_free(path2);
    witness_ok(f);
}

static void test_retired_bit(fx *f, gconstpointer d)
{
    int err = 0;
    char eb[256] = "";
    vmsig_grants *g = vmsig_grants_parse("token:old endpoints=0 caps=0x4\n", &err, eb, sizeof(eb));
    g_assert_null(g);
    g_assert_cmpint(err, ==, -EINVAL);
    g_assert_nonnull(strstr(eb, "retired"));
    g = vmsig_grants_parse("token:old endpoints=0 caps=0x10\n", &err, eb, sizeof(eb));
    g_assert_null(g);
    g_assert_cmpint(err, ==, -EINVAL);
    vmsig_grant bad = { .principal = 7, .endpoint_mask = 1, .caps = VMSIG_CAP_OBSERVE | 0x4 };
    g_assert_cmpint(vmsig_grants_set(f->grants, 4242, NULL, &bad), ==, -EINVAL);
    /* The core refuses such a grant too, whoever hands it over. */
    static const vmsig_control_ops ops = { .name = "x" };
    vmsig_sub sub = { VMSIG_SRC_ALL, ~0ull };
    err = 0;
    g_assert_null(vmsig_core_attach(f->core, &ops, NULL, &bad, &sub, &err));
    g_assert_cmpint(err, ==, -EINVAL);
    witness_ok(f);
}

static void test_beyond_grant(fx *f, gconstpointer d)
{
    peer p;
    peer_attach(f, &p, "observer");
    g_assert_cmpuint(p.welcome.caps, ==, VMSIG_CAP_OBSERVE);
    g_assert_cmpuint(p.welcome.endpoint_mask, ==, 1);
    vmsig_wire_cmd c = { .op = VMSIG_PWR_RESET };
    g_assert_cmpint(peer_call(f, &p, VMSIG_CMD_POWER, 0, &c, sizeof(c), 5), ==, -EPERM);
    /* Still connected. */
    g_assert_cmpint(peer_call(f, &p, VMSIG_CMD_NOP, 0, NULL, 0, 6), ==, 0);
    /* Endpoint outside the mask, with the capability (our uid has VM on 0,1). */
    peer q;
    peer_attach(f, &q, NULL);
    c.op = VMSIG_VM_QUERY;
    g_assert_cmpint(peer_call(f, &q, VMSIG_CMD_VM, 0, &c, sizeof(c), 7), ==, 0);
    g_assert_cmpint(peer_call(f, &q, VMSIG_CMD_VM, 5, &c, sizeof(c), 8), ==, -EPERM);
    g_assert_cmpint(peer_call(f, &q, VMSIG_CMD_VM, 1, &c, sizeof(c), 9), ==, 0);
    peer_close(&p);
    peer_close(&q);
    witness_ok(f);
}

static void test_close_midframe(fx *f, gconstpointer d)
{
    int before = count_fds();
    peer p;
    peer_attach(f, &p, NULL);
    g_assert_cmpuint(vmsig_core_control_count(f->core), ==, 2);
    int n0 = f->det.count;
    uint8_t buf[sizeof(vmsig_wire_hdr) + 4];
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_VM, .len = 8, .id = 3 };
    memcpy(buf, &h, sizeof(h));
    peer_write(f, &p, buf, sizeof(buf), NULL, 0);
    pump(f, 10);
    peer_close(&p);
    pump(f, 50);
    g_assert_cmpint(f->det.count, ==, n0 + 1);
    g_assert_cmpint(f->det.last_why, ==, -EPIPE);
    g_assert_cmpuint(vmsig_core_control_count(f->core), ==, 1);
    g_assert_cmpint(count_fds(), ==, before);
    witness_ok(f);
}

static void test_handshake_timeout(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .handshake_timeout_ms = 150 };
    fx_setup_cfg(&f, &cfg);
    peer p;
    peer_connect(&f, &p);
    gint64 t0 = g_get_monotonic_time();
    expect_bye(&f, &p, -ETIMEDOUT, "no HELLO within 150 ms");
    gint64 dt = (g_get_monotonic_time() - t0) / 1000;
    g_assert_cmpint(dt, >=, 100);
    g_assert_cmpint(dt, <, 2000);
    peer_close(&p);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* Stop reading, publish a flood: the publisher never blocks; the control is
 * dropped with BYE(-ENOBUFS) once the socket and its queue are full. */
static void test_slow_reader(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .queue_limit = 8 };
    fx_setup_cfg(&f, &cfg);
    peer p;
    peer_attach(&f, &p, NULL);
    int n0 = f.det.count;
    gint64 t0 = g_get_monotonic_time();
    for (int i = 0; i < 20000 && f.det.count == n0; i++) {
        vmsig_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.dir = VMSIG_DIR_UP;
        ev.kind = VMSIG_EV_RESET;
        ev.endpoint = 1;
        g_assert_cmpint(vmsig_core_publish(f.core, &ev), ==, 0);
        /* The witness reads as it goes. */
        vmsig_core_dispatch(f.core);
        peer_drain(&f.witness);
    }
    g_assert_cmpint(f.det.count, ==, n0 + 1);
    g_assert_cmpint(f.det.last_why, ==, -ENOBUFS);
    g_assert_cmpint((g_get_monotonic_time() - t0) / 1000, <, 5000);
    /* The slow reader finally reads: events, then the BYE. */
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    int events = 0;
    for (;;) {
        g_assert_cmpint(peer_next(&f, &p, &fr, pl, 3000), ==, 1);
        if (fr.hdr.kind == VMSIG_MSG_BYE) {
            break;
        }
        events++;
    }
    g_assert_cmpint(fr.hdr.status, ==, -ENOBUFS);
    g_assert_cmpint(events, >, 0);
    g_assert_cmpint(peer_next(&f, &p, &fr, pl, 3000), ==, -EPIPE);
    peer_close(&p);

    /* State events coalesce instead: the control stays and sees the last state. */
    peer q;
    peer_attach(&f, &q, NULL);
    n0 = f.det.count;
    for (int i = 0; i < 20000; i++) {
        publish_runstate(&f, 1, i % 2 ? VMSIG_RS_PAUSED : VMSIG_RS_RUNNING);
        vmsig_core_dispatch(f.core);
        peer_drain(&f.witness);
    }
    publish_runstate(&f, 1, VMSIG_RS_DEBUG);
    g_assert_cmpint(f.det.count, ==, n0);
    uint64_t last_seq = 0, gaps = 0;
    vmsig_wire_seam s = { 0 };
    for (;;) {
        int rc = peer_next(&f, &q, &fr, pl, 200);
        if (rc == 0) {
            break;
        }
        g_assert_cmpint(rc, ==, 1);
        if (fr.hdr.kind != VMSIG_EV_RUNSTATE || fr.hdr.endpoint != 1) {
            continue;
        }
        g_assert_cmpuint(fr.hdr.id, >, last_seq); /* seq only grows */
        if (last_seq && fr.hdr.id != last_seq + 1) {
            gaps++;
        }
        last_seq = fr.hdr.id;
        memcpy(&s, pl, sizeof(s));
    }
    g_assert_cmpuint(s.state, ==, VMSIG_RS_DEBUG);
    g_assert_cmpuint(gaps, >, 0); /* coalescing happened, and is visible */
    peer_close(&q);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* A client that pipelines commands without reading replies is throttled
 * (the server stops reading it), not dropped; every reply arrives in order. */
static void test_pipelined(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .queue_limit = 8 };
    fx_setup_cfg(&f, &cfg);
    peer p;
    peer_attach(&f, &p, NULL);
    enum { N = 30000 };
    int n0 = f.det.count;
    uint64_t sent = 0, got = 0;
    int stalled = 0;
    while (got < N) {
        /* Write until the socket pushes back. */
        while (sent < N) {
            vmsig_wire_hdr h = { .kind = VMSIG_CMD_NOP, .id = sent + 1 };
            ssize_t n = send(p.fd, &h, sizeof(h), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                g_assert_cmpint(errno, ==, EAGAIN);
                stalled++;
                break;
            }
            g_assert_cmpint(n, ==, sizeof(h)); /* 32 bytes never split on a unix socket */
            sent++;
        }
        for (int i = 0; i < 4; i++) {
            vmsig_core_dispatch(f.core);
        }
        if (stalled < 3) {
            continue; /* let both directions fill up first */
        }
        vmsig_wire_frame fr;
        while (got < sent) {
            int rc = peer_next(&f, &p, &fr, NULL, 50);
            if (rc == 0) {
                break;
            }
            g_assert_cmpint(rc, ==, 1);
            if (fr.hdr.kind == VMSIG_EV_RUNSTATE) {
                continue; /* the snapshot */
            }
            g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
            g_assert_cmpuint(fr.hdr.id, ==, ++got);
        }
    }
    g_assert_cmpint(stalled, >=, 3);
    g_assert_cmpint(f.det.count, ==, n0);
    peer_close(&p);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* ---- listener ---- */

static void test_listener(void)
{
    char *dir = g_dir_make_tmp("vmsig-listen-XXXXXX", NULL);
    char *path = g_build_filename(dir, "s", NULL);
    int err;
    vmsig_grants *g = vmsig_grants_parse("default endpoints=all caps=OBSERVE\n", &err, NULL, 0);
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION };
    vmsig_core *a = vmsig_core_new(&cfg, &err);
    vmsig_core *b = vmsig_core_new(&cfg, &err);

    /* A regular file is never replaced. */
    g_assert_true(g_file_set_contents(path, "precious", -1, NULL));
    g_assert_cmpint(vmsig_core_listen(a, path, g), ==, -EEXIST);
    char *txt = NULL;
    g_assert_true(g_file_get_contents(path, &txt, NULL, NULL));
    g_assert_cmpstr(txt, ==, "precious");
    g_free(txt);
    unlink(path);

    /* A stale socket (bound, nobody listening) is replaced. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(s, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    close(s);
    g_assert_cmpint(vmsig_core_listen(a, path, g), ==, 0);
    struct stat st;
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpuint(st.st_mode & 07777, ==, 0600);

    /* A live one is not. */
    g_assert_cmpint(vmsig_core_listen(b, path, g), ==, -EADDRINUSE);
    /* One listener per core. */
    char *other = g_build_filename(dir, "t", NULL);
    g_assert_cmpint(vmsig_core_listen(a, other, g), ==, -EALREADY);
    g_assert_false(g_file_test(other, G_FILE_TEST_EXISTS));

    vmsig_core_free(a);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_cmpint(vmsig_core_listen(b, path, g), ==, 0);
    vmsig_core_free(b);
    vmsig_grants_free(g);
    rmdir(dir);
    g_free(other);
    g_free(path);
    g_free(dir);
}

static void test_cycles(fx *f, gconstpointer d)
{
    /* Warm up (lazy allocations), then count. */
    peer p;
    peer_attach(f, &p, NULL);
    peer_close(&p);
    pump(f, 20);
    int before = count_fds();
    for (int i = 0; i < 1000; i++) {
        if (i % 2) {
            peer_attach(f, &p, i % 4 == 1 ? "observer" : NULL);
        } else {
            peer_connect(f, &p);
        }
        peer_close(&p);
        dispatch_now(f);
    }
    pump(f, 100);
    g_assert_cmpuint(vmsig_core_control_count(f->core), ==, 1);
    g_assert_cmpint(count_fds(), ==, before);
    witness_ok(f);
}

/* Out of fds: a pending peer is accepted and closed at once (it sees EOF)
 * instead of keeping the listener readable and the loop spinning. */
static void test_out_of_fds(fx *f, gconstpointer d)
{
    struct rlimit old, low;
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
    peer p;
    peer_connect(f, &p); /* a pending handshake beside it */
    peer victim;
    memset(&victim, 0, sizeof(victim));
    victim.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(victim.fd, >=, 0);
    /* Every fd number below the lowest free one is in use: with the limit
     * there, the core cannot get an fd for the accepted socket. */
    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(lowest, >=, 0);
    close(lowest);
    low = old;
    low.rlim_cur = (rlim_t)lowest;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, f->path, sizeof(sa.sun_path));
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
    g_assert_cmpint(connect(victim.fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    int handled = 0;
    for (int i = 0; i < 10; i++) {
        handled += vmsig_core_dispatch(f->core);
    }
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
    g_assert_cmpint(handled, <, 100); /* not spinning on the listener */
    struct timeval tv = { .tv_sec = 3 };
    setsockopt(victim.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* Refused at once: a BYE(-EMFILE) it can read, then EOF. */
    struct {
        vmsig_wire_hdr h;
        vmsig_wire_bye b;
    } bye;
    g_assert_cmpint(read(victim.fd, &bye, sizeof(bye)), ==, sizeof(bye));
    g_assert_cmpuint(bye.h.kind, ==, VMSIG_MSG_BYE);
    g_assert_cmpint(bye.h.status, ==, -EMFILE);
    g_assert_nonnull(strstr(bye.b.text, "out of file descriptors"));
    char b;
    g_assert_cmpint(read(victim.fd, &b, 1), ==, 0);
    close(victim.fd);
    peer_close(&p);
    pump(f, 50);
    witness_ok(f);
}

/* ---- hoarding and spinning peers ---- */

/* A peer that floods commands without reading gets its input paused; if it
 * then shuts the socket down in both directions but keeps the fd, the server
 * sees EPOLLHUP for ever: it must detach the control (-EPIPE), not spin. */
static void test_hup_while_paused(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .queue_limit = 8 };
    fx_setup_cfg(&f, &cfg);
    peer p;
    peer_attach(&f, &p, NULL);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 2);
    int n0 = f.det.count;
    /* Write until the socket pushes back and the server has nothing left
     * to do: its replies fill our receive buffer, its queue is full, it has
     * stopped reading us (paused: it waits for EPOLLOUT only). */
    uint64_t id = 0;
    for (int idle = 0; idle < 3;) {
        int sent = 0;
        for (;;) {
            vmsig_wire_hdr h = { .kind = VMSIG_CMD_NOP, .id = ++id };
            ssize_t n = send(p.fd, &h, sizeof(h), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                g_assert_cmpint(errno, ==, EAGAIN);
                break;
            }
            g_assert_cmpint(n, ==, sizeof(h));
            sent++;
        }
        int handled = 0;
        for (int i = 0; i < 4; i++) {
            handled += vmsig_core_dispatch(f.core);
        }
        idle = sent || handled ? 0 : idle + 1;
    }
    g_assert_cmpint(shutdown(p.fd, SHUT_RDWR), ==, 0); /* and keep the fd open */
    int busy = 0;
    for (int i = 0; i < 2000; i++) {
        busy += vmsig_core_dispatch(f.core) > 0;
    }
    g_assert_cmpint(busy, <=, 3); /* detached at once, then idle */
    g_assert_cmpint(vmsig_core_dispatch(f.core), ==, 0);
    g_assert_cmpint(f.det.count, ==, n0 + 1);
    g_assert_cmpint(f.det.last_why, ==, -EPIPE);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 1);
    peer_close(&p);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* No client frame carries descriptors: fds that arrive before HELLO (on a
 * partial header) are closed at once, not kept until the handshake times out. */
static void test_fds_before_hello(fx *f, gconstpointer d)
{
    int before = count_fds();
    peer p;
    peer_connect(f, &p);
    int pfd[2];
    g_assert_cmpint(pipe2(pfd, O_CLOEXEC), ==, 0);
    int fds[VMSIG_WIRE_MAX_FDS];
    for (unsigned i = 0; i < G_N_ELEMENTS(fds); i++) {
        fds[i] = pfd[0];
    }
    for (int i = 0; i < 4; i++) {
        peer_write(f, &p, "x", 1, fds, G_N_ELEMENTS(fds));
    }
    close(pfd[0]);
    close(pfd[1]);
    dispatch_now(f);
    /* Only the peer's own socket is left: the server holds none of them
     * (and has closed the connection). */
    g_assert_cmpint(count_fds(), ==, before + 1);
    expect_bye(f, &p, -EPROTO, "16 fds on a client frame");
    peer_close(&p);
    g_assert_cmpint(count_fds(), ==, before);
    witness_ok(f);
}

/* Connections still in the handshake are capped (max(16, max_controls / 4)):
 * one more is accepted and closed at once (EOF); an attached control does
 * not count, and a closed pending one frees its place. */
/* Peers that fit under max_controls all get in, however many connect at
 * once: past the handshake slots they wait (parked, then the backlog) and
 * start as slots free. Beyond max_controls the answer is BYE(-EMFILE). */
static void test_burst(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .max_controls = 64 };
    fx_setup_cfg(&f, &cfg); /* the witness is one of the 64 */
    enum { N = 70 };
    peer p[N];
    /* All connect and send HELLO before the server runs at all. */
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, f.path, sizeof(sa.sun_path));
    for (int i = 0; i < N; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        p[i].fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        g_assert_cmpint(connect(p[i].fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
        p[i].rd = vmsig__wire_reader_new(VMSIG_WIRE_S2C);
        vmsig_wire_hello h = mkhello(NULL);
        vmsig_wire_hdr hh = { .kind = VMSIG_MSG_HELLO, .len = sizeof(h), .id = 1 };
        uint8_t buf[sizeof(hh) + sizeof(h)];
        memcpy(buf, &hh, sizeof(hh));
        memcpy(buf + sizeof(hh), &h, sizeof(h));
        g_assert_cmpint(write(p[i].fd, buf, sizeof(buf)), ==, sizeof(buf));
    }
    int welcomed = 0, emfile = 0;
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    for (int i = 0; i < N; i++) {
        int rc = peer_wait(&f, &p[i], &fr, pl, 5000);
        g_assert_cmpint(rc, ==, 1);
        if (fr.hdr.kind == VMSIG_MSG_WELCOME) {
            welcomed++;
            continue;
        }
        /* Never a bare close: REPLY(-EMFILE) to its HELLO then BYE(-EMFILE)
         * (attach refused), or BYE(-EMFILE) at once (no place to wait). */
        g_assert_cmpint(fr.hdr.status, ==, -EMFILE);
        if (fr.hdr.kind == VMSIG_MSG_REPLY) {
            expect_bye(&f, &p[i], -EMFILE, NULL);
        } else {
            g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_BYE);
        }
        emfile++;
    }
    g_assert_cmpint(welcomed, ==, 63);
    g_assert_cmpint(emfile, ==, N - 63);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 64);
    for (int i = 0; i < N; i++) {
        peer_close(&p[i]);
    }
    pump(&f, 50);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* One uid cannot hold more than half the handshake slots: a flood of
 * silent connections from it is parked, then refused with BYE(-EMFILE),
 * and a peer of another uid with a grant still gets in at once. */
static void test_flood_other_uid(void)
{
    if (getuid() != 0) {
        g_test_skip("needs root, to connect as a second uid");
        return;
    }
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .max_controls = 64 };
    fx_setup_cfg(&f, &cfg);
    vmsig_grants_free(f.grants);
    int err = 0;
    char *text = g_strdup_printf("uid:0 endpoints=all caps=all\n"
                                 "uid:65534 endpoints=0 caps=OBSERVE,VM\n");
    f.grants = vmsig_grants_parse(text, &err, NULL, 0);
    g_free(text);
    g_assert_nonnull(f.grants);
    /* A second listener is not allowed; the fixture's reads grants through
     * the pointer it was given, so swap the table it points at. */
    vmsig_core_free(f.core);
    cfg.backend = &backend;
    cfg.on_detach = on_detach;
    cfg.log_opaque = &f.det;
    f.core = vmsig_core_new(&cfg, &err);
    g_assert_cmpint(vmsig_core_listen(f.core, f.path, f.grants), ==, 0);
    g_assert_cmpint(chmod(f.dir, 0711), ==, 0); /* let uid 65534 reach the socket */
    g_assert_cmpint(chmod(f.path, 0666), ==, 0);
    peer_close(&f.witness);
    publish_runstate(&f, 0, VMSIG_RS_RUNNING);
    peer_attach(&f, &f.witness, NULL);

    /* The flood: 200 connections of uid 0 that never say HELLO. */
    enum { FLOOD = 200 };
    static peer fl[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        peer_connect(&f, &fl[i]);
    }
    dispatch_now(&f);
    int refused = 0;
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    for (int i = 0; i < FLOOD; i++) {
        if (peer_next(&f, &fl[i], &fr, pl, 0) == 1 && fr.hdr.kind == VMSIG_MSG_BYE) {
            g_assert_cmpint(fr.hdr.status, ==, -EMFILE);
            refused++;
        }
    }
    /* 8 handshakes (half of 16) and 56 parked (64 - 8) for uid 0. */
    g_assert_cmpint(refused, ==, FLOOD - 8 - 56);

    /* Another uid, while the flood holds its places: in at once. */
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0) {
            _exit(2);
        }
        vmsig_client_config cc = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = f.path,
                                   .timeout_ms = 1000 };
        int e = 0;
        vmsig_client *c = vmsig_client_connect(&cc, &e);
        if (!c) {
            _exit(3);
        }
        vmsig_wire_vminfo vi;
        int r = vmsig_client_vm(c, 0, VMSIG_VM_QUERY, &vi);
        uint32_t principal = vmsig_client_welcome(c)->principal;
        vmsig_client_close(c);
        _exit(r == 0 && principal == 65534 ? 0 : 4);
    }
    int status = 0;
    gint64 end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (waitpid(pid, &status, WNOHANG) == 0 && g_get_monotonic_time() < end) {
        pump(&f, 5);
    }
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    for (int i = 0; i < FLOOD; i++) {
        peer_close(&fl[i]);
    }
    pump(&f, 50);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* Before HELLO only a HELLO header is taken: a MEMWRITE header announcing
 * 1 MiB is refused as soon as its 32 bytes are in, nothing is buffered. */
static void test_big_frame_before_hello(fx *f, gconstpointer d)
{
    peer p;
    peer_connect(f, &p);
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_MEMWRITE, .id = 4,
                         .len = sizeof(vmsig_wire_memwrite) + VMSIG_MEMWRITE_MAX };
    peer_write(f, &p, &h, sizeof(h), NULL, 0); /* the header only, never the payload */
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(f, &p, &fr, pl, 1000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_BYE);
    g_assert_cmpint(fr.hdr.status, ==, -EPROTO);
    vmsig_wire_bye bye;
    memcpy(&bye, pl, sizeof(bye));
    bye.text[sizeof(bye.text) - 1] = '\0';
    g_assert_nonnull(strstr(bye.text, "expected HELLO first"));
    g_assert_cmpint(peer_next(f, &p, &fr, pl, 1000), ==, -EPIPE);
    peer_close(&p);
    witness_ok(f);
}

/* Which framing error wins: the connection's size limit (WELCOME
 * max_payload) first, -EMSGSIZE whatever the kind; then the kind's own size,
 * -EBADMSG. Both from the header alone. */
static void test_refusal_order(fx *f, gconstpointer d)
{
    uint32_t len = (uint32_t)sizeof(vmsig_wire_input) + VMSIG_TEXT_MAX + 1; /* 1041 */
    for (int root = 0; root < 2; root++) {
        peer p;
        peer_attach(f, &p, root ? "root" : NULL);
        g_assert_cmpuint(p.welcome.max_payload, ==, root ? VMSIG_WIRE_MAX_PAYLOAD : len - 1);
        vmsig_wire_hdr h = { .kind = VMSIG_CMD_INPUT, .id = 4, .len = len };
        peer_write(f, &p, &h, sizeof(h), NULL, 0); /* the header only */
        expect_bye(f, &p, root ? -EBADMSG : -EMSGSIZE, root ? "expected 16..1040" : "at most 1040");
        peer_close(&p);
    }
    witness_ok(f);
}

/* A control whose grant has no MEMWRITE cannot make the server buffer a
 * large frame: refused from the header; a small MEMWRITE is just EPERM. */
static void test_big_frame_without_memwrite(fx *f, gconstpointer d)
{
    peer p;
    peer_attach(f, &p, "observer");
    g_assert_false(p.welcome.caps & VMSIG_CAP_MEMWRITE);
    g_assert_cmpuint(p.welcome.max_payload, ==, 1040); /* sizeof(vmsig_wire_input) + VMSIG_TEXT_MAX */
    uint8_t small[sizeof(vmsig_wire_memwrite) + 8] = { 0 };
    vmsig_wire_memwrite mw = { .gpa = 0x1000, .len = 8 };
    memcpy(small, &mw, sizeof(mw));
    g_assert_cmpint(peer_call(f, &p, VMSIG_CMD_MEMWRITE, 0, small, sizeof(small), 3), ==, -EPERM);
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_MEMWRITE, .id = 4,
                         .len = sizeof(vmsig_wire_memwrite) + 65536 };
    peer_write(f, &p, &h, sizeof(h), NULL, 0); /* the header only, never the payload */
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    for (;;) {
        g_assert_cmpint(peer_wait(f, &p, &fr, pl, 1000), ==, 1);
        if (fr.hdr.kind == VMSIG_MSG_BYE) {
            break;
        }
    }
    g_assert_cmpint(fr.hdr.status, ==, -EMSGSIZE);
    vmsig_wire_bye bye;
    memcpy(&bye, pl, sizeof(bye));
    bye.text[sizeof(bye.text) - 1] = '\0';
    g_assert_nonnull(strstr(bye.text, "takes at most"));
    peer_close(&p);
    witness_ok(f);
}

static int ro_reopen(int fd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(ro, >=, 0);
    return ro;
}

/* A control that never reads holds at most one queued MEMCTX (and its fds)
 * per endpoint: each new map replaces the unsent one. */
/* A control that re-subscribes to MEMCTX again and again and never reads
 * gets one map's descriptors in flight, not one per snapshot: the next map
 * waits until the last one is read (the issue saw 1041 fds in flight from
 * such controls, and the kernel then refused well-behaved ones). */
static void test_fds_in_flight(fx *f, gconstpointer d)
{
    int mfd = memfd_create("vmsig-test-ram", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(mfd, 4096), ==, 0);
    int ro = ro_reopen(mfd);
    vmsig_wire_memseg seg = { .gpa = 0, .size = 4096, .offset = 0, .fd_index = 0 };
    vmsig_wire_memctx mc = { .ram_size = 4096, .nseg = 1 };
    g_assert_cmpint(vmsig_core_publish_memctx(f->core, 0, &mc, &seg, &ro, 1), ==, 0);
    close(ro);
    peer_drain(&f->witness);
    peer p;
    peer_attach(f, &p, NULL); /* OBSERVE + MEMCTX: gets the map as a snapshot */
    enum { TOGGLES = 200 };
    for (int i = 0; i < TOGGLES; i++) {
        vmsig_wire_sub sub = { .source_mask = i % 2 ? VMSIG_SRC_ALL : 1u << VMSIG_SRC_SEAM,
                               .endpoint_mask = ~0ull };
        peer_frame(f, &p, VMSIG_MSG_SUBSCRIBE, (uint64_t)i + 10, 0, &sub, sizeof(sub));
        dispatch_now(f);
    }
    pump(f, 30);
    /* Now read everything: the descriptors that were in flight, plus at most
     * the one map let go once the last was read. */
    unsigned fds = 0, memctx = 0, replies = 0;
    vmsig_wire_frame fr;
    uint8_t pl[4096];
    for (;;) {
        vmsig_wire_frame raw;
        int rc = vmsig__wire_reader_next(p.rd, &raw);
        g_assert_cmpint(rc, >=, 0);
        if (rc == 1) {
            fds += raw.nfds;
            for (unsigned i = 0; i < raw.nfds; i++) {
                close(raw.fds[i]);
            }
            memctx += raw.hdr.kind == VMSIG_EV_MEMCTX;
            replies += raw.hdr.kind == VMSIG_MSG_REPLY;
            continue;
        }
        rc = vmsig__wire_reader_fill(p.rd, p.fd);
        if (rc > 0) {
            continue;
        }
        g_assert_cmpint(rc, ==, -EAGAIN);
        if (replies == TOGGLES) {
            pump(f, 30); /* a held map goes out once the last is read */
            if (vmsig__wire_reader_fill(p.rd, p.fd) <= 0 &&
                vmsig__wire_reader_next(p.rd, &raw) == 0) {
                break;
            }
            if (raw.nfds) {
                fds += raw.nfds;
                close(raw.fds[0]);
                memctx++;
            }
            continue;
        }
        pump(f, 5);
    }
    (void)fr;
    (void)pl;
    g_assert_cmpuint(replies, ==, TOGGLES);
    g_assert_cmpuint(fds, <=, 3);    /* the snapshot at attach, one held, one let go */
    g_assert_cmpuint(memctx, >=, 1);
    g_assert_cmpint(f->det.count, ==, 0); /* nobody was dropped for it */
    peer_close(&p);
    close(mfd);
    witness_ok(f);
}

static void test_memctx_slow_reader(fx *f, gconstpointer d)
{
    int mfd = memfd_create("vmsig-test-ram", MFD_CLOEXEC);
    g_assert_cmpint(mfd, >=, 0);
    g_assert_cmpint(ftruncate(mfd, 8192), ==, 0);
    int ro[2] = { ro_reopen(mfd), ro_reopen(mfd) };
    vmsig_wire_memseg segs[2] = { { .gpa = 0, .size = 4096, .offset = 0, .fd_index = 0 },
                                  { .gpa = 4096, .size = 4096, .offset = 4096, .fd_index = 1 } };
    peer p;
    peer_attach(f, &p, NULL); /* subscribed to MEMCTX; never reads from here on */
    int n0 = f->det.count;
    int before = count_fds();
    enum { N = 1000 };
    for (int i = 0; i < N; i++) {
        vmsig_wire_memctx mc = { .ram_size = 8192, .nseg = 2 };
        g_assert_cmpint(vmsig_core_publish_memctx(f->core, 0, &mc, segs, ro, 2), ==, 0);
        vmsig_core_dispatch(f->core);
        peer_drain(&f->witness);
    }
    /* The core's current map (2) + one queued map (2) + slack. */
    g_assert_cmpint(count_fds(), <=, before + 2 + 2 + 2);
    g_assert_cmpint(f->det.count, ==, n0); /* coalesced, not dropped */
    /* The slow reader finally reads: the last map is the newest. */
    vmsig_wire_frame fr;
    uint8_t pl[4096];
    uint64_t last_gen = 0;
    for (;;) {
        int rc = peer_next(f, &p, &fr, pl, 200);
        if (rc == 0) {
            break;
        }
        g_assert_cmpint(rc, ==, 1);
        if (fr.hdr.kind == VMSIG_EV_MEMCTX) {
            vmsig_wire_memctx mc;
            memcpy(&mc, pl, sizeof(mc));
            g_assert_cmpuint(mc.generation, >, last_gen);
            last_gen = mc.generation;
        }
    }
    g_assert_cmpuint(last_gen, ==, N);
    peer_close(&p);
    close(ro[0]);
    close(ro[1]);
    close(mfd);
    witness_ok(f);
}

/* The fd the listener keeps in reserve (/dev/null), found as the one that
 * appeared with vmsig_core_listen. */
static int find_spare(const uint8_t *had, int max)
{
    for (int fd = 0; fd < max; fd++) {
        if (had[fd] || fcntl(fd, F_GETFD) < 0) {
            continue;
        }
        char link[64], target[256];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            if (!strcmp(target, "/dev/null")) {
                return fd;
            }
        }
    }
    return -1;
}

/* Out of fds and the spare cannot be taken back: the listener stops polling
 * for a while (no spin on a pending peer), then recovers its spare and
 * accepts again. */
static void test_out_of_fds_no_spare(fx *f, gconstpointer d)
{
    enum { MAXFD = 4096 };
    static uint8_t had[MAXFD];
    for (int fd = 0; fd < MAXFD; fd++) {
        had[fd] = fcntl(fd, F_GETFD) >= 0;
    }
    int err;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION };
    vmsig_core *c2 = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(c2);
    char *path2 = g_build_filename(f->dir, "other.sock", NULL);
    g_assert_cmpint(vmsig_core_listen(c2, path2, f->grants), ==, 0);
    int spare = find_spare(had, MAXFD);
    g_assert_cmpint(spare, >=, 0);
    vmsig_core *keep = f->core;
    char *keep_path = f->path;
    f->core = c2;
    f->path = path2;

    peer victim;
    memset(&victim, 0, sizeof(victim));
    victim.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(victim.fd, >=, 0);
    victim.rd = vmsig__wire_reader_new(VMSIG_WIRE_S2C);
    /* Fill every free slot below the spare, and put the limit at the spare:
     * closing the spare then frees a slot nobody may use, so it cannot be
     * reopened either. */
    int fill[MAXFD], nfill = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        if (fd > spare) {
            close(fd);
            break;
        }
        fill[nfill++] = fd;
    }
    struct rlimit old, low;
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
    low = old;
    low.rlim_cur = (rlim_t)spare;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, path2, sizeof(sa.sun_path));
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
    g_assert_cmpint(connect(victim.fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    int busy = 0;
    for (int i = 0; i < 200; i++) {
        busy += vmsig_core_dispatch(c2) > 0;
    }
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
    for (int i = 0; i < nfill; i++) {
        close(fill[i]);
    }
    g_assert_cmpint(busy, <=, 3); /* not spinning on the listener */
    /* Fds are back: the listener retries, takes its spare back and the
     * victim, which attaches. */
    for (int fd = 0; fd < MAXFD; fd++) {
        had[fd] = fcntl(fd, F_GETFD) >= 0;
    }
    fcntl(victim.fd, F_SETFL, O_NONBLOCK);
    pump(f, 300);
    g_assert_cmpint(find_spare(had, MAXFD), >=, 0);
    vmsig_wire_hello h = mkhello(NULL);
    peer_frame(f, &victim, VMSIG_MSG_HELLO, 1, 0, &h, sizeof(h));
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(f, &victim, &fr, pl, 3000), ==, 1);
    g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_WELCOME);
    g_assert_cmpuint(vmsig_core_control_count(c2), ==, 1);
    peer_close(&victim);

    f->core = keep;
    f->path = keep_path;
    vmsig_core_free(c2);
    g_free(path2);
    witness_ok(f);
}

/* One control pipelining thousands of commands cannot hold another's: each
 * connection gets a budget of frames per turn (FRAME_BUDGET, 16), so the
 * other's query runs after at most a turn or two of the flood, whatever
 * queue-limit allows (here 65536, where the flood was all handled first). */
static void test_fair_turns(void)
{
    fx f;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .queue_limit = 65536 };
    fx_setup_cfg(&f, &cfg);
    peer a, b;
    peer_attach(&f, &a, NULL);
    peer_attach(&f, &b, NULL);
    enum { FLOOD = 2000 };
    vmsig_wire_cmd q = { .op = VMSIG_VM_QUERY };
    size_t one = sizeof(vmsig_wire_hdr) + sizeof(q);
    uint8_t *buf = g_malloc(one * FLOOD);
    for (int i = 0; i < FLOOD; i++) {
        vmsig_wire_hdr h = { .kind = VMSIG_CMD_VM, .len = sizeof(q), .id = (uint64_t)i + 1 };
        memcpy(buf + i * one, &h, sizeof(h));
        memcpy(buf + i * one + sizeof(h), &q, sizeof(q));
    }
    g_assert_cmpint(write(a.fd, buf, one * FLOOD), ==, (ssize_t)(one * FLOOD));
    g_free(buf);
    /* B's query of endpoint 1, queued behind the flood in time. */
    uint8_t bq[sizeof(vmsig_wire_hdr) + sizeof(q)];
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_VM, .len = sizeof(q), .id = 999, .endpoint = 1 };
    memcpy(bq, &h, sizeof(h));
    memcpy(bq + sizeof(h), &q, sizeof(q));
    g_assert_cmpint(write(b.fd, bq, sizeof(bq)), ==, sizeof(bq));
    unsigned start = backend_calls;
    backend_ep1_at = 0;
    vmsig_wire_frame fr;
    uint8_t pl[2048];
    g_assert_cmpint(peer_wait(&f, &b, &fr, pl, 5000), ==, 1);
    g_assert_cmpuint(fr.hdr.id, ==, 999);
    g_assert_cmpuint(backend_ep1_at, >, start);
    /* At most two turns of the flood went before it. */
    g_assert_cmpuint(backend_ep1_at - start, <=, 2 * 16 + 1);
    /* And the flood is answered in full and in order. */
    for (int i = 0; i < FLOOD; i++) {
        g_assert_cmpint(peer_wait(&f, &a, &fr, pl, 5000), ==, 1);
        g_assert_cmpuint(fr.hdr.kind, ==, VMSIG_MSG_REPLY);
        g_assert_cmpuint(fr.hdr.id, ==, (uint64_t)i + 1);
    }
    peer_close(&a);
    peer_close(&b);
    witness_ok(&f);
    fx_teardown(&f, NULL);
}

/* The fd budget: max_controls that cannot fit under RLIMIT_NOFILE is
 * refused when the listener starts; near the limit a connection is refused
 * with BYE(-EMFILE), keeping the host's reserve. */
static void test_fd_budget(void)
{
    struct rlimit old, low;
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
    char *dir = g_dir_make_tmp("vmsig-fd-XXXXXX", NULL);
    char *path = g_build_filename(dir, "s", NULL);
    low = old;
    low.rlim_cur = 512;
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
    int err = 0;
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .max_controls = 600 };
    vmsig_core *core = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(core);
    g_assert_cmpint(vmsig_core_listen(core, path, NULL), ==, -EMFILE); /* 1200 + 64 > 512 */
    vmsig_core_free(core);
    cfg.max_controls = 200; /* 400 + 64 + 8 <= 512 */
    core = vmsig_core_new(&cfg, &err);
    g_assert_cmpint(vmsig_core_listen(core, path, NULL), ==, 0);
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);

    /* Near the limit: the next connection's fd would eat into the reserve. */
    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close(lowest);
    low.rlim_cur = (rlim_t)lowest + 64; /* the accepted fd gets number `lowest` */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
    for (int i = 0; i < 4; i++) {
        vmsig_core_dispatch(core);
    }
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
    struct {
        vmsig_wire_hdr h;
        vmsig_wire_bye b;
    } bye;
    struct timeval tv = { .tv_sec = 3 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    g_assert_cmpint(read(fd, &bye, sizeof(bye)), ==, sizeof(bye));
    g_assert_cmpint(bye.h.status, ==, -EMFILE);
    g_assert_nonnull(strstr(bye.b.text, "near its file descriptor limit"));
    close(fd);
    vmsig_core_free(core);
    rmdir(dir);
    g_free(path);
    g_free(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define T(name, fn) g_test_add("/sock/" name, fx, NULL, fx_setup, fn, fx_teardown)
    T("truncated-header", test_truncated_header);
    T("oversized-length", test_oversized);
    T("unknown-kind", test_unknown_kind);
    T("wrong-payload-size", test_wrong_size);
    T("unknown-command", test_unknown_command);
    T("tail-on-fixed-kind", test_tail_on_fixed_kind);
    T("reserved-header", test_reserved_header);
    T("reserved-payload", test_reserved_payload);
    T("negotiation", test_negotiation);
    T("refusal-order", test_refusal_order);
    T("split-1-byte-writes", test_split_bytes);
    T("many-frames-one-write", test_many_in_one_write);
    T("fds-undeclared", test_fds_undeclared);
    T("fds-too-many", test_too_many_fds);
    T("command-before-hello", test_cmd_before_hello);
    T("second-hello", test_second_hello);
    T("wrong-version", test_wrong_version);
    T("no-grant", test_no_grant);
    T("retired-bit", test_retired_bit);
    T("beyond-grant", test_beyond_grant);
    T("close-mid-frame", test_close_midframe);
    T("cycles-1000", test_cycles);
    T("out-of-fds", test_out_of_fds);
    T("big-frame-without-memwrite", test_big_frame_without_memwrite);
    T("out-of-fds-no-spare", test_out_of_fds_no_spare);
    T("fds-before-hello", test_fds_before_hello);
    T("big-frame-before-hello", test_big_frame_before_hello);
    T("memctx-slow-reader", test_memctx_slow_reader);
    T("fds-in-flight", test_fds_in_flight);
#undef T
    g_test_add_func("/sock/handshake-timeout", test_handshake_timeout);
    g_test_add_func("/sock/slow-reader", test_slow_reader);
    g_test_add_func("/sock/server-fewer-features", test_server_fewer_features);
    g_test_add_func("/sock/half-sent-frame", test_half_sent_frame);
    g_test_add_func("/sock/loss-visible", test_loss_visible);
    g_test_add_func("/sock/pipelined-commands", test_pipelined);
    g_test_add_func("/sock/listener", test_listener);
    g_test_add_func("/sock/hup-while-paused", test_hup_while_paused);
    g_test_add_func("/sock/burst", test_burst);
    g_test_add_func("/sock/fair-turns", test_fair_turns);
    g_test_add_func("/sock/fd-budget", test_fd_budget);
    g_test_add_func("/sock/flood-other-uid", test_flood_other_uid);
    return g_test_run();
}
