/*
 * fuzz_client.c - libFuzzer target: a hostile server's byte stream, with
 * descriptors, into the client side's frame reader (lib/wire.c,
 * vmsig__wire_reader_new(VMSIG_WIRE_S2C), _fill from a real socketpair,
 * _next), checked against a reference decoder written here from
 * docs/protocol.rst ("Frame header", "Messages", "Error replies"), lib/wire.h
 * and the public header, without lib/wire.c's table or check functions.
 * With FZC_CLIENT the same session also goes through the client library
 * (run_client below).
 *
 * Input format: fuzz_client.h. Each chunk is one sendmsg() (with its
 * descriptors, SCM_RIGHTS) followed by the reads the reader needs to take it,
 * each followed by _next until it wants more, as the client library does, so
 * frames arrive cut at every possible place. At the end the server side shuts
 * down its write side.
 *
 * Checked for every input:
 *  - the frames the reader returns are the reference's, in order: same
 *    header, payload bytes, nfds, and the very descriptors (by inode) the
 *    reference ties to the frame;
 *  - a stream the reference calls bad ends in a negative errno from the
 *    reader, of the class the first broken rule names in the order of
 *    docs/protocol.rst "Framing errors" (the header: -EMSGSIZE, then
 *    -EPROTO, then -EBADMSG; once the frame is in: its fds, -EPROTO, then
 *    inner lengths, -EBADMSG), as soon as the bad bytes are in and no
 *    sooner. A stream cut short ends in -EPIPE with bytes pending, a good
 *    one in -EPIPE with none;
 *  - a read the reader refuses (-EPROTO from _fill) is one with more than
 *    VMSIG_WIRE_MAX_FDS fds, or one while READER_PENDING_MAX fd batches wait
 *    for their frames, which only a stream with stray fds can cause;
 *  - every descriptor handed out is open, close-on-exec and new; none leaks
 *    (/proc/self/fd before and after), none is closed twice.
 *
 * Reference rules for descriptors (docs/protocol.rst "Descriptors"): the fds
 * of one read belong to the first frame that declares fds and whose header
 * starts in the bytes of that read; a frame that declares fds gets exactly
 * those (else -EPROTO); fds no frame can take (the read ends within or
 * before a frame that does not take them) are -EPROTO. Where two readings of
 * the spec both hold (stray fds inside a frame that has its own), the frame
 * may or may not be returned before the error.
 *
 * Environment: VMSIG_FUZZ_STATS=1 prints what the inputs exercised at exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmsig/vmsig_client.h"
#include "vmsig/vmsig_event.h"
#include "vmsig/vmsig_wire.h"
#include "../../lib/wire.h"
#include "fuzz_client.h"

#define HDR ((uint64_t)sizeof(vmsig_wire_hdr))

/* ---- reference decoder ---- */

/* Error classes, as a set. */
#define E_MSGSIZE 0x1u
#define E_PROTO   0x2u
#define E_BADMSG  0x4u
#define E_PIPE    0x8u
#define E_OTHER   0x80u

static unsigned err_bit(int rc)
{
    switch (rc) {
    case -EMSGSIZE: return E_MSGSIZE;
    case -EPROTO: return E_PROTO;
    case -EBADMSG: return E_BADMSG;
    case -EPIPE: return E_PIPE;
    default: return E_OTHER;
    }
}

static const char *errs_str(unsigned e, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s%s%s", e & E_MSGSIZE ? "EMSGSIZE " : "", e & E_PROTO ? "EPROTO " : "",
             e & E_BADMSG ? "EBADMSG " : "", e & E_PIPE ? "EPIPE " : "",
             e & E_OTHER ? "other " : "");
    return buf;
}

/* The message table of docs/protocol.rst, from the public header alone:
 * who sends the kind, whether it may carry fds, its fixed part and the cap
 * of its tail. */
typedef struct ref_kind {
    uint16_t kind;
    uint8_t s2c; /* sent by the server */
    uint8_t fds; /* may carry descriptors */
    uint32_t fixed, tail;
} ref_kind;

