/*
 * client.c - the client library: connect and handshake, receive UP events
 * (with their fds), send DOWN commands and wait for replies, auto-map MEMCTX.
 * Blocking with poll() timeouts over a non-blocking socket; one thread.
 *
 * The server is not trusted (DESIGN.md section 5): events that arrive while we
 * wait for a reply are queued within VMSIG_CLIENT_QUEUE_MAX events and
 * VMSIG_CLIENT_QUEUE_FDS fds (a newer MEMCTX of an endpoint replaces the
 * queued one), every wait ends at its deadline even while frames keep coming,
 * and connect() itself is bounded by the connect timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmsig/vmsig_client.h"
#include "wire.h"

/* An event that arrived while we waited for something else. */
typedef struct qmsg {
    struct qmsg *next;
    vmsig_msg m;
    uint8_t *ool;
} qmsg;

struct vmsig_client {
    int fd;
    int timeout_ms;
    int auto_map;
    vmsig_wire_reader *rd;
    vmsig_wire_writer *wr;
    vmsig_wire_welcome welcome;
    uint64_t next_id;
    uint64_t last_seq; /* delivery seq of the last event vmsig_client_next returned */
    qmsg *qhead, *qtail;
    unsigned qlen, qfds; /* events and fds queued */
    /* What the last vmsig_client_next returned, released at the next call:
     * our own copy of its fds (-1 once taken with vmsig_client_take_fd). */
    int last_fds[VMSIG_WIRE_MAX_FDS];
    unsigned last_nfds;
    uint8_t *last_ool;
    vmsig_memmap *map;
    int gone;
    int bye_status;
    char bye_text[sizeof(vmsig_wire_bye) + 1];
};

