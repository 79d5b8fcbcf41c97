/*
 * wire.c - frame validation table, fd-carrying send/recv, incremental reader,
 * queued writer. See wire.h and docs/protocol.rst.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define SZ(t) ((uint32_t)sizeof(t))

uint32_t vmsig__wire_fixed(const vmsig_wire_kind *k)
{
    return k->fixed;
}

_Static_assert(sizeof(vmsig_wire_memwrite) + VMSIG_MEMWRITE_MAX <= VMSIG_WIRE_MAX_PAYLOAD,
               "largest MEMWRITE fits in a frame");
_Static_assert(sizeof(vmsig_wire_memctx) + VMSIG_MEMCTX_MAX_SEGS * sizeof(vmsig_wire_memseg)
               <= VMSIG_WIRE_MAX_PAYLOAD, "largest MEMCTX fits in a frame");
_Static_assert(VMSIG_WIRE_MAX_FDS < 256, "nfds is a uint8_t");

const vmsig_wire_kind *vmsig__wire_kind(uint32_t kind)
{
    return vmsig__kind(kind);
}

const vmsig_wire_kind *vmsig__wire_kinds(unsigned *n)
{
    return vmsig__kinds(n);
}

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return err;
}

int vmsig__wire_check_hdr(const vmsig_wire_hdr *h, unsigned dir, char *why, size_t whylen)
{
    if (h->len > VMSIG_WIRE_MAX_PAYLOAD) {
        return fail(-EMSGSIZE, why, whylen, "frame kind 0x%04x declares %u payload bytes, limit %u",
                    h->kind, h->len, VMSIG_WIRE_MAX_PAYLOAD);
    }
    if (dir == VMSIG_WIRE_C2S && (h->flags || h->ts_ns || h->status)) {
        return fail(-EPROTO, why, whylen,
                    "frame kind 0x%04x: header flags, ts_ns and status must be 0 from a client "
                    "(flags 0x%x, ts_ns %llu, status %d)", h->kind, h->flags,
                    (unsigned long long)h->ts_ns, h->status);
    }
    if (dir == VMSIG_WIRE_C2S && h->endpoint != 0 &&
        (h->kind == VMSIG_MSG_HELLO || h->kind == VMSIG_MSG_SUBSCRIBE)) {
        return fail(-EPROTO, why, whylen, "%s names endpoint %u; its endpoint must be 0",
                    h->kind == VMSIG_MSG_HELLO ? "HELLO" : "SUBSCRIBE", h->endpoint);
    }
    if (dir == VMSIG_WIRE_S2C && (h->flags & ~VMSIG_F_KNOWN)) {
        return fail(-EPROTO, why, whylen, "frame kind 0x%04x: unknown header flags 0x%x",
                    h->kind, h->flags & ~VMSIG_F_KNOWN);
    }
    const vmsig_wire_kind *k = vmsig__wire_kind(h->kind);
    if (!k && dir == VMSIG_WIRE_C2S && vmsig__kind_is_cmd_range(h->kind)) {
        /* A command this server does not know: framed like any other (so
         * the stream stays in step), answered -EOPNOTSUPP by the server. */
        if (h->nfds != 0) {
            return fail(-EPROTO, why, whylen, "frame kind 0x%04x declares %u fds, it carries none",
                        h->kind, h->nfds);
        }
        return 0;
    }
    if (!k) {
        return fail(-EPROTO, why, whylen, "unknown frame kind 0x%04x", h->kind);
    }
    if (k->dir != dir) {
        return fail(-EPROTO, why, whylen, "frame kind 0x%04x (%s) may not be sent by the %s",
                    h->kind, vmsig_kind_name(h->kind),
                    dir == VMSIG_WIRE_C2S ? "client" : "server");
    }
    if (k->fds == VMSIG_WIRE_FDS_NONE && h->nfds != 0) {
        return fail(-EPROTO, why, whylen, "frame kind 0x%04x declares %u fds, it carries none",
                    h->kind, h->nfds);
    }
    if (h->nfds > VMSIG_WIRE_MAX_FDS) {
        return fail(-EPROTO, why, whylen, "frame declares %u fds, limit %u", h->nfds,
                    VMSIG_WIRE_MAX_FDS);
    }
    if (h->len < vmsig__wire_fixed(k) || h->len - vmsig__wire_fixed(k) > k->tail_max) {
        if (k->tail_max) {
            return fail(-EBADMSG, why, whylen,
                        "frame kind 0x%04x has %u payload bytes, expected %u..%u", h->kind,
                        h->len, vmsig__wire_fixed(k), vmsig__wire_fixed(k) + k->tail_max);
        }
        return fail(-EBADMSG, why, whylen, "frame kind 0x%04x has %u payload bytes, expected %u",
                    h->kind, h->len, vmsig__wire_fixed(k));
    }
    return 0;
}