#define SZ(t) ((uint32_t)sizeof(t))
static const ref_kind ref_kinds[] = {
    { VMSIG_MSG_HELLO, 0, 0, SZ(vmsig_wire_hello), 0 },
    { VMSIG_MSG_WELCOME, 1, 0, SZ(vmsig_wire_welcome), 0 },
    { VMSIG_MSG_REPLY, 1, 0, 0, VMSIG_REPLY_BODY_MAX },
    { VMSIG_MSG_BYE, 1, 0, SZ(vmsig_wire_bye), 0 },
    { VMSIG_MSG_SUBSCRIBE, 0, 0, SZ(vmsig_wire_sub), 0 },
    { VMSIG_EV_RUNSTATE, 1, 0, SZ(vmsig_wire_seam), 0 },
    { VMSIG_EV_RESET, 1, 0, SZ(vmsig_wire_seam), 0 },
    { VMSIG_EV_POWERDOWN, 1, 0, SZ(vmsig_wire_seam), 0 },
    { VMSIG_EV_SUSPEND, 1, 0, SZ(vmsig_wire_seam), 0 },
    { VMSIG_EV_WAKEUP, 1, 0, SZ(vmsig_wire_seam), 0 },
    { VMSIG_EV_SHUTDOWN, 1, 0, SZ(vmsig_wire_seam), 0 },
    { VMSIG_EV_MEMCTX, 1, 1, SZ(vmsig_wire_memctx), VMSIG_MEMCTX_MAX_SEGS * SZ(vmsig_wire_memseg) },
    { VMSIG_EV_MEMWRITE_DONE, 1, 0, SZ(vmsig_wire_memwrite_done), 0 },
    { VMSIG_EV_ARB, 1, 0, SZ(vmsig_wire_arb), 0 },
    { VMSIG_CMD_NOP, 0, 0, 0, 0 },
    { VMSIG_CMD_VM, 0, 0, SZ(vmsig_wire_cmd), 0 },
    { VMSIG_CMD_LIFECYCLE, 0, 0, SZ(vmsig_wire_cmd), 0 },
    { VMSIG_CMD_POWER, 0, 0, SZ(vmsig_wire_cmd), 0 },
    { VMSIG_CMD_INPUT, 0, 0, SZ(vmsig_wire_input), VMSIG_TEXT_MAX },
    { VMSIG_CMD_MEMWRITE, 0, 0, SZ(vmsig_wire_memwrite), VMSIG_MEMWRITE_MAX },
    { VMSIG_CMD_ACQUIRE, 0, 0, SZ(vmsig_wire_cmd), 0 },
    { VMSIG_CMD_RELEASE, 0, 0, SZ(vmsig_wire_cmd), 0 },
};

static const ref_kind *ref_kind_of(uint16_t kind)
{
    for (size_t i = 0; i < sizeof(ref_kinds) / sizeof(ref_kinds[0]); i++) {
        if (ref_kinds[i].kind == kind) {
            return &ref_kinds[i];
        }
    }
    return NULL;
}

/* The descriptors of one read: stream bytes [s, e), k fds, the i-th of
 * which is pool[(first + i) % NPOOL]. */
typedef struct batch {
    uint64_t s, e;
    unsigned k, first;
    int claimed; /* reference scratch */
} batch;

typedef struct rframe {
    uint64_t p;  /* stream offset of its header */
    int batch;   /* the batch whose fds it carries, or -1 */
} rframe;

enum { REF_CLEAN, REF_TRUNC, REF_BAD };

typedef struct ref_out {
    int verdict;
    unsigned errs;   /* REF_BAD: the acceptable error classes */
    unsigned lo, hi; /* REF_BAD: frames the reader may return before it */
    unsigned n;      /* frames in f (== hi for REF_BAD) */
    rframe *f;
    char why[200];
} ref_out;

static int bad(ref_out *o, unsigned errs, unsigned lo, unsigned hi, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int bad(ref_out *o, unsigned errs, unsigned lo, unsigned hi, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->why, sizeof(o->why), fmt, ap);
    va_end(ap);
    o->verdict = REF_BAD;
    o->errs = errs;
    o->lo = lo;
    o->hi = hi;
    return REF_BAD;
}

/* Payload rules beyond the size (EV_MEMCTX only, for the server's kinds). */
static unsigned ref_payload(const vmsig_wire_hdr *h, const uint8_t *pl, char *why, size_t wl)
{
    if (h->kind != VMSIG_EV_MEMCTX) {
        return 0;
    }
    vmsig_wire_memctx mc;
    memcpy(&mc, pl, sizeof(mc));
    uint64_t tail = h->len - sizeof(mc);
    if (mc.nseg > VMSIG_MEMCTX_MAX_SEGS || tail != (uint64_t)mc.nseg * sizeof(vmsig_wire_memseg)) {
        snprintf(why, wl, "MEMCTX nseg %u with %llu tail bytes", mc.nseg, (unsigned long long)tail);
        return E_BADMSG;
    }
    if (mc.status != 0 && (mc.nseg || h->nfds)) {
        snprintf(why, wl, "unavailable MEMCTX (%d) with %u segments, %u fds", mc.status, mc.nseg,
                 h->nfds);
        return E_BADMSG;
    }
    for (uint32_t i = 0; i < mc.nseg; i++) {
        vmsig_wire_memseg sg;
        memcpy(&sg, pl + sizeof(mc) + i * sizeof(sg), sizeof(sg));
        if (sg.flags != 0) { /* reserved: -EBADMSG from the reader ("Reserved fields") */
            snprintf(why, wl, "MEMCTX segment %u reserved flags 0x%x", i, sg.flags);
            return E_BADMSG;
        }
        if (sg.fd_index >= h->nfds) {
            snprintf(why, wl, "MEMCTX segment %u fd_index %u of %u fds", i, sg.fd_index, h->nfds);
            return E_BADMSG;
        }
    }
    return 0;
}

/*
 * Decode stream[0, L) whose reads brought the batches b (only those that
 * start before L count). f must hold L / HDR + 1 frames.
 */