static void close_fds(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

static uint64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? 0 : vmsig__now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

static void release_last(vmsig_client *c)
{
    close_fds(c->last_fds, c->last_nfds); /* taken ones are -1 already */
    c->last_nfds = 0;
    free(c->last_ool);
    c->last_ool = NULL;
}

static void qmsg_free(qmsg *q)
{
    close_fds(q->m.fds, q->m.nfds);
    free(q->ool);
    free(q);
}

/* Unlink q (prev is its predecessor or NULL) from the queue. */
static void queue_unlink(vmsig_client *c, qmsg *prev, qmsg *q)
{
    if (prev) {
        prev->next = q->next;
    } else {
        c->qhead = q->next;
    }
    if (c->qtail == q) {
        c->qtail = prev;
    }
    q->next = NULL;
    c->qlen--;
    c->qfds -= q->m.nfds;
}

/* Drop the queued MEMCTX of `endpoint` (there is at most one): a newer one
 * supersedes it. Its fds are closed. */
static void queue_drop_memctx(vmsig_client *c, uint32_t endpoint)
{
    for (qmsg *prev = NULL, *q = c->qhead; q; prev = q, q = q->next) {
        if (q->m.ev.kind == VMSIG_EV_MEMCTX && q->m.ev.endpoint == endpoint) {
            queue_unlink(c, prev, q);
            qmsg_free(q);
            return;
        }
    }
}

/* The connection is dropped by us: later calls see -EPIPE, and
 * vmsig_client_bye() says why. The events already queued stay readable. */
static int drop_connection(vmsig_client *c, int status, const char *why)
{
    c->gone = 1;
    c->bye_status = status;
    snprintf(c->bye_text, sizeof(c->bye_text), "%s", why);
    shutdown(c->fd, SHUT_RDWR); /* the server sees us go; nothing more arrives */
    return status;
}

static void auto_map(vmsig_client *c, qmsg *q)
{
    int err;
    if (q->m.ev.u.memctx.status != 0) {
        vmsig_memmap_unref(c->map); /* the RAM is no longer shareable */
        c->map = NULL;
    } else if (!c->map || q->m.ev.u.memctx.generation >= vmsig_memmap_generation(c->map)) {
        vmsig_memmap *m = vmsig_memmap_new(&q->m.ev, q->m.fds, q->m.nfds, &err);
        if (m) {
            vmsig_memmap_unref(c->map);
            c->map = m;
        }
    }
    close_fds(q->m.fds, q->m.nfds); /* consumed: the map keeps mappings, not fds */
    q->m.nfds = 0;
}

/*
 * Handle one frame. An event is queued; a REPLY with id `want` fills *rep
 * and sets *got. Returns 0, -EPIPE (BYE), -EPROTO, -ENOMEM, -ENOBUFS (queue
 * bound exceeded: the connection is dropped).
 */
static int handle(vmsig_client *c, vmsig_wire_frame *f, uint64_t want, vmsig_reply *rep,
                  int *got)
{
    switch (f->hdr.kind) {
    case VMSIG_MSG_REPLY:
        if (got && f->hdr.id == want) {
            if (rep) {
                rep->status = f->hdr.status;
                rep->len = f->hdr.len;
                memcpy(rep->body, f->payload, f->hdr.len);
            }
            *got = 1;
        }
        return 0; /* a late reply to a call that timed out: dropped */
    case VMSIG_MSG_BYE:
        c->gone = 1;
        c->bye_status = f->hdr.status;
        memcpy(c->bye_text, f->payload, sizeof(vmsig_wire_bye));
        c->bye_text[sizeof(vmsig_wire_bye)] = '\0';
        return -EPIPE;
    case VMSIG_MSG_WELCOME:
        return -EPROTO;
    default:
        break;
    }
    if (f->hdr.kind == VMSIG_EV_MEMCTX) {
        queue_drop_memctx(c, f->hdr.endpoint);
    }
    /* With auto_map a MEMCTX's fds are consumed below, never queued. */
    unsigned qfds = c->auto_map && f->hdr.kind == VMSIG_EV_MEMCTX ? 0 : f->nfds;
    if (c->qlen >= VMSIG_CLIENT_QUEUE_MAX || c->qfds + qfds > VMSIG_CLIENT_QUEUE_FDS) {
        close_fds(f->fds, f->nfds);
        char why[sizeof(c->bye_text)];
        snprintf(why, sizeof(why), "client: over %u events or %u fds queued while waiting "
                 "for a reply", VMSIG_CLIENT_QUEUE_MAX, VMSIG_CLIENT_QUEUE_FDS);
        return drop_connection(c, -ENOBUFS, why);
    }
    qmsg *q = calloc(1, sizeof(*q));
    if (!q) {
        close_fds(f->fds, f->nfds);
        return -ENOMEM;
    }
    vmsig__wire_frame_event(&f->hdr, f->payload, &q->m.ev);
    if (q->m.ev.ool_len) {
        q->ool = malloc(q->m.ev.ool_len);
        if (!q->ool) {
            close_fds(f->fds, f->nfds);
            free(q);
            return -ENOMEM;
        }
        memcpy(q->ool, q->m.ev.ool, q->m.ev.ool_len);
        q->m.ev.ool = q->ool;
    }
    for (unsigned i = 0; i < VMSIG_WIRE_MAX_FDS; i++) {
        q->m.fds[i] = i < f->nfds ? f->fds[i] : -1;
    }
    q->m.nfds = f->nfds;
    if (c->auto_map && f->hdr.kind == VMSIG_EV_MEMCTX) {
        auto_map(c, q);
    }
    if (c->qtail) {
        c->qtail->next = q;
    } else {
        c->qhead = q;
    }
    c->qtail = q;
    c->qlen++;
    c->qfds += q->m.nfds;
    return 0;
}

/*
 * Read and handle frames until *got (if got) or an event is queued (if not),
 * or deadline_ns (0 = never). 0, -ETIMEDOUT, -EPIPE, -EPROTO, -ENOBUFS.
 *
 * The deadline is checked before every read after the first, not only when
 * the socket is empty: a server that never lets it run empty cannot hold us
 * past it. Frames already buffered are handled first, so a timeout never
 * leaves a complete frame behind in the reader (poll() would not tell).
 */
static int pump(vmsig_client *c, uint64_t deadline_ns, uint64_t want, vmsig_reply *rep, int *got)
{
    int filled = 0;
    if (c->gone) {
        return -EPIPE;
    }
    for (;;) {
        vmsig_wire_frame f;
        int rc = vmsig__wire_reader_next(c->rd, &f);
        if (rc < 0) {
            c->gone = 1;
            return -EPROTO;
        }
        if (rc == 1) {
            rc = handle(c, &f, want, rep, got);
            if (rc < 0) {
                return rc;
            }
            if (got ? *got : c->qhead != NULL) {
                return 0;
            }
            continue;
        }
        if (filled && deadline_ns && vmsig__now_ns() >= deadline_ns) {
            return -ETIMEDOUT;
        }
        filled = 1;
        rc = vmsig__wire_reader_fill(c->rd, c->fd);
        if (rc > 0) {
            continue;
        }
        if (rc == -EPIPE) {
            c->gone = 1;
            return -EPIPE;
        }
        if (rc != -EAGAIN) {
            c->gone = 1;
            return rc == -EPROTO ? -EPROTO : -EPIPE;
        }
        int ms = -1;
        if (deadline_ns) {
            uint64_t now = vmsig__now_ns();
            if (now >= deadline_ns) {
                return -ETIMEDOUT;
            }
            ms = (int)((deadline_ns - now + 999999) / 1000000);
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (poll(&p, 1, ms) < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

/* A send failed because the server closed: what it sent before closing is
 * still in our socket, usually a BYE that says why. Take it (and the events
 * before it) without waiting: the server is gone, nothing more will come. */
static void take_last_words(vmsig_client *c)
{
    for (;;) {
        vmsig_wire_frame f;
        int rc = vmsig__wire_reader_next(c->rd, &f);
        if (rc < 0) {
            break;
        }
        if (rc == 1) {
            if (handle(c, &f, 0, NULL, NULL) < 0) {
                break; /* the BYE (or our own queue bound) */
            }
            continue;
        }
        if (vmsig__wire_reader_fill(c->rd, c->fd) <= 0) {
            break;
        }
    }
    c->gone = 1;
}

static int send_frame(vmsig_client *c, const vmsig_wire_hdr *h, const void *p1, size_t l1,
                      const void *p2, size_t l2, uint64_t deadline_ns)
{
    if (c->gone) {
        return -EPIPE;
    }
    int rc = vmsig__wire_writer_push(c->wr, h, p1, l1, p2, l2, NULL, 0, 0);
    if (rc < 0) {
        return rc;
    }
    rc = vmsig__wire_writer_flush_wait(c->wr, c->fd, deadline_ns);
    if (rc == -EPIPE) {
        take_last_words(c);
    }
    return rc;
}

/*
 * connect() on a non-blocking socket, bounded by deadline_ns (0 = never).
 * A full listen backlog makes an AF_UNIX connect fail with EAGAIN, and there
 * is nothing to poll() for until a slot frees up: retry with a short sleep.
 * 0 or -errno (-ETIMEDOUT at the deadline).
 */
static int connect_until(int fd, const struct sockaddr_un *sa, uint64_t deadline_ns)
{
    long pause_ns = 1000000; /* 1 ms, doubling up to 32 ms */
    for (;;) {
        if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
            return 0;
        }
        int e = errno;
        if (e == EINTR) {
            continue;
        }
        if (e != EAGAIN && e != EINPROGRESS && e != EALREADY) {
            return e == EISCONN ? 0 : -e;
        }
        uint64_t now = vmsig__now_ns();
        if (deadline_ns && now >= deadline_ns) {
            return -ETIMEDOUT;
        }
        uint64_t left = deadline_ns ? deadline_ns - now : UINT64_MAX;
        if (e != EAGAIN) {
            /* In progress (not AF_UNIX today): wait for it to finish. */
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            int ms = deadline_ns ? (int)((left + 999999) / 1000000) : -1;
            int n = poll(&p, 1, ms);
            if (n < 0 && errno != EINTR) {
                return -errno;
            }
            if (n > 0) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
                    return -errno;
                }
                return -soerr;
            }
            continue;
        }
        struct timespec ts = { 0, (long)((uint64_t)pause_ns < left ? (uint64_t)pause_ns : left) };
        nanosleep(&ts, NULL);
        if (pause_ns < 32000000) {
            pause_ns *= 2;
        }
    }
}

vmsig_client *vmsig_client_connect(const vmsig_client_config *cfg, int *err)
{
    int dummy, rc;
    if (!err) {
        err = &dummy;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!cfg || cfg->version < 1 || cfg->version > VMSIG_CLIENT_CONFIG_VERSION || !cfg->path ||
        strlen(cfg->path) >= sizeof(sa.sun_path) ||
        (cfg->token && strlen(cfg->token) > VMSIG_TOKEN_MAX)) {
        *err = -EINVAL;
        return NULL;
    }
    strcpy(sa.sun_path, cfg->path);
    vmsig_client *c = calloc(1, sizeof(*c));
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 5000;
    c->auto_map = cfg->auto_map;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    c->rd = vmsig__wire_reader_new(VMSIG_WIRE_S2C);
    c->wr = vmsig__wire_writer_new();
    if (c->fd < 0 || !c->rd || !c->wr) {
        rc = c->fd < 0 ? -errno : -ENOMEM;
        goto fail;
    }
    /* One deadline for connect and handshake together. */
    uint64_t deadline = deadline_of(c->timeout_ms);
    rc = connect_until(c->fd, &sa, deadline);
    if (rc < 0) {
        goto fail;
    }
    vmsig_wire_hello hello;
    memset(&hello, 0, sizeof(hello));
    hello.major = VMSIG_WIRE_MAJOR;
    hello.minor = VMSIG_WIRE_MINOR;
    /* A v1 config has no features_off: offer everything we can parse. */
    hello.features = VMSIG_FEATURES_KNOWN & ~(cfg->version >= 2 ? cfg->features_off : 0);
    hello.sub.source_mask = cfg->sub.source_mask;
    hello.sub.endpoint_mask = cfg->sub.endpoint_mask;
    if (!cfg->sub.source_mask && !cfg->sub.endpoint_mask) {
        hello.sub.source_mask = VMSIG_SRC_ALL;
        hello.sub.endpoint_mask = ~0ull;
    }
    if (cfg->token) {
        memcpy(hello.token, cfg->token, strlen(cfg->token));
    }
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_HELLO, .len = sizeof(hello) };
    rc = send_frame(c, &h, &hello, sizeof(hello), NULL, 0, deadline);
    if (rc == -EPIPE) {
        /* Closed on us: its BYE, if it sent one, says why (take_last_words). */
        rc = c->bye_status < 0 ? c->bye_status : -ECONNRESET;
        if (!c->bye_text[0]) {
            snprintf(c->bye_text, sizeof(c->bye_text),
                     "the server closed the connection before WELCOME");
        }
        goto fail;
    }
    if (rc < 0) {
        goto fail;
    }

    /* The first frame answers the HELLO: WELCOME, or REPLY(status) + BYE. */
    int refused = 0;
    for (;;) {
        vmsig_wire_frame f;
        rc = vmsig__wire_reader_next(c->rd, &f);
        if (rc < 0) {
            snprintf(c->bye_text, sizeof(c->bye_text), "malformed answer to HELLO: %s",
                     vmsig__wire_reader_error(c->rd));
            rc = -EPROTO;
            goto fail;
        }
        if (rc == 1 && refused && f.hdr.kind == VMSIG_MSG_BYE) {
            /* The BYE after a refusing REPLY: keep its words, not its status. */
            memcpy(c->bye_text, f.payload, sizeof(vmsig_wire_bye));
            c->bye_text[sizeof(vmsig_wire_bye)] = '\0';
            rc = refused;
            goto fail;
        }
        if (rc == 1) {
            if (f.hdr.kind == VMSIG_MSG_WELCOME) {
                memcpy(&c->welcome, f.payload, sizeof(c->welcome));
                if (c->welcome.major != VMSIG_WIRE_MAJOR) {
                    rc = -EPROTONOSUPPORT;
                    goto fail;
                }
                /* A server may only answer with what we offered. */
                if ((c->welcome.features & ~hello.features) || c->welcome.reserved ||
                    c->welcome.minor > VMSIG_WIRE_MINOR) {
                    rc = -EPROTO;
                    goto fail;
                }
                *err = 0;
                return c;
            }
            close_fds(f.fds, f.nfds);
            if (f.hdr.kind == VMSIG_MSG_REPLY && f.hdr.status < 0 && !refused) {
                refused = f.hdr.status; /* the BYE with the words follows */
                continue;
            }
            if (f.hdr.kind == VMSIG_MSG_BYE && f.hdr.status < 0) {
                memcpy(c->bye_text, f.payload, sizeof(vmsig_wire_bye));
                c->bye_text[sizeof(vmsig_wire_bye)] = '\0';
                rc = f.hdr.status;
            } else {
                snprintf(c->bye_text, sizeof(c->bye_text), "unexpected %s before WELCOME",
                         vmsig_kind_name(f.hdr.kind));
                rc = -EPROTO;
            }
            goto fail;
        }
        rc = vmsig__wire_reader_fill(c->rd, c->fd);
        if (rc > 0) {
            continue;
        }
        if (rc == -EPIPE) {
            /* Closed before WELCOME (after a refusing REPLY: that status). */
            if (!refused) {
                snprintf(c->bye_text, sizeof(c->bye_text),
                         "the server closed the connection before WELCOME");
            }
            rc = refused ? refused : -ECONNRESET;
            goto fail;
        }
        if (rc != -EAGAIN) {
            snprintf(c->bye_text, sizeof(c->bye_text), "reading the answer to HELLO: %s",
                     strerror(-rc));
            rc = -EPROTO;
            goto fail;
        }
        int ms = -1;
        if (deadline) {
            uint64_t now = vmsig__now_ns();
            if (now >= deadline) {
                rc = -ETIMEDOUT;
                goto fail;
            }
            ms = (int)((deadline - now + 999999) / 1000000);
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        poll(&p, 1, ms);
    }

fail:
    *err = rc;
    if (cfg->version >= 2 && cfg->why && cfg->whylen) {
        snprintf(cfg->why, cfg->whylen, "%s", c->bye_text[0] ? c->bye_text : strerror(-rc));
    }
    vmsig_client_close(c);
    return NULL;
}

const vmsig_wire_welcome *vmsig_client_welcome(const vmsig_client *c)
{
    return &c->welcome;
}

int vmsig_client_fd(const vmsig_client *c)
{
    return c->fd;
}

int vmsig_client_next(vmsig_client *c, vmsig_msg *out, int timeout_ms)
{
    release_last(c);
    if (!c->qhead) {
        int rc = pump(c, deadline_of(timeout_ms), 0, NULL, NULL);
        if (rc < 0) {
            return rc;
        }
    }
    qmsg *q = c->qhead;
    queue_unlink(c, NULL, q);
    *out = q->m;
    /* Delivery seqs count per control: a gap is loss (the server's or our
     * own queue coalesced), never filtering. */
    out->lost = out->ev.seq > c->last_seq + 1 ? out->ev.seq - c->last_seq - 1 : 0;
    c->last_seq = out->ev.seq;
    c->last_nfds = q->m.nfds;
    memcpy(c->last_fds, q->m.fds, sizeof(c->last_fds));
    c->last_ool = q->ool;
    free(q);
    return 0;
}

int vmsig_client_take_fd(vmsig_client *c, unsigned i)
{
    if (i >= c->last_nfds || c->last_fds[i] < 0) {
        return -EBADF;
    }
    int fd = c->last_fds[i];
    c->last_fds[i] = -1;
    return fd;
}

int vmsig_client_call(vmsig_client *c, vmsig_event *cmd, vmsig_reply *reply, int timeout_ms)
{
    release_last(c);
    vmsig_wire_hdr h;
    cmd->dir = VMSIG_DIR_DOWN;
    cmd->seq = ++c->next_id;
    if (cmd->kind < VMSIG_CMD_NOP || vmsig__wire_event_hdr(cmd, 0, &h) < 0) {
        return -EINVAL;
    }
    const vmsig_wire_kind *k = vmsig__wire_kind(cmd->kind);
    uint64_t deadline = deadline_of(timeout_ms);
    int rc = send_frame(c, &h, cmd->u.raw, vmsig__wire_fixed(k), cmd->ool, cmd->ool_len, deadline);
    if (rc < 0) {
        return rc;
    }
    vmsig_reply tmp;
    int got = 0;
    rc = pump(c, deadline, cmd->seq, &tmp, &got);
    if (rc < 0) {
        return rc;
    }
    if (reply) {
        *reply = tmp;
    }
    return tmp.status;
}

static int simple(vmsig_client *c, uint32_t kind, uint32_t endpoint, uint32_t op,
                  vmsig_reply *rep)
{
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    ev.endpoint = endpoint;
    ev.u.cmd.op = op;
    return vmsig_client_call(c, &ev, rep, c->timeout_ms);
}

int vmsig_client_vm(vmsig_client *c, uint32_t endpoint, uint32_t op, vmsig_wire_vminfo *info)
{
    vmsig_reply rep;
    int rc = simple(c, VMSIG_CMD_VM, endpoint, op, &rep);
    if (rc == 0 && info) {
        memset(info, 0, sizeof(*info));
        memcpy(info, rep.body, rep.len < sizeof(*info) ? rep.len : sizeof(*info));
    }
    return rc;
}

int vmsig_client_lifecycle(vmsig_client *c, uint32_t endpoint, uint32_t op)
{
    return simple(c, VMSIG_CMD_LIFECYCLE, endpoint, op, NULL);
}

int vmsig_client_power(vmsig_client *c, uint32_t endpoint, uint32_t op)
{
    return simple(c, VMSIG_CMD_POWER, endpoint, op, NULL);
}

int vmsig_client_acquire(vmsig_client *c, uint32_t endpoint, uint32_t cls)
{
    return simple(c, VMSIG_CMD_ACQUIRE, endpoint, cls, NULL);
}

int vmsig_client_release(vmsig_client *c, uint32_t endpoint, uint32_t cls)
{
    return simple(c, VMSIG_CMD_RELEASE, endpoint, cls, NULL);
}

int vmsig_client_memwrite(vmsig_client *c, uint32_t endpoint, uint64_t gpa,
                          const void *data, uint32_t len)
{
    if (len > VMSIG_MEMWRITE_MAX || (len && !data)) {
        return -EINVAL;
    }
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_CMD_MEMWRITE;
    ev.endpoint = endpoint;
    ev.u.memwrite.gpa = gpa;
    ev.u.memwrite.len = len;
    ev.ool = data;
    ev.ool_len = len;
    return vmsig_client_call(c, &ev, NULL, c->timeout_ms);
}

int vmsig_client_input(vmsig_client *c, uint32_t endpoint, const vmsig_wire_input *in,
                       const char *text)
{
    if (!in) {
        return -EINVAL;
    }
    /* in->len bytes of text when set (a piece of a longer string), else
     * the whole NUL-terminated string */
    size_t tl = !text ? 0 : in->len ? strnlen(text, in->len) : strlen(text);
    if (tl > VMSIG_TEXT_MAX || (text && in->len && tl != in->len)) {
        return -EINVAL;
    }
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_CMD_INPUT;
    ev.endpoint = endpoint;
    ev.u.input = *in;
    ev.u.input.len = (uint32_t)tl;
    ev.ool = text;
    ev.ool_len = (uint32_t)tl;
    return vmsig_client_call(c, &ev, NULL, c->timeout_ms);
}

int vmsig_client_subscribe(vmsig_client *c, const vmsig_sub *sub)
{
    release_last(c);
    vmsig_wire_sub ws = { .source_mask = sub->source_mask, .endpoint_mask = sub->endpoint_mask };
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_SUBSCRIBE, .len = sizeof(ws), .id = ++c->next_id };
    uint64_t deadline = deadline_of(c->timeout_ms);
    int rc = send_frame(c, &h, &ws, sizeof(ws), NULL, 0, deadline);
    if (rc < 0) {
        return rc;
    }
    vmsig_reply rep;
    int got = 0;
    rc = pump(c, deadline, h.id, &rep, &got);
    if (rc < 0) {
        return rc;
    }
    if (rep.status == 0 && rep.len == sizeof(vmsig_wire_sub)) {
        memcpy(&c->welcome.sub, rep.body, sizeof(vmsig_wire_sub));
    }
    return rep.status;
}

int vmsig_client_bye(const vmsig_client *c, const char **text)
{
    if (text) {
        *text = c->bye_text;
    }
    return c->bye_status;
}

vmsig_memmap *vmsig_client_memmap(vmsig_client *c)
{
    return vmsig_memmap_ref(c->map);
}

void vmsig_client_close(vmsig_client *c)
{
    if (!c) {
        return;
    }
    release_last(c);
    while (c->qhead) {
        qmsg *q = c->qhead;
        c->qhead = q->next;
        qmsg_free(q);
    }
    vmsig_memmap_unref(c->map);
    vmsig__wire_reader_free(c->rd);
    vmsig__wire_writer_free(c->wr);
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c);
}