int vmsig__wire_check_payload(const vmsig_wire_hdr *h, const void *payload, unsigned nfds,
                              char *why, size_t whylen)
{
    const vmsig_wire_kind *k = vmsig__wire_kind(h->kind);
    if (nfds != h->nfds) {
        return fail(-EPROTO, why, whylen, "frame kind 0x%04x declares %u fds, %u arrived",
                    h->kind, h->nfds, nfds);
    }
    if (!k && vmsig__kind_is_cmd_range(h->kind)) {
        return 0; /* an unknown command: its payload is not looked at */
    }
    if (!k) {
        return fail(-EPROTO, why, whylen, "unknown frame kind 0x%04x", h->kind);
    }
    uint32_t tail = h->len - vmsig__wire_fixed(k);
    switch (h->kind) {
    case VMSIG_CMD_INPUT: {
        vmsig_wire_input in;
        memcpy(&in, payload, sizeof(in));
        if (in.len != tail) {
            return fail(-EBADMSG, why, whylen, "INPUT declares %u text bytes, frame has %u",
                        in.len, tail);
        }
        if (in.op != VMSIG_INPUT_TEXT && in.len != 0) {
            return fail(-EBADMSG, why, whylen, "INPUT op %u carries no text", in.op);
        }
        break;
    }
    case VMSIG_CMD_MEMWRITE: {
        vmsig_wire_memwrite mw;
        memcpy(&mw, payload, sizeof(mw));
        if (mw.len != tail) {
            return fail(-EBADMSG, why, whylen, "MEMWRITE declares %u data bytes, frame has %u",
                        mw.len, tail);
        }
        break;
    }
    case VMSIG_EV_MEMCTX: {
        vmsig_wire_memctx mc;
        memcpy(&mc, payload, sizeof(mc));
        if (mc.nseg > VMSIG_MEMCTX_MAX_SEGS || tail != mc.nseg * SZ(vmsig_wire_memseg)) {
            return fail(-EBADMSG, why, whylen, "MEMCTX declares %u segments, frame has %u bytes",
                        mc.nseg, tail);
        }
        if (mc.status != 0 && (mc.nseg != 0 || nfds != 0)) {
            return fail(-EBADMSG, why, whylen, "unavailable MEMCTX carries segments or fds");
        }
        const uint8_t *p = (const uint8_t *)payload + sizeof(mc);
        for (uint32_t i = 0; i < mc.nseg; i++) {
            vmsig_wire_memseg s;
            memcpy(&s, p + i * sizeof(s), sizeof(s));
            if (s.flags != 0) {
                return fail(-EBADMSG, why, whylen, "MEMCTX segment %u has reserved flags 0x%x",
                            i, s.flags);
            }
            if (s.fd_index >= nfds) {
                return fail(-EBADMSG, why, whylen, "MEMCTX segment %u uses fd %u of %u", i,
                            s.fd_index, nfds);
            }
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- codec ---- */

int vmsig__wire_event_hdr(const vmsig_event *ev, unsigned nfds, vmsig_wire_hdr *h)
{
    const vmsig_wire_kind *k = vmsig__wire_kind(ev->kind);
    if (!k || (ev->kind < VMSIG_EV_RUNSTATE) || vmsig__wire_fixed(k) > sizeof(ev->u) ||
        ev->ool_len > k->tail_max || nfds > VMSIG_WIRE_MAX_FDS ||
        (nfds && k->fds == VMSIG_WIRE_FDS_NONE)) {
        return -EINVAL;
    }
    memset(h, 0, sizeof(*h));
    h->kind = (uint16_t)ev->kind;
    h->nfds = (uint8_t)nfds;
    h->flags = (uint8_t)ev->flags;
    h->len = vmsig__wire_fixed(k) + ev->ool_len;
    h->id = ev->seq;
    h->ts_ns = ev->ts_ns;
    h->endpoint = ev->endpoint;
    return 0;
}

void vmsig__wire_frame_event(const vmsig_wire_hdr *h, const void *payload, vmsig_event *ev)
{
    const vmsig_wire_kind *k = vmsig__wire_kind(h->kind);
    uint32_t fixed = k ? vmsig__wire_fixed(k) : 0;
    memset(ev, 0, sizeof(*ev));
    ev->dir = h->kind >= VMSIG_CMD_NOP ? VMSIG_DIR_DOWN : VMSIG_DIR_UP;
    ev->kind = h->kind;
    ev->endpoint = h->endpoint;
    ev->flags = h->flags;
    ev->seq = h->id;
    ev->ts_ns = h->ts_ns;
    if (fixed > sizeof(ev->u)) {
        fixed = sizeof(ev->u);
    }
    memcpy(ev->u.raw, payload, fixed);
    if (h->len > fixed) {
        ev->ool = (const uint8_t *)payload + fixed;
        ev->ool_len = h->len - fixed;
    }
}

/* ---- reader ---- */

/*
 * Descriptors arrive with the bytes of one recvmsg. The kernel ends a read
 * right after the skb that carried them, and a conforming sender attaches
 * them to the sendmsg whose first byte is the frame's header, so they belong
 * to a frame that starts within [start, end) of the stream: the first one
 * that declares fds. A frame that declares none and reaches end leaves them
 * unclaimed: refused.
 */
typedef struct fdbatch {
    uint64_t start, end; /* stream offsets of the read that brought them */
    int fds[VMSIG_WIRE_MAX_FDS];
    unsigned n;
} fdbatch;

#define READER_BATCHES 4
#define READER_MIN_CAP 16384u
#define READER_MIN_READ 4096u

struct vmsig_wire_reader {
    unsigned dir;
    int fds_ok;           /* some kind of this direction carries fds */
    uint16_t expect;      /* the only kind taken now; 0 = any of the direction */
    uint32_t max_len;     /* largest payload taken now; 0 = VMSIG_WIRE_MAX_PAYLOAD */
    uint8_t *buf;
    size_t cap, off, len; /* buf[off..len) is unparsed */
    uint64_t base;        /* stream offset of buf[0] */
    fdbatch batch[READER_BATCHES];
    unsigned nbatch;
    int short_read;       /* the last fill got less than it offered room for */
    char err[128];
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

vmsig_wire_reader *vmsig__wire_reader_new(unsigned dir)
{
    vmsig_wire_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        return NULL;
    }
    r->buf = malloc(READER_MIN_CAP);
    if (!r->buf) {
        free(r);
        return NULL;
    }
    r->cap = READER_MIN_CAP;
    r->dir = dir;
    unsigned nk;
    const vmsig_wire_kind *kinds = vmsig__kinds(&nk);
    for (unsigned i = 0; i < nk; i++) {
        if (kinds[i].dir == dir && kinds[i].fds != VMSIG_WIRE_FDS_NONE) {
            r->fds_ok = 1;
        }
    }
    return r;
}

void vmsig__wire_reader_expect(vmsig_wire_reader *r, uint16_t kind)
{
    r->expect = kind;
}

void vmsig__wire_reader_max_len(vmsig_wire_reader *r, uint32_t max_len)
{
    r->max_len = max_len;
}

void vmsig__wire_reader_free(vmsig_wire_reader *r)
{
    if (!r) {
        return;
    }
    for (unsigned i = 0; i < r->nbatch; i++) {
        close_fds(r->batch[i].fds, r->batch[i].n);
    }
    free(r->buf);
    free(r);
}

const char *vmsig__wire_reader_error(const vmsig_wire_reader *r)
{
    return r->err;
}

size_t vmsig__wire_reader_pending(const vmsig_wire_reader *r)
{
    return r->len - r->off;
}

static void compact(vmsig_wire_reader *r)
{
    if (r->off == 0) {
        return;
    }
    memmove(r->buf, r->buf + r->off, r->len - r->off);
    r->base += r->off;
    r->len -= r->off;
    r->off = 0;
}

static int reserve(vmsig_wire_reader *r, size_t need_free)
{
    if (r->cap - r->len >= need_free) {
        return 0;
    }
    compact(r);
    if (r->cap - r->len >= need_free) {
        return 0;
    }
    size_t ncap = r->cap;
    while (ncap - r->len < need_free) {
        ncap *= 2;
    }
    uint8_t *nb = realloc(r->buf, ncap);
    if (!nb) {
        return -ENOMEM;
    }
    r->buf = nb;
    r->cap = ncap;
    return 0;
}

int vmsig__wire_reader_fill(vmsig_wire_reader *r, int fd)
{
    if (r->nbatch == READER_BATCHES) {
        snprintf(r->err, sizeof(r->err), "too many unclaimed fd batches");
        return -EPROTO;
    }
    if (r->off == r->len) {
        r->base += r->off;
        r->off = r->len = 0;
    }
    if (r->len == r->cap || r->cap - r->len < READER_MIN_READ) {
        int rc = reserve(r, READER_MIN_READ);
        if (rc < 0) {
            return rc;
        }
    }

    union {
        char buf[CMSG_SPACE(VMSIG_WIRE_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } cmsg;
    struct iovec iov = { r->buf + r->len, r->cap - r->len };
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = cmsg.buf, .msg_controllen = sizeof(cmsg.buf),
    };
    ssize_t n;
    do {
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return -EAGAIN;
        }
        if (errno == ECONNRESET || errno == EPIPE) {
            snprintf(r->err, sizeof(r->err), "connection reset by peer");
            return -EPIPE;
        }
        int e = errno;
        snprintf(r->err, sizeof(r->err), "recvmsg: %s", strerror(e));
        return -e;
    }

    fdbatch b = { 0 };
    int extra = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < cnt; i++) {
            int one;
            memcpy(&one, data + i * sizeof(int), sizeof(int));
            if (b.n < VMSIG_WIRE_MAX_FDS) {
                b.fds[b.n++] = one;
            } else {
                close(one);
                extra = 1;
            }
        }
    }
    if (msg.msg_flags & MSG_CTRUNC || extra) {
        close_fds(b.fds, b.n);
        snprintf(r->err, sizeof(r->err), "more than %u fds on one frame (control data truncated)",
                 VMSIG_WIRE_MAX_FDS);
        return -EPROTO;
    }
    if (b.n && !r->fds_ok) {
        /* No frame of this direction carries any: refuse them now rather
         * than hold them until a frame turns up to blame. */
        close_fds(b.fds, b.n);
        snprintf(r->err, sizeof(r->err), "%u fds on a %s frame (none carries any)", b.n,
                 r->dir == VMSIG_WIRE_C2S ? "client" : "server");
        return -EPROTO;
    }
    if (n == 0) {
        close_fds(b.fds, b.n);
        snprintf(r->err, sizeof(r->err), r->len > r->off ? "peer closed in the middle of a frame"
                                                          : "peer closed");
        return -EPIPE;
    }
    if (b.n) {
        b.start = r->base + r->len;
        b.end = b.start + (uint64_t)n;
        r->batch[r->nbatch++] = b;
    }
    r->short_read = (size_t)n < iov.iov_len;
    r->len += (size_t)n;
    return (int)(n > INT32_MAX ? INT32_MAX : n);
}

int vmsig__wire_reader_short(const vmsig_wire_reader *r)
{
    return r->short_read;
}

static void pop_batch(vmsig_wire_reader *r)
{
    memmove(&r->batch[0], &r->batch[1], (r->nbatch - 1) * sizeof(r->batch[0]));
    r->nbatch--;
}

int vmsig__wire_reader_next(vmsig_wire_reader *r, vmsig_wire_frame *f)
{
    uint64_t pos = r->base + r->off;
    if (r->nbatch && r->batch[0].end <= pos) {
        snprintf(r->err, sizeof(r->err), "fds arrived on a frame that declares none");
        return -EPROTO;
    }
    if (r->len - r->off < sizeof(vmsig_wire_hdr)) {
        return 0;
    }
    vmsig_wire_hdr h;
    memcpy(&h, r->buf + r->off, sizeof(h));
    /* The order in which framing errors are reported, all from the header
     * before any payload is buffered (docs/protocol.rst "Framing errors"):
     * before the handshake a kind other than HELLO, whatever its size; then
     * the size limits, then the header's own checks (reserved fields, kind,
     * direction, fds, size for the kind). */
    int rc;
    if (r->expect && h.kind != r->expect) {
        char want[32];
        snprintf(want, sizeof(want), "%s", vmsig_kind_name(r->expect));
        for (char *p = want; *p; p++) {
            *p = (char)toupper((unsigned char)*p);
        }
        snprintf(r->err, sizeof(r->err), "expected %s first, got %s (0x%04x)", want,
                 vmsig_kind_name(h.kind), h.kind);
        return -EPROTO;
    }
    if (h.len > VMSIG_WIRE_MAX_PAYLOAD) {
        snprintf(r->err, sizeof(r->err), "frame kind 0x%04x declares %u payload bytes, limit %u",
                 h.kind, h.len, VMSIG_WIRE_MAX_PAYLOAD);
        return -EMSGSIZE;
    }
    if (r->max_len && h.len > r->max_len) {
        snprintf(r->err, sizeof(r->err),
                 "%s frame of %u payload bytes; this connection takes at most %u",
                 vmsig_kind_name(h.kind), h.len, r->max_len);
        return -EMSGSIZE;
    }
    rc = vmsig__wire_check_hdr(&h, r->dir, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    size_t need = sizeof(h) + h.len;
    if (r->len - r->off < need) {
        if (r->cap - r->off < need) {
            rc = reserve(r, need - (r->len - r->off));
            if (rc < 0) {
                return rc;
            }
        }
        return 0;
    }
    uint64_t end = pos + need;
    unsigned got = 0;
    if (h.nfds) {
        if (!r->nbatch || r->batch[0].start > pos || r->batch[0].end <= pos) {
            snprintf(r->err, sizeof(r->err),
                     "frame kind 0x%04x declares %u fds, none arrived with its header", h.kind,
                     h.nfds);
            return -EPROTO;
        }
        got = r->batch[0].n;
        if (got != h.nfds) {
            snprintf(r->err, sizeof(r->err), "frame kind 0x%04x declares %u fds, %u arrived",
                     h.kind, h.nfds, got);
            return -EPROTO;
        }
    } else if (r->nbatch && r->batch[0].end <= end) {
        /* No later frame starts inside the batch's read: the fds are this
         * frame's, and it declares none. */
        snprintf(r->err, sizeof(r->err), "fds arrived on frame kind 0x%04x, which declares none",
                 h.kind);
        return -EPROTO;
    }
    const uint8_t *payload = r->buf + r->off + sizeof(h);
    rc = vmsig__wire_check_payload(&h, payload, got, r->err, sizeof(r->err));
    if (rc < 0) {
        return rc;
    }
    f->hdr = h;
    f->payload = payload;
    f->nfds = got;
    for (unsigned i = 0; i < VMSIG_WIRE_MAX_FDS; i++) {
        f->fds[i] = i < got ? r->batch[0].fds[i] : -1;
    }
    if (got) {
        pop_batch(r);
    }
    r->off += need;
    return 1;
}

/* ---- writer ---- */

typedef struct outframe {
    struct outframe *next;
    size_t len, sent;
    int fds[VMSIG_WIRE_MAX_FDS];
    unsigned nfds;
    uint16_t kind;
    uint32_t endpoint;
    uint8_t data[];
} outframe;

/* A frame with descriptors that went out: where it ends in the stream. */
typedef struct fdsent {
    uint64_t end;
    unsigned nfds;
} fdsent;

#define WRITER_FDSENT 32

struct vmsig_wire_writer {
    outframe *head, *tail;
    unsigned count;
    uint64_t sent;               /* bytes written to the socket so far */
    fdsent fdsent[WRITER_FDSENT]; /* fd frames sent, oldest first (a ring) */
    unsigned fd_first, fd_n, fd_total;
    int hold_fds;                /* do not start a frame with fds */
};

vmsig_wire_writer *vmsig__wire_writer_new(void)
{
    return calloc(1, sizeof(vmsig_wire_writer));
}

static void outframe_free(outframe *o)
{
    close_fds(o->fds, o->nfds);
    free(o);
}

void vmsig__wire_writer_free(vmsig_wire_writer *w)
{
    if (!w) {
        return;
    }
    outframe *o = w->head;
    while (o) {
        outframe *next = o->next;
        outframe_free(o);
        o = next;
    }
    free(w);
}

unsigned vmsig__wire_writer_count(const vmsig_wire_writer *w)
{
    return w->count;
}

int vmsig__wire_writer_midframe(const vmsig_wire_writer *w)
{
    return w->head && w->head->sent > 0;
}

int vmsig__wire_writer_push(vmsig_wire_writer *w, const vmsig_wire_hdr *h,
                            const void *p1, size_t l1, const void *p2, size_t l2,
                            const int *fds, unsigned nfds, int at_head)
{
    if (nfds > VMSIG_WIRE_MAX_FDS || l1 + l2 != h->len || h->nfds != nfds) {
        return -EINVAL;
    }
    size_t len = sizeof(*h) + l1 + l2;
    outframe *o = malloc(sizeof(*o) + len);
    if (!o) {
        return -ENOMEM;
    }
    o->next = NULL;
    o->len = len;
    o->sent = 0;
    o->nfds = nfds;
    for (unsigned i = 0; i < nfds; i++) {
        o->fds[i] = fds[i];
    }
    o->kind = h->kind;
    o->endpoint = h->endpoint;
    memcpy(o->data, h, sizeof(*h));
    if (l1) {
        memcpy(o->data + sizeof(*h), p1, l1);
    }
    if (l2) {
        memcpy(o->data + sizeof(*h) + l1, p2, l2);
    }
    if (at_head) {
        /* Before everything not yet started; never inside a partial frame. */
        outframe **pp = &w->head;
        if (*pp && (*pp)->sent > 0) {
            pp = &(*pp)->next;
        }
        o->next = *pp;
        *pp = o;
        if (!o->next) {
            w->tail = o;
        }
    } else {
        if (w->tail) {
            w->tail->next = o;
        } else {
            w->head = o;
        }
        w->tail = o;
    }
    w->count++;
    return 0;
}

static void unlink_after(vmsig_wire_writer *w, outframe *prev, outframe *o)
{
    if (prev) {
        prev->next = o->next;
    } else {
        w->head = o->next;
    }
    if (w->tail == o) {
        w->tail = prev;
    }
    w->count--;
    outframe_free(o);
}

int vmsig__wire_writer_drop(vmsig_wire_writer *w, uint16_t kind, uint32_t endpoint)
{
    outframe *prev = NULL;
    for (outframe *o = w->head; o; prev = o, o = o->next) {
        if (o->sent == 0 && o->kind == kind && o->endpoint == endpoint) {
            unlink_after(w, prev, o);
            return 1;
        }
    }
    return 0;
}

void vmsig__wire_writer_drop_unstarted(vmsig_wire_writer *w)
{
    outframe *prev = NULL, *o = w->head;
    while (o) {
        outframe *next = o->next;
        if (o->sent == 0) {
            unlink_after(w, prev, o);
        } else {
            prev = o;
        }
        o = next;
    }
}

#define WRITER_IOV 32

int vmsig__wire_writer_flush(vmsig_wire_writer *w, int fd)
{
    while (w->head) {
        /* Gather frames into one sendmsg: a frame with fds only ever first,
         * so its fds ride on its header's first byte. */
        struct iovec iov[WRITER_IOV];
        int niov = 0;
        outframe *o = w->head;
        if (w->hold_fds && o->nfds && o->sent == 0) {
            return -EAGAIN; /* held: the caller lets it go when the peer has read */
        }
        for (; o && niov < WRITER_IOV; o = o->next) {
            if (niov > 0 && o->nfds) {
                break;
            }
            iov[niov].iov_base = o->data + o->sent;
            iov[niov].iov_len = o->len - o->sent;
            niov++;
        }
        union {
            char buf[CMSG_SPACE(VMSIG_WIRE_MAX_FDS * sizeof(int))];
            struct cmsghdr align;
        } cmsg;
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)niov };
        outframe *first = w->head;
        int with_fds = first->nfds && first->sent == 0;
        if (with_fds) {
            memset(&cmsg, 0, sizeof(cmsg));
            msg.msg_control = cmsg.buf;
            msg.msg_controllen = CMSG_SPACE(first->nfds * sizeof(int));
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(first->nfds * sizeof(int));
            memcpy(CMSG_DATA(c), first->fds, first->nfds * sizeof(int));
        }
        ssize_t n;
        do {
            n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return -EAGAIN;
            }
            if (errno == EPIPE || errno == ECONNRESET) {
                return -EPIPE;
            }
            /* ETOOMANYREFS: the kernel's bound on a user's descriptors in
             * flight. The peer is there; the caller says so. */
            return -errno;
        }
        if (with_fds && n > 0) {
            /* In flight now: the peer has its own references. */
            if (w->fd_n == WRITER_FDSENT) { /* forget the oldest: an undercount */
                w->fd_total -= w->fdsent[w->fd_first].nfds;
                w->fd_first = (w->fd_first + 1) % WRITER_FDSENT;
                w->fd_n--;
            }
            fdsent *r = &w->fdsent[(w->fd_first + w->fd_n) % WRITER_FDSENT];
            r->end = w->sent + first->len;
            r->nfds = first->nfds;
            w->fd_n++;
            w->fd_total += first->nfds;
            close_fds(first->fds, first->nfds);
            first->nfds = 0;
        }
        w->sent += (uint64_t)n;
        size_t left = (size_t)n;
        while (left && w->head) {
            outframe *h = w->head;
            size_t rem = h->len - h->sent;
            if (left < rem) {
                h->sent += left;
                left = 0;
                break;
            }
            left -= rem;
            w->head = h->next;
            if (!w->head) {
                w->tail = NULL;
            }
            w->count--;
            outframe_free(h);
        }
    }
    return 0;
}