static int ref_decode(const uint8_t *stream, uint64_t L, batch *b, unsigned nb, rframe *f,
                      ref_out *o)
{
    memset(o, 0, sizeof(*o));
    o->f = f;
    for (unsigned j = 0; j < nb; j++) {
        b[j].claimed = 0;
    }
    while (nb && b[nb - 1].s >= L) {
        nb--;
    }
    uint64_t p = 0;
    for (;;) {
        unsigned k = o->n;
        if (L - p < HDR) {
            o->verdict = p == L ? REF_CLEAN : REF_TRUNC;
            snprintf(o->why, sizeof(o->why), p == L ? "clean end after %u frames"
                                                     : "cut in the header of frame %u", k);
            for (unsigned j = 0; j < nb && p == L; j++) {
                if (!b[j].claimed) {
                    fprintf(stderr, "fuzz-client: reference bug: batch %u unclaimed at end\n", j);
                    abort();
                }
            }
            return o->verdict;
        }
        vmsig_wire_hdr h;
        memcpy(&h, stream + p, sizeof(h));
        const ref_kind *rk = ref_kind_of(h.kind);
        /* Header rules, in the order of docs/protocol.rst "Framing errors",
         * all from the header before its payload is read: 1 the size limit
         * (-EMSGSIZE); 3..5 reserved fields (known flags only), kind,
         * direction, fds (-EPROTO); 6 the kind's size (-EBADMSG). */
        unsigned herr = 0;
        if (h.len > VMSIG_WIRE_MAX_PAYLOAD) {
            herr = E_MSGSIZE;
        } else if ((h.flags & ~VMSIG_F_KNOWN) || !rk || !rk->s2c || (!rk->fds && h.nfds) ||
                   h.nfds > VMSIG_WIRE_MAX_FDS) {
            herr = E_PROTO; /* unknown flags; unknown or a client's kind; fds */
        } else if (h.len < rk->fixed || h.len - rk->fixed > rk->tail) {
            herr = E_BADMSG;
        }
        if (herr) {
            return bad(o, herr, k, k, "frame %u header: kind 0x%04x len %u nfds %u", k, h.kind,
                       h.len, h.nfds);
        }
        uint64_t q = p + HDR + h.len;
        if (q > L) {
            o->verdict = REF_TRUNC;
            snprintf(o->why, sizeof(o->why), "cut in the payload of frame %u", k);
            return REF_TRUNC;
        }
        /* Descriptors. */
        unsigned ferr = 0;
        int claim = -1;
        char why[120] = "";
        if (h.nfds) {
            for (unsigned j = 0; j < nb; j++) {
                if (!b[j].claimed && b[j].s <= p && p < b[j].e) {
                    claim = (int)j;
                }
            }
            if (claim < 0) {
                ferr = E_PROTO;
                snprintf(why, sizeof(why), "declares %u fds, none came with its header", h.nfds);
            } else if (b[claim].k != h.nfds) {
                ferr = E_PROTO;
                snprintf(why, sizeof(why), "declares %u fds, %u came", h.nfds, b[claim].k);
                claim = -1;
            }
        }
        int stray = -1;
        for (unsigned j = 0; j < nb && stray < 0; j++) {
            if (!b[j].claimed && (int)j != claim && b[j].e <= q) {
                stray = (int)j; /* no later frame can take it */
            }
        }
        unsigned perr = ref_payload(&h, stream + p + HDR, why + strlen(why),
                                    sizeof(why) - strlen(why));
        if (ferr || perr || (stray >= 0 && !h.nfds)) {
            /* check 7 (descriptors) before check 8 (inner lengths) */
            return bad(o, ferr || (stray >= 0 && !h.nfds) ? E_PROTO : perr, k, k,
                       "frame %u (kind 0x%04x len %u nfds %u): %s%s", k, h.kind, h.len, h.nfds,
                       why, stray >= 0 ? " stray fds" : "");
        }
        f[o->n].p = p;
        f[o->n].batch = claim;
        o->n++;
        if (claim >= 0) {
            b[claim].claimed = 1;
        }
        if (stray >= 0) {
            return bad(o, E_PROTO, k, k + 1, "stray fds (batch %d) inside frame %u, which has its own",
                       stray, k);
        }
        p = q;
    }
}

/* ---- the harness ---- */

#define NPOOL 17 /* distinct descriptors to send, one more than fit on a frame */
#define READER_PENDING_MAX 4 /* lib/wire.c READER_BATCHES: fd batches it holds unclaimed */

static int pool[NPOOL];
static ino_t pool_ino[NPOOL];

/* FZC_CLIENT: where the server thread listens. */
static char sock_dir[64], sock_path[108];
static int lsock = -1;

static void cleanup(void)
{
    unlink(sock_path);
    rmdir(sock_dir);
}

/* With VMSIG_FUZZ_STATS=1 in the environment: what the inputs exercised,
 * printed at exit (e.g. after -runs=N over a corpus). */
enum {
    ST_CLEAN, ST_TRUNC, ST_EMSGSIZE, ST_EPROTO, ST_EBADMSG, ST_FILL_OVER, ST_FILL_PENDING,
    ST_FRAMES, ST_FRAMES_FDS, ST_FDS, ST_STRAY_AFTER, ST_CLIENT_RUNS, ST_CLIENT_EVENTS, ST__COUNT
};
static const char *const st_name[ST__COUNT] = {
    "clean streams", "streams cut short", "refused -EMSGSIZE", "refused -EPROTO",
    "refused -EBADMSG", "read refused: over 16 fds", "read refused: fd batches pending",
    "frames returned", "frames returned with fds", "fds handed out",
    "stray fds after a frame with fds", "client library runs", "client library events",
};
static unsigned long stats[ST__COUNT];

static void print_stats(void)
{
    for (int i = 0; i < ST__COUNT; i++) {
        fprintf(stderr, "fuzz-client: %10lu %s\n", stats[i], st_name[i]);
    }
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        abort();
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1;
}