void vmsig__wire_writer_hold_fds(vmsig_wire_writer *w, int hold)
{
    w->hold_fds = hold;
}

int vmsig__wire_writer_fds_next(const vmsig_wire_writer *w)
{
    return w->head && w->head->nfds && w->head->sent == 0;
}

unsigned vmsig__wire_writer_fds_in_flight(vmsig_wire_writer *w, int fd)
{
    int outq = 0;
    if (!w->fd_n) {
        return 0;
    }
    if (ioctl(fd, SIOCOUTQ, &outq) < 0) {
        return w->fd_total; /* cannot tell: assume all unread */
    }
    /* SIOCOUTQ counts what the peer has not read yet, with some overhead,
     * so `read` is a lower bound: frames wholly before it have been read. */
    uint64_t read = outq <= 0 ? w->sent : (w->sent > (uint64_t)outq ? w->sent - (uint64_t)outq : 0);
    while (w->fd_n && w->fdsent[w->fd_first].end <= read) {
        w->fd_total -= w->fdsent[w->fd_first].nfds;
        w->fd_first = (w->fd_first + 1) % WRITER_FDSENT;
        w->fd_n--;
    }
    return w->fd_total;
}

uint64_t vmsig__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int vmsig__wire_writer_flush_wait(vmsig_wire_writer *w, int fd, uint64_t deadline_ns)
{
    for (;;) {
        int rc = vmsig__wire_writer_flush(w, fd);
        if (rc != -EAGAIN) {
            return rc;
        }
        int ms = -1;
        if (deadline_ns) {
            uint64_t now = vmsig__now_ns();
            if (now >= deadline_ns) {
                return -ETIMEDOUT;
            }
            ms = (int)((deadline_ns - now + 999999) / 1000000);
        }
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int pr = poll(&p, 1, ms);
        if (pr < 0 && errno != EINTR) {
            return -errno;
        }
    }
}