static int pool_index(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        return -1;
    }
    for (int i = 0; i < NPOOL; i++) {
        if (st.st_ino == pool_ino[i]) {
            return i;
        }
    }
    return -2;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    for (int i = 0; i < NPOOL; i++) {
        char name[32];
        snprintf(name, sizeof(name), "vmsig-fuzz-%d", i);
        pool[i] = memfd_create(name, MFD_CLOEXEC);
        struct stat st;
        if (pool[i] < 0 || ftruncate(pool[i], 65536) < 0 || fstat(pool[i], &st) < 0) {
            perror("fuzz-client: memfd");
            abort();
        }
        pool_ino[i] = st.st_ino;
    }
    snprintf(sock_dir, sizeof(sock_dir), "/tmp/vmsig-fuzz-client-XXXXXX");
    if (!mkdtemp(sock_dir)) {
        abort();
    }
    snprintf(sock_path, sizeof(sock_path), "%s/s", sock_dir);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lsock < 0 || bind(lsock, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lsock, 4) < 0) {
        perror("fuzz-client: listen");
        abort();
    }
    atexit(cleanup);
    const char *e = getenv("VMSIG_FUZZ_STATS");
    if (e && *e && strcmp(e, "0") != 0) {
        atexit(print_stats);
    }
    return 0;
}

typedef struct chunk {
    uint64_t s;
    uint32_t len;
    unsigned k;
} chunk;

typedef struct got {
    uint64_t off; /* stream offset of its header */
    unsigned nfds;
    int pool[VMSIG_WIRE_MAX_FDS]; /* pool index of each fd */
} got;

/* Everything about one run, for the report. */
typedef struct run {
    const uint8_t *stream;
    uint64_t L;
    uint8_t mode;
    chunk *c;
    unsigned nc;
    batch *b;
    unsigned nb;
    got *g;
    unsigned ng;
    char rd_err[160];
} run;

static void report(const run *r, const ref_out *o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void report(const run *r, const ref_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz-client: MISMATCH: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  mode 0x%02x, %llu stream bytes, %u chunks:", r->mode,
            (unsigned long long)r->L, r->nc);
    for (unsigned i = 0; i < r->nc && i < 64; i++) {
        fprintf(stderr, " %llu+%u%s", (unsigned long long)r->c[i].s, r->c[i].len,
                r->c[i].k ? (r->c[i].k > 9 ? "#" : "*") : "");
        if (r->c[i].k) {
            fprintf(stderr, "%u", r->c[i].k);
        }
    }
    fprintf(stderr, "\n  fd batches:");
    for (unsigned i = 0; i < r->nb; i++) {
        fprintf(stderr, " [%llu,%llu)x%u", (unsigned long long)r->b[i].s,
                (unsigned long long)r->b[i].e, r->b[i].k);
    }
    fprintf(stderr, "\n  reader: %u frames:", r->ng);
    for (unsigned i = 0; i < r->ng && i < 32; i++) {
        vmsig_wire_hdr h;
        memcpy(&h, r->stream + r->g[i].off, sizeof(h));
        fprintf(stderr, " @%llu 0x%04x/%u/%u", (unsigned long long)r->g[i].off, h.kind, h.len,
                h.nfds);
    }
    fprintf(stderr, "\n  reader error text: \"%s\"\n", r->rd_err);
    if (o) {
        char eb[64];
        fprintf(stderr, "  reference: %s, errs {%s}, frames %u..%u of %u: %s\n",
                o->verdict == REF_CLEAN ? "clean" : o->verdict == REF_TRUNC ? "truncated" : "bad",
                errs_str(o->errs, eb, sizeof(eb)), o->lo, o->hi, o->n, o->why);
        for (unsigned i = 0; i < o->n && i < 32; i++) {
            fprintf(stderr, "   ref frame %u @%llu batch %d\n", i, (unsigned long long)o->f[i].p,
                    o->f[i].batch);
        }
    }
    abort();
}

/* One sendmsg() of chunk idx with its fds. Bytes sent or -1 (errno). */
static ssize_t send_chunk(const run *r, int fd, const chunk *c, unsigned idx)
{
    struct iovec iov = { (void *)(r->stream + c->s), c->len };
    union {
        char buf[CMSG_SPACE(NPOOL * sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (c->k) {
        int fds[NPOOL];
        for (unsigned i = 0; i < c->k; i++) {
            fds[i] = pool[(idx + i) % NPOOL];
        }
        memset(&cm, 0, sizeof(cm));
        msg.msg_control = cm.buf;
        msg.msg_controllen = CMSG_SPACE(c->k * sizeof(int));
        struct cmsghdr *h = CMSG_FIRSTHDR(&msg);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(c->k * sizeof(int));
        memcpy(CMSG_DATA(h), fds, c->k * sizeof(int));
    }
    ssize_t n;
    do {
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

/* Check one frame the reader returned and record it; its fds go to keep[]. */
static void took_frame(run *r, const vmsig_wire_frame *f, uint64_t off, int *keep, unsigned *nkeep)
{
    if (off + HDR + f->hdr.len > r->L || memcmp(&f->hdr, r->stream + off, HDR) != 0 ||
        memcmp(f->payload, r->stream + off + HDR, f->hdr.len) != 0) {
        report(r, NULL, "frame %u is not the stream's bytes at offset %llu", r->ng,
               (unsigned long long)off);
    }
    if (f->nfds != f->hdr.nfds || f->nfds > VMSIG_WIRE_MAX_FDS) {
        report(r, NULL, "frame %u has %u fds, declares %u", r->ng, f->nfds, f->hdr.nfds);
    }
    got *g = &r->g[r->ng];
    g->off = off;
    g->nfds = f->nfds;
    for (unsigned i = 0; i < VMSIG_WIRE_MAX_FDS; i++) {
        int fd = f->fds[i];
        if (i >= f->nfds) {
            if (fd != -1) {
                report(r, NULL, "frame %u fds[%u] = %d beyond nfds %u", r->ng, i, fd, f->nfds);
            }
            continue;
        }
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || !(fl & FD_CLOEXEC)) {
            report(r, NULL, "frame %u fd %u (%d) is %s", r->ng, i, fd,
                   fl < 0 ? "not open" : "not close-on-exec");
        }
        for (int p = 0; p < NPOOL; p++) {
            if (fd == pool[p]) {
                report(r, NULL, "frame %u fd %u is the sender's own descriptor", r->ng, i);
            }
        }
        for (unsigned j = 0; j < *nkeep; j++) {
            if (keep[j] == fd) {
                report(r, NULL, "frame %u fd %u (%d) was handed out before", r->ng, i, fd);
            }
        }
        g->pool[i] = pool_index(fd);
        if (g->pool[i] < 0) {
            report(r, NULL, "frame %u fd %u is none of the descriptors sent", r->ng, i);
        }
        keep[(*nkeep)++] = fd;
    }
    r->ng++;
    stats[ST_FRAMES]++;
    stats[ST_FRAMES_FDS] += f->nfds > 0;
    stats[ST_FDS] += f->nfds;
}

static void compare_frames(const run *r, const ref_out *o, unsigned upto)
{
    for (unsigned i = 0; i < upto; i++) {
        const got *g = &r->g[i];
        const rframe *rf = &o->f[i];
        if (g->off != rf->p) {
            report(r, o, "frame %u at offset %llu, reference %llu", i, (unsigned long long)g->off,
                   (unsigned long long)rf->p);
        }
        unsigned want = rf->batch < 0 ? 0 : r->b[rf->batch].k;
        if (g->nfds != want) {
            report(r, o, "frame %u with %u fds, reference %u", i, g->nfds, want);
        }
        for (unsigned j = 0; j < g->nfds; j++) {
            int exp = (int)((r->b[rf->batch].first + j) % NPOOL);
            if (g->pool[j] != exp) {
                report(r, o, "frame %u fd %u is pool[%d], reference pool[%d]", i, j, g->pool[j],
                       exp);
            }
        }
    }
}

/* ---- FZC_CLIENT: the same session through the client library ---- */

/*
 * A server thread accepts on a real listening socket, writes the chunks with
 * their fds (here the kernel may merge chunks into one read, as it does in
 * real life), shuts its write side and waits for the client to go. The
 * client library (vmsig_client_connect, then vmsig_client_next until it
 * fails) must not crash, hang, leak or hand out a bad fd; with auto_map it
 * must map MEMCTX and read every segment it accepted. When the stream
 * carries no fds, and the library took its WELCOME (it has rules of its own
 * there: version, features, reserved fields), the events it delivers must be
 * the reference's frames in order (REPLY dropped: no call waits for one),
 * and then -EPIPE for BYE or the end of the stream, -EPROTO for a second
 * WELCOME or a framing error (docs/protocol.rst: the reference client
 * reports every framing error as -EPROTO).
 */
static void *server_main(void *arg)
{
    const run *r = arg;
    struct pollfd p = { .fd = lsock, .events = POLLIN };
    if (poll(&p, 1, 5000) <= 0) {
        return NULL;
    }
    int fd = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    for (unsigned i = 0; i < r->nc; i++) {
        if (send_chunk(r, fd, &r->c[i], i) < 0) {
            break; /* the client went away */
        }
    }
    shutdown(fd, SHUT_WR);
    char buf[4096];
    for (;;) { /* read what it sent (HELLO) until it closes */
        p = (struct pollfd){ .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 5000) <= 0 || recv(fd, buf, sizeof(buf), 0) <= 0) {
            break;
        }
    }
    close(fd);
    return NULL;
}

static void check_map(const run *r, vmsig_client *c)
{
    vmsig_memmap *m = vmsig_client_memmap(c);
    if (!m) {
        return;
    }
    for (unsigned i = 0; i < vmsig_memmap_nseg(m); i++) {
        const vmsig_wire_memseg *sg = vmsig_memmap_seg(m, i);
        uint8_t b[2];
        if (!sg || !sg->size || vmsig_memmap_read(m, sg->gpa, b, 1) != 0 ||
            vmsig_memmap_read(m, sg->gpa + sg->size - 1, b + 1, 1) != 0) {
            report(r, NULL, "client: segment %u of its own map cannot be read", i);
        }
    }
    vmsig_memmap_unref(m);
}

static void run_client(const run *r)
{
    int with_fds = 0;
    for (unsigned i = 0; i < r->nc; i++) {
        with_fds |= r->c[i].k != 0;
    }
    ref_out o;
    rframe *rf = calloc(r->L / HDR + 2, sizeof(rframe));
    if (!rf) {
        abort();
    }
    ref_decode(r->stream, r->L, NULL, 0, rf, &o);
    unsigned sure = o.verdict == REF_BAD ? o.lo : o.n; /* frames any reader returns */

    pthread_t t;
    if (pthread_create(&t, NULL, server_main, (void *)r) != 0) {
        abort();
    }
    vmsig_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.version = VMSIG_CLIENT_CONFIG_VERSION;
    cfg.path = sock_path;
    cfg.timeout_ms = 5000;
    cfg.auto_map = !!(r->mode & FZC_AUTOMAP);
    int err = 0;
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    if (!c && err == -ETIMEDOUT) {
        report(r, &o, "client: connect timed out on a server that closed");
    }
    vmsig_wire_hdr h;
    if (c && !with_fds) {
        if (!sure || (memcpy(&h, r->stream, HDR), h.kind != VMSIG_MSG_WELCOME)) {
            report(r, &o, "client: connected without a WELCOME first");
        }
    }
    unsigned fi = 1; /* next reference frame to match an event against */
    int rc = 0;
    for (unsigned n = 0; c; n++) {
        vmsig_msg m;
        rc = vmsig_client_next(c, &m, 5000);
        if (rc < 0) {
            if (rc == -ETIMEDOUT) {
                report(r, &o, "client: next timed out on a server that closed");
            }
            break;
        }
        stats[ST_CLIENT_EVENTS]++;
        if (m.ev.kind < VMSIG_EV_RUNSTATE || m.ev.kind >= VMSIG_CMD_NOP || m.nfds > VMSIG_WIRE_MAX_FDS) {
            report(r, &o, "client: event %u of kind 0x%04x with %u fds", n, m.ev.kind, m.nfds);
        }
        if (cfg.auto_map && m.ev.kind == VMSIG_EV_MEMCTX && m.nfds) {
            report(r, &o, "client: auto_map handed out the fds of a MEMCTX");
        }
        for (unsigned i = 0; i < m.nfds; i++) {
            int fl = fcntl(m.fds[i], F_GETFD);
            if (fl < 0 || !(fl & FD_CLOEXEC) || pool_index(m.fds[i]) < 0) {
                report(r, &o, "client: event %u fd %u (%d) is not an open copy of one sent", n,
                       i, m.fds[i]);
            }
        }
        if (m.nfds && (n & 1)) { /* take one: it is ours now */
            int fd = vmsig_client_take_fd(c, 0);
            if (fd != m.fds[0] || close(fd) != 0) {
                report(r, &o, "client: take_fd gave %d for %d", fd, m.fds[0]);
            }
        }
        if (cfg.auto_map && m.ev.kind == VMSIG_EV_MEMCTX) {
            check_map(r, c);
        }
        if (with_fds) {
            continue; /* merged reads may tie fds otherwise than the reader run did */
        }
        /* The next frame an event comes from: REPLY is dropped (no call is
         * waiting), BYE and WELCOME end the session. */
        for (; fi < sure; fi++) {
            memcpy(&h, r->stream + rf[fi].p, HDR);
            if (h.kind != VMSIG_MSG_REPLY) {
                break;
            }
        }
        if (fi >= sure || h.kind == VMSIG_MSG_BYE || h.kind == VMSIG_MSG_WELCOME) {
            report(r, &o, "client: event %u (kind 0x%04x seq %llu) after the last one the "
                   "stream carries", n, m.ev.kind, (unsigned long long)m.ev.seq);
        }
        const uint8_t *pl = r->stream + rf[fi].p + HDR;
        const ref_kind *rk = ref_kind_of(h.kind);
        uint32_t fixed = rk->fixed < sizeof(m.ev.u) ? rk->fixed : (uint32_t)sizeof(m.ev.u);
        if (m.ev.kind != h.kind || m.ev.seq != h.id || m.ev.endpoint != h.endpoint ||
            m.ev.flags != h.flags || m.ev.ts_ns != h.ts_ns ||
            memcmp(m.ev.u.raw, pl, fixed) != 0 || m.ev.ool_len != h.len - rk->fixed ||
            (m.ev.ool_len && memcmp(m.ev.ool, pl + rk->fixed, m.ev.ool_len) != 0)) {
            report(r, &o, "client: event %u (kind 0x%04x seq %llu) is not frame %u (kind 0x%04x "
                   "id %llu)", n, m.ev.kind, (unsigned long long)m.ev.seq, fi, h.kind,
                   (unsigned long long)h.id);
        }
        fi++;
    }
    if (c && !with_fds) {
        /* How the session ends: BYE or the end of the stream -EPIPE, a
         * second WELCOME or a framing error -EPROTO. */
        while (fi < sure && (memcpy(&h, r->stream + rf[fi].p, HDR), h.kind == VMSIG_MSG_REPLY)) {
            fi++;
        }
        int want = fi < sure ? (h.kind == VMSIG_MSG_BYE ? -EPIPE
                                : h.kind == VMSIG_MSG_WELCOME ? -EPROTO : 0)
                             : o.verdict == REF_BAD ? -EPROTO : -EPIPE;
        if (rc != want) {
            report(r, &o, "client: next returned %d (%s) after frame %u; expected %s", rc,
                   strerror(-rc), fi, want ? strerror(-want) : "another event");
        }
    }
    if (c) {
        vmsig_client_close(c);
    }
    pthread_join(t, NULL);
    free(rf);
}

enum { OUT_EOF, OUT_NEXT, OUT_FILL };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    run R = { .mode = data[0] };
    run *r = &R;
    unsigned nctl = data[1] < size - 2 ? data[1] : (unsigned)(size - 2);
    const uint8_t *ctl = data + 2;
    r->stream = data + 2 + nctl;
    r->L = size - 2 - nctl;

    /* Cut the stream into chunks. */
    r->c = calloc(r->L + 1, sizeof(chunk));
    r->b = calloc(r->L + 1, sizeof(batch));
    r->g = calloc(r->L / HDR + 2, sizeof(got));
    rframe *rf = calloc(r->L / HDR + 2, sizeof(rframe));
    int *keep = calloc((r->L / HDR + 2) * VMSIG_WIRE_MAX_FDS, sizeof(int));
    if (!r->c || !r->b || !r->g || !rf || !keep) {
        abort();
    }
    /* FZC_ALIGNED: where the server attaches fds. Frame i's header starts at
     * p_i (p_0 = 0, p_i+1 = p_i + header + len), its hdr.nfds fds go on a
     * sendmsg that starts at p_i + skew (skew 0: where they belong). */
    typedef struct { uint64_t at; unsigned k; } attach;
    attach *att = calloc(r->L / HDR + 2, sizeof(attach));
    unsigned natt = 0;
    if (!att) {
        abort();
    }
    if (r->mode & FZC_ALIGNED) {
        int64_t skew = fzc_skew(r->mode, HDR);
        for (uint64_t p = 0; r->L - p > 2;) {
            unsigned k = r->stream[p + 2] > NPOOL ? NPOOL : r->stream[p + 2];
            int64_t at = (int64_t)p + skew;
            at = at < 0 ? 0 : at;
            if (k && (uint64_t)at < r->L) {
                if (natt && att[natt - 1].at >= (uint64_t)at) {
                    att[natt - 1].k = att[natt - 1].k + k > NPOOL ? NPOOL : att[natt - 1].k + k;
                } else {
                    att[natt++] = (attach){ (uint64_t)at, k };
                }
            }
            if (r->L - p < HDR) {
                break;
            }
            vmsig_wire_hdr h;
            memcpy(&h, r->stream + p, sizeof(h));
            p += HDR + h.len;
            if (p >= r->L) {
                break;
            }
        }
    }
    unsigned ai = 0;
    for (uint64_t pos = 0, ci = 0; pos < r->L; ci++) {
        uint8_t c = nctl ? ctl[ci % nctl] : FZC_CTL_BIG;
        uint64_t len = fzc_chunk_len(c);
        unsigned k = fzc_chunk_fds(c, r->mode);
        if (r->mode & FZC_ALIGNED) {
            if (!(r->mode & FZC_EXTRA)) {
                k = 0;
            }
            if (ai < natt && att[ai].at == pos) {
                k = k + att[ai].k > NPOOL ? NPOOL : k + att[ai].k;
                ai++;
            }
            if (ai < natt && att[ai].at - pos < len) {
                len = att[ai].at - pos;
            }
        }
        if (len > r->L - pos) {
            len = r->L - pos;
        }
        r->c[r->nc++] = (chunk){ .s = pos, .len = (uint32_t)len, .k = k };
        pos += len;
    }
    free(att);

    int before = count_fds();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        abort();
    }
    vmsig_wire_reader *rd = vmsig__wire_reader_new(VMSIG_WIRE_S2C);
    if (!rd) {
        abort();
    }
    unsigned nkeep = 0, claimed = 0;
    uint64_t read_end = 0, last_read = 0, roff = 0;
    int outcome = OUT_EOF, orc = 0;
    unsigned fail_chunk = 0, fail_pending = 0;
    size_t pending_bytes = 0;

    for (unsigned ci = 0; ci <= r->nc && outcome == OUT_EOF; ci++) {
        uint32_t want;
        if (ci < r->nc) {
            ssize_t n = send_chunk(r, sv[1], &r->c[ci], ci);
            if (n != (ssize_t)r->c[ci].len) {
                fprintf(stderr, "fuzz-client: sendmsg %u bytes: %zd (%s)\n", r->c[ci].len, n,
                        strerror(errno));
                abort();
            }
            want = r->c[ci].len;
        } else {
            shutdown(sv[1], SHUT_WR);
            want = 1; /* the read that sees EOF */
        }
        int first = 1;
        for (uint32_t have = 0; have < want;) {
            unsigned pend = r->nb - claimed;
            int rc = vmsig__wire_reader_fill(rd, sv[0]);
            if (ci == r->nc && rc == -EPIPE) {
                pending_bytes = vmsig__wire_reader_pending(rd);
                break;
            }
            if (rc <= 0) {
                outcome = OUT_FILL;
                orc = rc;
                fail_chunk = ci;
                fail_pending = pend;
                break;
            }
            if (ci == r->nc) {
                report(r, NULL, "fill read %d bytes after the end", rc);
            }
            if (first && r->c[ci].k) {
                r->b[r->nb++] = (batch){ .s = read_end, .e = read_end + (uint64_t)rc,
                                         .k = r->c[ci].k, .first = ci % NPOOL };
            }
            first = 0;
            have += (uint32_t)rc;
            last_read = read_end;
            read_end += (uint64_t)rc;
            for (;;) {
                vmsig_wire_frame f;
                rc = vmsig__wire_reader_next(rd, &f);
                if (rc == 0) {
                    break;
                }
                if (rc < 0) {
                    outcome = OUT_NEXT;
                    orc = rc;
                    break;
                }
                took_frame(r, &f, roff, keep, &nkeep);
                roff += HDR + f.hdr.len;
                claimed += f.nfds ? 1 : 0;
            }
            if (outcome != OUT_EOF) {
                break;
            }
        }
    }
    snprintf(r->rd_err, sizeof(r->rd_err), "%s", vmsig__wire_reader_error(rd));
    vmsig__wire_reader_free(rd);
    close(sv[0]);
    close(sv[1]);
    for (unsigned i = 0; i < nkeep; i++) {
        if (close(keep[i]) != 0) {
            report(r, NULL, "fd %d handed out with a frame was closed behind our back", keep[i]);
        }
    }

    /* What the reference says about the bytes the reader got. */
    ref_out o;
    switch (outcome) {
    case OUT_EOF:
        ref_decode(r->stream, r->L, r->b, r->nb, rf, &o);
        if (o.verdict == REF_BAD) {
            report(r, &o, "the reader took a bad stream to the end");
        }
        if (o.verdict == REF_CLEAN && pending_bytes) {
            report(r, &o, "clean stream, but %zu bytes left in the reader", pending_bytes);
        }
        if (o.verdict == REF_TRUNC && !pending_bytes) {
            report(r, &o, "stream cut in a frame, but no bytes left in the reader");
        }
        if (r->ng != o.n) {
            report(r, &o, "reader returned %u frames, reference %u", r->ng, o.n);
        }
        compare_frames(r, &o, r->ng);
        stats[o.verdict == REF_CLEAN ? ST_CLEAN : ST_TRUNC]++;
        break;
    case OUT_NEXT: {
        ref_decode(r->stream, read_end, r->b, r->nb, rf, &o);
        if (o.verdict != REF_BAD) {
            report(r, &o, "reader refused with %d (%s) after %llu bytes; reference has no error",
                   orc, strerror(-orc), (unsigned long long)read_end);
        }
        if (!(err_bit(orc) & o.errs)) {
            report(r, &o, "reader refused with %d (%s)", orc, strerror(-orc));
        }
        if (r->ng < o.lo || r->ng > o.hi) {
            report(r, &o, "reader returned %u frames before refusing", r->ng);
        }
        compare_frames(r, &o, r->ng);
        /* ...and no later than needed: the bytes before the last read were fine. */
        ref_out early;
        ref_decode(r->stream, last_read, r->b, r->nb, rf, &early);
        if (early.verdict == REF_BAD) {
            report(r, &early, "reader refused late: the reference refuses %llu bytes, before the "
                   "last read", (unsigned long long)last_read);
        }
        stats[orc == -EMSGSIZE ? ST_EMSGSIZE : orc == -EPROTO ? ST_EPROTO : ST_EBADMSG]++;
        stats[ST_STRAY_AFTER] += o.hi > o.lo;
        break;
    }
    case OUT_FILL: {
        /* The reader refused the read itself: more than VMSIG_WIRE_MAX_FDS fds
         * on it, or too many fds held for frames not yet complete. */
        ref_decode(r->stream, read_end, r->b, r->nb, rf, &o);
        int over = fail_chunk < r->nc && r->c[fail_chunk].k > VMSIG_WIRE_MAX_FDS;
        if (orc != -EPROTO || (!over && fail_pending < READER_PENDING_MAX)) {
            report(r, &o, "fill refused with %d (%s), %u fds on the read, %u batches pending", orc,
                   strerror(-orc), fail_chunk < r->nc ? r->c[fail_chunk].k : 0, fail_pending);
        }
        if (o.verdict == REF_BAD) {
            report(r, &o, "reader refused late (at the read of chunk %u)", fail_chunk);
        }
        if (r->ng != o.n) {
            report(r, &o, "reader returned %u frames, reference %u", r->ng, o.n);
        }
        compare_frames(r, &o, r->ng);
        if (!over) {
            /* Too many batches pending: only a stream with stray fds gets there. */
            for (unsigned ci = fail_chunk; ci < r->nc; ci++) {
                if (r->c[ci].k && r->c[ci].s >= read_end) { /* not read yet */
                    r->b[r->nb++] = (batch){ .s = r->c[ci].s, .e = r->c[ci].s + r->c[ci].len,
                                             .k = r->c[ci].k, .first = ci % NPOOL };
                }
            }
            ref_out full;
            ref_decode(r->stream, r->L, r->b, r->nb, rf, &full);
            if (full.verdict == REF_CLEAN) {
                report(r, &full, "fill refused %u pending fd batches of a good stream",
                       fail_pending);
            }
        }
        stats[over ? ST_FILL_OVER : ST_FILL_PENDING]++;
        break;
    }
    }

    if (r->mode & FZC_CLIENT) {
        stats[ST_CLIENT_RUNS]++;
        run_client(r);
    }

    int after = count_fds();
    if (after != before) {
        report(r, NULL, "fd leak: %d open before, %d after", before, after);
    }
    for (int i = 0; i < NPOOL; i++) {
        if (pool_index(pool[i]) != i) {
            report(r, NULL, "the sender's pool[%d] was closed or replaced", i);
        }
    }
    free(r->c);
    free(r->b);
    free(r->g);
    free(rf);
    free(keep);
    return 0;
}
