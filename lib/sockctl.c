/*
 * sockctl.c - the UNIX socket listener and socket controls: accept,
 * SO_PEERCRED, handshake (with a timeout), commands in, events out through a
 * bounded queue. A misbehaving peer loses its own connection, nothing else.
 * Everything runs on the core's loop thread through vmsig__watch_*.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "core_internal.h"
#include "wire.h"

/* Receive at most this many times per readiness callback, so one busy peer
 * cannot starve the loop (epoll is level-triggered: we are called again). */
#define READ_ROUNDS 16
/* Frames handled for one connection per wakeup: the rest wait for the next
 * turn (the listener's timer, fired at once, gives it), so a control that
 * pipelines thousands of commands adds at most this many to another's wait. */
#define FRAME_BUDGET 16
/* ... and at most this long (ns) of its frames' work per turn (a stop or
 * cont costs QEMU about 55 us): another control waits about a turn. */
#define TURN_NS 250000ull
/* Guest RAM descriptors in flight (sent, not read): one MEMCTX's per
 * control, the next one held until the last is read (checked every
 * FD_HOLD_POLL_MS); a quarter of RLIMIT_NOFILE for all controls of a
 * listener (the kernel bounds a user's descriptors in flight by that limit). */
#define FD_HOLD_POLL_MS 10u

typedef struct listener listener;
typedef struct sockconn sockconn;

/* Handshake slots and parking, per peer uid (SO_PEERCRED at accept). */
typedef struct uidslot {
    uid_t uid;
    unsigned pending, parked;
} uidslot;

enum conn_state {
    ST_PARKED,    /* accepted, waiting for a handshake slot; not read yet */
    ST_HANDSHAKE, /* waiting for HELLO */
    ST_ATTACHED,  /* a control of the core */
    ST_LINGER,    /* detached; flushing a last BYE before close, bounded by a timer */
};

struct sockconn {
    sockconn *prev, *next; /* in listener->conns while the listener lives */
    listener *l;           /* NULL once the listener is gone (core shutting down) */
    vmsig_core *core;
    int fd;
    vmsig_watch *w;
    uint64_t deadline;     /* CLOCK_MONOTONIC ns of this state's deadline; 0 none */
    uint64_t accept_seq;   /* order of accept, for fair unparking */
    sockconn *tnext;       /* on the listener's expired chain while it is handled */
    sockconn *rnext;       /* on the listener's chain of turns (budget left over) */
    uint32_t wevents;
    vmsig_wire_reader *rd;
    vmsig_wire_writer *wr;
    enum conn_state state;
    vmsig_control *ctl;
    uid_t uid;
    unsigned queue_limit, timeout_ms;
    unsigned busy;  /* >0 while inside one of our callbacks */
    int dead;       /* closed; freed when busy drops to 0 */
    int in_attach;  /* vmsig_core_attach is delivering the snapshot */
    int paused;     /* input paused: our output backlog is high */
    int shutdown;   /* the core is going away: no lingering */
    int partial;    /* attached, a frame is half in: the timer is its deadline */
    int more;       /* frames left in its buffer after its budget: next turn */
    unsigned inflight; /* descriptors sent it has not read, as last measured */
    int fdwait;     /* a MEMCTX waits for the last one to be read */
    uint64_t frames, partial_at; /* frames taken; the count when the timer was armed */
    uint64_t features; /* negotiated */
    char bye[sizeof(vmsig_wire_bye)];
};

struct listener {
    vmsig_core *core;
    int fd;
    char *path;
    dev_t dev;
    ino_t ino;
    const vmsig_grants *grants;
    vmsig_watch *w;
    sockconn *conns;
    unsigned nconns;
    unsigned npending; /* conns in ST_HANDSHAKE */
    unsigned nparked;  /* conns in ST_PARKED */
    uidslot *uids;     /* per peer uid: pending and parked counts */
    unsigned nuids, capuids;
    uint64_t accepts;  /* connections accepted so far */
    int accepting;     /* the listen fd is polled */
    int spare; /* reserved fd, given up to refuse a peer when out of fds */
    /* The one timer of the listener and all its connections: handshake,
     * parked, half-sent frame and linger deadlines, and the out-of-fds
     * back-off. A connection costs one fd, its socket. */
    int tfd;
    vmsig_watch *tw;
    uint64_t armed;         /* when tfd fires; 0 disarmed */
    unsigned inflight;      /* sum of its connections' inflight */
    uint64_t backoff_until; /* out of fds: not accepting until then; 0 none */
};

/*
 * Admission (docs/protocol.rst "Admission"). Connections waiting for HELLO
 * are at most pending_max() (max(16, max_controls / 4)); one uid holds at
 * most half of them (uid_share), so a uid that opens many and says nothing
 * cannot keep another out. A connection that finds no slot is parked:
 * accepted, not read, started in accept order as slots free, the uid with
 * the fewest handshakes first. A uid parks at most max_controls minus its
 * share; parked connections are at most max_controls in all, and at that
 * the listener stops accepting and the listen backlog (max_controls long)
 * holds the rest. A connection over its uid's parking allowance, or over
 * 2 * max_controls connections in all, gets BYE(-EMFILE) at once.
 */
#define PENDING_MIN 16u
/* File descriptors kept free for the host (QEMU's monitor, block devices,
 * a MEMCTX's read-only reopens): a connection whose fd number reaches
 * RLIMIT_NOFILE minus this is refused with BYE(-EMFILE), and a listener
 * whose max_controls could not fit under the limit is not started. */
#define FD_RESERVE 64u
/* Out of fds with no spare to refuse a peer: stop polling the listener this
 * long (ms) instead of spinning on it. */
#define LISTEN_BACKOFF_MS 100

static void conn_input(sockconn *c);
static void partial_deadline(sockconn *c);

static unsigned max_controls(const vmsig_core_config *cfg)
{
    return cfg->max_controls ? cfg->max_controls : 256u;
}

static unsigned pending_max(const vmsig_core_config *cfg)
{
    unsigned quarter = max_controls(cfg) / 4u;
    return quarter > PENDING_MIN ? quarter : PENDING_MIN;
}

static unsigned uid_share(const vmsig_core_config *cfg)
{
    return pending_max(cfg) / 2u;
}

static unsigned park_max(const vmsig_core_config *cfg)
{
    return max_controls(cfg);
}

static unsigned uid_park_max(const vmsig_core_config *cfg)
{
    return max_controls(cfg) > uid_share(cfg) ? max_controls(cfg) - uid_share(cfg) : 1u;
}

static uint64_t now_ns(void)
{
    return vmsig__now_ns();
}

static uidslot *uid_slot(listener *l, uid_t uid, int create)
{
    for (unsigned i = 0; i < l->nuids; i++) {
        if (l->uids[i].uid == uid) {
            return &l->uids[i];
        }
    }
    if (!create) {
        return NULL;
    }
    if (l->nuids == l->capuids) {
        unsigned ncap = l->capuids ? l->capuids * 2 : 8;
        uidslot *nv = realloc(l->uids, ncap * sizeof(*nv));
        if (!nv) {
            return NULL;
        }
        l->uids = nv;
        l->capuids = ncap;
    }
    l->uids[l->nuids] = (uidslot){ .uid = uid };
    return &l->uids[l->nuids++];
}

/* Count c in (add > 0) or out of the listener's and its uid's totals. */
static void count_state(sockconn *c, int add)
{
    listener *l = c->l;
    if (!l || (c->state != ST_HANDSHAKE && c->state != ST_PARKED)) {
        return;
    }
    uidslot *u = uid_slot(l, c->uid, add > 0); /* NULL only on OOM: totals stay right */
    unsigned *total = c->state == ST_HANDSHAKE ? &l->npending : &l->nparked;
    *total = add > 0 ? *total + 1 : *total - 1;
    if (u) {
        unsigned *mine = c->state == ST_HANDSHAKE ? &u->pending : &u->parked;
        *mine = add > 0 ? *mine + 1 : *mine - 1;
        if (!u->pending && !u->parked) {
            *u = l->uids[--l->nuids]; /* keep the table to the uids waiting */
        }
    }
}

static void listener_kick(listener *l);

/* Every state change goes here, so the listener's counts stay true; a
 * handshake slot or a parking place that frees up is given out at once. */
static void set_state(sockconn *c, enum conn_state st)
{
    if (c->state == st) {
        return;
    }
    int freed = c->state == ST_HANDSHAKE || c->state == ST_PARKED;
    count_state(c, -1);
    c->state = st;
    count_state(c, +1);
    c->deadline = 0;
    if (freed && c->l) {
        listener_kick(c->l);
    }
}

static void close_fds(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}


/* ---- connection lifetime ---- */

static void conn_free(sockconn *c)
{
    if (c->w) {
        vmsig__watch_del(c->w);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    vmsig__wire_reader_free(c->rd);
    vmsig__wire_writer_free(c->wr);
    if (c->l) {
        listener *l = c->l;
        if (c->prev) {
            c->prev->next = c->next;
        } else {
            l->conns = c->next;
        }
        if (c->next) {
            c->next->prev = c->prev;
        }
        l->nconns--;
        l->inflight -= c->inflight;
        count_state(c, -1);
        c->l = NULL;
        free(c);
        listener_kick(l); /* a slot, a parking place or a connection fewer */
        return;
    }
    free(c);
}

/* Close now (or as soon as our callback returns). */
static void conn_close(sockconn *c)
{
    if (c->dead) {
        return;
    }
    c->dead = 1;
    if (c->w) {
        vmsig__watch_del(c->w);
        c->w = NULL;
    }
    c->deadline = 0;
    if (c->busy == 0) {
        conn_free(c);
    }
}

static void conn_enter(sockconn *c)
{
    c->busy++;
}

static void conn_leave(sockconn *c)
{
    if (--c->busy == 0 && c->dead) {
        conn_free(c);
    }
}

static void update_watch(sockconn *c)
{
    if (c->dead || !c->w) {
        return;
    }
    uint32_t ev = 0;
    if (c->state != ST_LINGER && !c->paused) {
        ev |= EPOLLIN;
    }
    /* Paused input resumes from the EPOLLOUT handler, even if the queue
     * was emptied elsewhere (an empty queue is writable at once). */
    if (vmsig__wire_writer_count(c->wr) || (c->paused && c->state != ST_LINGER)) {
        ev |= EPOLLOUT;
    }
    if (ev != c->wevents) {
        if (vmsig__watch_mod(c->w, ev) == 0) {
            c->wevents = ev;
        }
    }
}

/* Arm the listener's timer for `when` unless it fires earlier already. */
static void listener_arm(listener *l, uint64_t when)
{
    if (!l || l->tfd < 0 || !when || (l->armed && l->armed <= when)) {
        return;
    }
    struct itimerspec its = { 0 };
    its.it_value.tv_sec = (time_t)(when / 1000000000ull);
    its.it_value.tv_nsec = (long)(when % 1000000000ull);
    if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
        l->armed = when;
    }
}

/* c's deadline: ms from now (this state's; a state change clears it). */
static void arm_timer(sockconn *c, unsigned ms)
{
    c->deadline = now_ns() + (uint64_t)ms * 1000000ull;
    listener_arm(c->l, c->deadline);
}

static void disarm_timer(sockconn *c)
{
    c->deadline = 0; /* the listener's timer may still fire: it finds nothing */
}

static void conn_fail(sockconn *c, int why, const char *text);

static unsigned measure_inflight(sockconn *c);

/* Flush c's queue, holding a frame with descriptors while the last ones it
 * was sent are unread (then the listener's timer looks again soon). */
static int conn_flush(sockconn *c)
{
    /* (measure_inflight costs an ioctl only while some sent fds may be unread) */
    int hold = vmsig__wire_writer_count(c->wr) && measure_inflight(c) > 0;
    vmsig__wire_writer_hold_fds(c->wr, hold);
    int rc = vmsig__wire_writer_flush(c->wr, c->fd);
    if (rc == -EAGAIN && hold && c->l) {
        c->fdwait = 1;
        listener_arm(c->l, now_ns() + FD_HOLD_POLL_MS * 1000000ull);
    }
    if (vmsig__wire_writer_fds_next(c->wr) == 0 || !hold) {
        c->fdwait = 0;
    }
    return rc;
}

/* The last flushes of a connection: nothing is held any more. */
static int final_flush(sockconn *c)
{
    vmsig__wire_writer_hold_fds(c->wr, 0);
    return vmsig__wire_writer_flush(c->wr, c->fd);
}

/* A flush that failed for another reason than a full socket. */
static void flush_failed(sockconn *c, int rc)
{
    if (rc == -ETOOMANYREFS) {
        conn_fail(c, -ETOOMANYREFS, "the kernel refuses to pass you more descriptors (too many "
                  "in flight for this user): read your MEMCTX events");
    } else {
        conn_fail(c, -EPIPE, "peer closed");
    }
}

static uint64_t fd_limit(void);

/* Measure c's unread descriptors again; keep the listener's sum true. */
static unsigned measure_inflight(sockconn *c)
{
    unsigned n = vmsig__wire_writer_fds_in_flight(c->wr, c->fd);
    if (c->l) {
        c->l->inflight = c->l->inflight - c->inflight + n;
    }
    c->inflight = n;
    return n;
}

/* Room for nfds more descriptors in flight for the listener: a quarter of
 * the fd limit, measured afresh when that seems spent; the control holding
 * the most unread is dropped to make room (a control that reads holds
 * none). 0 and c->bye set if there is still none. */
static int inflight_room(sockconn *c, unsigned nfds)
{
    listener *l = c->l;
    uint64_t lim = fd_limit();
    uint64_t total_max = lim ? lim / 4 : 1024;
    if (!l || l->inflight + nfds <= total_max) {
        return 1;
    }
    sockconn *worst = NULL;
    for (sockconn *o = l->conns; o; o = o->next) {
        if (!o->dead && o->state == ST_ATTACHED) {
            measure_inflight(o);
            if (!worst || o->inflight > worst->inflight) {
                worst = o;
            }
        }
    }
    if (l->inflight + nfds <= total_max) {
        return 1;
    }
    if (worst && worst != c && worst->inflight > 0) {
        char text[sizeof(vmsig_wire_bye)];
        snprintf(text, sizeof(text), "holding %u unread guest RAM descriptors while the "
                 "server's budget (%llu) ran out: read your MEMCTX events", worst->inflight,
                 (unsigned long long)total_max);
        conn_fail(worst, -ENOBUFS, text);
    }
    if (l->inflight + nfds <= total_max) {
        return 1;
    }
    snprintf(c->bye, sizeof(c->bye), "the server's budget of descriptors in flight (%llu) "
             "is spent", (unsigned long long)total_max);
    return 0;
}

/* Queue a REPLY; if it cannot be queued (-ENOMEM), the client would wait for
 * it in vain: end the connection instead, saying why. */
static void push_reply(sockconn *c, uint64_t id, uint32_t endpoint, int status,
                       const void *body, uint32_t len)
{
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_REPLY, .len = len, .id = id,
                         .endpoint = endpoint, .status = status };
    if (vmsig__wire_writer_push(c->wr, &h, body, len, NULL, 0, NULL, 0, 0) < 0) {
        conn_fail(c, -ENOMEM, "server out of memory: a reply could not be queued");
    }
}

static void push_bye(sockconn *c, int status, const char *text)
{
    vmsig_wire_bye b;
    memset(&b, 0, sizeof(b));
    snprintf(b.text, sizeof(b.text), "%s", text && *text ? text : vmsig__why_text(status));
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_BYE, .len = sizeof(b), .status = status };
    vmsig__wire_writer_push(c->wr, &h, &b, sizeof(b), NULL, 0, NULL, 0, 0);
}

/* Flush what can be flushed; linger (bounded) for the rest, or close. */
static void close_or_linger(sockconn *c)
{
    if (c->dead) {
        return;
    }
    int rc = final_flush(c);
    if (rc == -EAGAIN && !c->shutdown && c->l && c->w) {
        set_state(c, ST_LINGER);
        arm_timer(c, c->timeout_ms);
        update_watch(c);
        return;
    }
    conn_close(c);
}

/*
 * The end of a connection: BYE(why, text) when the peer is still there, then
 * close. An attached control goes through the core (which calls conn_detach).
 */
static void conn_fail(sockconn *c, int why, const char *text)
{
    if (c->dead || c->state == ST_LINGER) {
        return;
    }
    snprintf(c->bye, sizeof(c->bye), "%s", text ? text : "");
    if (c->state == ST_ATTACHED && c->ctl) {
        vmsig_control *ctl = c->ctl;
        vmsig_control_detach(ctl, why); /* calls conn_detach */
        return;
    }
    if (why != -EPIPE) {
        push_bye(c, why, c->bye);
        close_or_linger(c);
    } else {
        conn_close(c);
    }
}

/* ---- control ops (called by the core) ---- */

static int conn_deliver(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds)
{
    sockconn *c = opaque;
    if (c->dead || c->state != ST_ATTACHED) {
        return -EPIPE;
    }
    int dropped = 0;
    if (ev->kind == VMSIG_EV_MEMCTX) {
        /* A new map always replaces the endpoint's unsent one (and closes its
         * fds): a slow reader holds one map's fds per endpoint, not one per
         * queued frame. A frame already partly written is left alone. */
        dropped = vmsig__wire_writer_drop(c->wr, (uint16_t)ev->kind, ev->endpoint);
    }
    if (!dropped && !c->in_attach && vmsig__wire_writer_count(c->wr) >= c->queue_limit) {
        /* Full: a newer state replaces a queued older one of the same kind. */
        if (ev->kind == VMSIG_EV_RUNSTATE) {
            dropped = vmsig__wire_writer_drop(c->wr, (uint16_t)ev->kind, ev->endpoint);
        }
        if (!dropped) {
            return -EAGAIN;
        }
    }
    vmsig_wire_hdr h;
    if (vmsig__wire_event_hdr(ev, nfds, &h) < 0) {
        return 0; /* not representable on the wire: the core's bug, not the peer's */
    }
    if (nfds && !inflight_room(c, nfds)) {
        return -ENOBUFS; /* c->bye says why; the core detaches us with it */
    }
    int dups[VMSIG_WIRE_MAX_FDS];
    for (unsigned i = 0; i < nfds; i++) {
        dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
        if (dups[i] < 0) {
            int e = errno == EMFILE || errno == ENFILE ? -EMFILE : -ENOMEM;
            close_fds(dups, i);
            snprintf(c->bye, sizeof(c->bye), "%s",
                     e == -EMFILE ? "server out of file descriptors: cannot pass guest RAM"
                                  : "server out of memory");
            return e; /* not a slow reader: the core detaches us with it */
        }
    }
    const vmsig_wire_kind *k = vmsig__wire_kind(ev->kind);
    if (vmsig__wire_writer_push(c->wr, &h, ev->u.raw, vmsig__wire_fixed(k), ev->ool, ev->ool_len, dups,
                                nfds, 0) < 0) {
        close_fds(dups, nfds);
        snprintf(c->bye, sizeof(c->bye), "server out of memory");
        return -ENOMEM;
    }
    if (c->in_attach) {
        return 0; /* WELCOME goes first; flushed after attach */
    }
    int rc = conn_flush(c);
    if (rc == -EPIPE) {
        return -EPIPE;
    }
    if (rc == -ETOOMANYREFS) {
        snprintf(c->bye, sizeof(c->bye), "the kernel refuses to pass you more descriptors "
                 "(too many in flight for this user): read your MEMCTX events");
        return -ETOOMANYREFS;
    }
    update_watch(c);
    return 0;
}

static void conn_detach(void *opaque, int why)
{
    sockconn *c = opaque;
    c->ctl = NULL;
    if (c->dead) {
        return;
    }
    if (c->shutdown && why == 0) {
        why = -ESHUTDOWN;
    }
    if (why == -EPIPE) {
        conn_close(c);
        return;
    }
    if (c->shutdown) {
        final_flush(c); /* best effort, never waits */
    }
    if (why == -ENOBUFS || why == -ENOMEM || why == -EMFILE || why == -ETOOMANYREFS ||
        c->shutdown) {
        /* What is still queued cannot be delivered in time: say why instead. */
        vmsig__wire_writer_drop_unstarted(c->wr);
    }
    push_bye(c, why, c->bye);
    close_or_linger(c);
}

/* A late reply (vmsig_core_complete). */
static void conn_reply(void *opaque, uint64_t id, uint32_t endpoint, int status,
                       const void *body, uint32_t len)
{
    sockconn *c = opaque;
    if (c->dead || c->state != ST_ATTACHED) {
        return;
    }
    conn_enter(c);
    push_reply(c, id, endpoint, status, body, len);
    if (!c->dead) {
        int rc = conn_flush(c);
        if (rc < 0 && rc != -EAGAIN) {
            flush_failed(c, rc);
        } else {
            update_watch(c);
        }
    }
    conn_leave(c);
}

static const vmsig_control_ops sock_ops = {
    .name = "socket",
    .deliver = conn_deliver,
    .detach = conn_detach,
    .reply = conn_reply,
};

/* ---- input ---- */

static void handshake(sockconn *c, const vmsig_wire_frame *f)
{
    vmsig_wire_hello hello;
    memcpy(&hello, f->payload, sizeof(hello));
    char text[sizeof(vmsig_wire_bye)];
    int err;

    if (hello.major != VMSIG_WIRE_MAJOR) {
        err = -EPROTONOSUPPORT;
        snprintf(text, sizeof(text), "protocol version %u.%u not supported (server speaks %u.%u)",
                 hello.major, hello.minor, VMSIG_WIRE_MAJOR, VMSIG_WIRE_MINOR);
        goto refuse;
    }
    if (hello.flags != 0 || hello.sub.reserved != 0) {
        err = -EINVAL;
        snprintf(text, sizeof(text), "HELLO reserved field not 0 (flags 0x%x, sub.reserved 0x%x)",
                 hello.flags, hello.sub.reserved);
        goto refuse;
    }
    char token[VMSIG_TOKEN_MAX + 1];
    memcpy(token, hello.token, VMSIG_TOKEN_MAX);
    token[VMSIG_TOKEN_MAX] = '\0';

    vmsig_grant g;
    err = c->l && c->l->grants
              ? vmsig_grants_lookup(c->l->grants, (uint32_t)c->uid, token[0] ? token : NULL, &g)
              : -EPERM;
    if (err < 0) {
        err = -EPERM;
        snprintf(text, sizeof(text), "uid %u%s: no grant", (unsigned)c->uid,
                 token[0] ? " with that token" : "");
        goto refuse;
    }
    if (vmsig_grant_check(&g) < 0) {
        err = -EINVAL;
        snprintf(text, sizeof(text), "grant of uid %u has retired or unknown capability bits 0x%x",
                 (unsigned)c->uid, g.caps & ~(uint32_t)VMSIG_CAP_ALL);
        goto refuse;
    }

    vmsig_sub sub = { hello.sub.source_mask, hello.sub.endpoint_mask };
    set_state(c, ST_ATTACHED);
    c->in_attach = 1;
    /* Unknown bits are dropped: the client may be newer than we are. */
    c->features = hello.features & VMSIG_FEATURES_KNOWN & ~vmsig__core_config(c->core)->features_off;
    vmsig_control *ctl = vmsig__core_attach_ex(c->core, &sock_ops, c, &g, &sub, c->features, &err);
    c->in_attach = 0;
    if (!ctl) {
        set_state(c, ST_HANDSHAKE);
        vmsig__wire_writer_drop_unstarted(c->wr);
        if (err == -EMFILE) {
            snprintf(text, sizeof(text), "server full: max-controls (%u) controls attached",
                     vmsig__core_config(c->core)->max_controls);
        } else {
            snprintf(text, sizeof(text), "attach refused: %s", strerror(-err));
        }
        goto refuse;
    }
    c->ctl = ctl;
    disarm_timer(c);
    vmsig__wire_reader_expect(c->rd, 0); /* every client kind from now on */
    uint32_t max_payload = VMSIG_WIRE_MAX_PAYLOAD;
    if (!(vmsig_control_grant(ctl)->caps & VMSIG_CAP_MEMWRITE)) {
        /* Only MEMWRITE needs a large frame: without it, a control cannot
         * make the server buffer more than the largest other command. */
        max_payload = (uint32_t)sizeof(vmsig_wire_input) + VMSIG_TEXT_MAX;
        vmsig__wire_reader_max_len(c->rd, max_payload);
    }

    vmsig_sub eff = vmsig_control_sub(ctl);
    const vmsig_grant *cg = vmsig_control_grant(ctl);
    uint16_t minor = hello.minor;
    if (minor > VMSIG_WIRE_MINOR) {
        minor = VMSIG_WIRE_MINOR; /* the client is newer: speak our revision */
    }
    vmsig_wire_welcome wl = {
        .major = VMSIG_WIRE_MAJOR,
        .minor = minor,
        .features = c->features,
        .principal = cg->principal,
        .endpoint_mask = cg->endpoint_mask,
        .caps = cg->caps,
        .priority = cg->priority,
        .sub = { .source_mask = eff.source_mask, .endpoint_mask = eff.endpoint_mask },
        .max_payload = max_payload, /* what this connection may send */
        .max_fds = VMSIG_WIRE_MAX_FDS,
        .queue_limit = c->queue_limit,
    };
    vmsig_wire_hdr h = { .kind = VMSIG_MSG_WELCOME, .len = sizeof(wl), .id = f->hdr.id };
    vmsig__wire_writer_push(c->wr, &h, &wl, sizeof(wl), NULL, 0, NULL, 0, 1);
    if (conn_flush(c) == -EPIPE) {
        conn_fail(c, -EPIPE, "peer closed");
        return;
    }
    update_watch(c);
    return;

refuse:
    push_reply(c, f->hdr.id, f->hdr.endpoint, err, NULL, 0);
    conn_fail(c, err, text);
}

static void command(sockconn *c, const vmsig_wire_frame *f)
{
    if (f->hdr.kind == VMSIG_MSG_SUBSCRIBE) {
        vmsig_wire_sub ws;
        memcpy(&ws, f->payload, sizeof(ws));
        if (ws.reserved != 0) {
            push_reply(c, f->hdr.id, f->hdr.endpoint, -EINVAL, NULL, 0);
            return;
        }
        vmsig_sub sub = { ws.source_mask, ws.endpoint_mask };
        vmsig_control_subscribe(c->ctl, &sub);
        if (c->dead || !c->ctl) {
            return;
        }
        vmsig_sub eff = vmsig_control_sub(c->ctl);
        vmsig_wire_sub out = { .source_mask = eff.source_mask, .endpoint_mask = eff.endpoint_mask };
        push_reply(c, f->hdr.id, f->hdr.endpoint, 0, &out, sizeof(out));
        return;
    }
    vmsig_event ev;
    vmsig__wire_frame_event(&f->hdr, f->payload, &ev);
    vmsig_reply rep;
    memset(&rep, 0, sizeof(rep));
    int rc = vmsig_control_submit(c->ctl, &ev, &rep);
    if (c->dead || c->state != ST_ATTACHED) {
        return; /* detached meanwhile (e.g. our own queue overflowed) */
    }
    if (rc == -EINPROGRESS) {
        return; /* the backend answers later: conn_reply */
    }
    uint32_t len = rep.len <= VMSIG_REPLY_BODY_MAX ? rep.len : 0;
    push_reply(c, f->hdr.id, f->hdr.endpoint, rc, rep.body, len);
}

static void frame(sockconn *c, vmsig_wire_frame *f)
{
    char text[sizeof(vmsig_wire_bye)];
    c->frames++;
    if (c->state == ST_HANDSHAKE) {
        if (f->hdr.kind != VMSIG_MSG_HELLO) {
            snprintf(text, sizeof(text), "expected HELLO first, got %s (0x%04x)",
                     vmsig_kind_name(f->hdr.kind), f->hdr.kind);
            conn_fail(c, -EPROTO, text);
            return;
        }
        handshake(c, f);
        return;
    }
    if (f->hdr.kind == VMSIG_MSG_HELLO) {
        conn_fail(c, -EPROTO, "second HELLO after the handshake");
        return;
    }
    command(c, f);
}

/* Stop taking commands while our replies pile up; resume when drained. */
static int backlog_high(sockconn *c)
{
    return vmsig__wire_writer_count(c->wr) >= c->queue_limit;
}

static void conn_input(sockconn *c)
{
    unsigned budget = FRAME_BUDGET;
    uint64_t turn_end = now_ns() + TURN_NS;
    c->more = 0;
    for (int round = 0; budget; round++) {
        for (;;) {
            if (c->dead || c->state == ST_LINGER) {
                return;
            }
            if (!budget) {
                /* Its turn is over; what is buffered waits for the next. */
                c->more = 1;
                if (c->l) {
                    listener_arm(c->l, now_ns());
                }
                break;
            }
            if (backlog_high(c)) {
                c->paused = 1;
                update_watch(c);
                return;
            }
            vmsig_wire_frame f;
            int rc = vmsig__wire_reader_next(c->rd, &f);
            if (rc == 0) {
                break;
            }
            if (rc < 0) {
                conn_fail(c, rc, vmsig__wire_reader_error(c->rd));
                return;
            }
            frame(c, &f);
            close_fds(f.fds, f.nfds); /* client frames carry none; belt and braces */
            budget--;
            if (budget && now_ns() >= turn_end) {
                budget = 0; /* its time is up: the next frame waits */
            }
        }
        if (!budget || round == READ_ROUNDS || (round > 0 && vmsig__wire_reader_short(c->rd))) {
            break; /* a short read drained the socket: skip the EAGAIN read */
        }
        int rc = vmsig__wire_reader_fill(c->rd, c->fd);
        if (rc == -EAGAIN) {
            break;
        }
        if (rc < 0) {
            conn_fail(c, rc, vmsig__wire_reader_error(c->rd));
            return;
        }
    }
    if (!c->dead && vmsig__wire_writer_count(c->wr)) {
        int rc = conn_flush(c);
        if (rc < 0 && rc != -EAGAIN) {
            flush_failed(c, rc);
            return;
        }
        update_watch(c);
    }
}

static void conn_ready(void *opaque, uint32_t events)
{
    sockconn *c = opaque;
    if (c->dead) {
        return;
    }
    conn_enter(c);
    if (c->state == ST_LINGER) {
        int rc = final_flush(c);
        if (rc != -EAGAIN || (events & (EPOLLERR | EPOLLHUP))) {
            conn_close(c);
        }
        conn_leave(c);
        return;
    }
    if ((events & (EPOLLHUP | EPOLLERR)) && c->paused) {
        /* Hung up (shut down both ways) or in error: nothing we queue can
         * reach the peer any more, so a paused connection would wait for an
         * EPOLLOUT that never comes while HUP/ERR wake the loop for ever.
         * One last flush (it fails), then end it. Unpaused, conn_input below
         * takes what the peer sent before it went and ends at its EOF. */
        final_flush(c);
        conn_fail(c, -EPIPE, "peer closed");
        conn_leave(c);
        return;
    }
    if (events & EPOLLOUT) {
        int rc = conn_flush(c);
        if (rc < 0 && rc != -EAGAIN) {
            flush_failed(c, rc);
            conn_leave(c);
            return;
        }
        if (c->paused && vmsig__wire_writer_count(c->wr) <= c->queue_limit / 2) {
            c->paused = 0;
            conn_input(c); /* frames may be waiting in our buffer */
            events &= ~(uint32_t)EPOLLIN; /* that was its turn */
        }
        update_watch(c);
    }
    if (!c->dead && !c->paused && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        conn_input(c);
    }
    partial_deadline(c);
    conn_leave(c);
}

/* After the handshake the timer is armed only while a frame is half in: a
 * frame must be complete within timeout_ms of its first byte (the same limit
 * as a handshake), else BYE(-ETIMEDOUT). Per frame, not per byte, so a
 * trickle cannot hold a buffer open for ever. */
static void partial_deadline(sockconn *c)
{
    int half = c->state == ST_ATTACHED && !c->dead && vmsig__wire_reader_pending(c->rd) > 0;

    if (half && (!c->partial || c->partial_at != c->frames)) {
        arm_timer(c, c->timeout_ms); /* a new frame started: its own deadline */
        c->partial_at = c->frames;
    } else if (!half && c->partial) {
        disarm_timer(c);
    }
    c->partial = half;
}

/* c's deadline passed (called by the listener's timer, c held busy). */
static void conn_timeout(sockconn *c)
{
    if (c->dead) {
        return;
    }
    conn_enter(c);
    if (c->state == ST_ATTACHED && c->partial && c->paused) {
        arm_timer(c, c->timeout_ms); /* we stopped reading, not the peer */
    } else if (c->state == ST_ATTACHED && c->partial) {
        char text[sizeof(vmsig_wire_bye)];
        snprintf(text, sizeof(text), "half-sent frame: %zu bytes, not complete within %u ms",
                 vmsig__wire_reader_pending(c->rd), c->timeout_ms);
        conn_fail(c, -ETIMEDOUT, text);
    } else if (c->state == ST_HANDSHAKE) {
        char text[sizeof(vmsig_wire_bye)];
        snprintf(text, sizeof(text), "no HELLO within %u ms", c->timeout_ms);
        conn_fail(c, -ETIMEDOUT, text);
    } else if (c->state == ST_PARKED) {
        char text[sizeof(vmsig_wire_bye)];
        snprintf(text, sizeof(text), "no handshake slot free within %u ms (server busy)",
                 c->timeout_ms);
        conn_fail(c, -ETIMEDOUT, text);
    } else if (c->state == ST_LINGER) {
        conn_close(c);
    }
    conn_leave(c);
}

/* ---- listener ---- */

/* Start c's handshake: read it, and give it handshake_timeout_ms for HELLO. */
static int conn_start(sockconn *c)
{
    int err = 0;
    set_state(c, ST_HANDSHAKE);
    c->w = vmsig__watch_add(c->core, c->fd, EPOLLIN, conn_ready, c, &err);
    c->wevents = EPOLLIN;
    if (!c->w) {
        conn_close(c);
        return err;
    }
    arm_timer(c, c->timeout_ms);
    return 0;
}

/* Refuse a connection at once, with a BYE it can read after EOF. */
static void refuse_now(int fd, int status, const char *text)
{
    struct {
        vmsig_wire_hdr h;
        vmsig_wire_bye b;
    } f;
    memset(&f, 0, sizeof(f));
    f.h = (vmsig_wire_hdr){ .kind = VMSIG_MSG_BYE, .len = sizeof(f.b), .status = status };
    snprintf(f.b.text, sizeof(f.b.text), "%s", text);
    ssize_t n = send(fd, &f, sizeof(f), MSG_DONTWAIT | MSG_NOSIGNAL); /* a new socket has room */
    (void)n;
    close(fd);
}

static void listener_set_accepting(listener *l)
{
    const vmsig_core_config *cfg = vmsig__core_config(l->core);
    int want = !l->backoff_until && l->nparked < park_max(cfg) &&
               l->nconns < 2u * max_controls(cfg);
    if (l->w && want != l->accepting && vmsig__watch_mod(l->w, want ? EPOLLIN : 0) == 0) {
        l->accepting = want;
    }
}

/* The parked connection to start next: of the uids below their share, the
 * one with the fewest handshakes; its oldest. NULL if none may start. */
static sockconn *next_parked(listener *l)
{
    const vmsig_core_config *cfg = vmsig__core_config(l->core);
    const uidslot *best = NULL;
    for (unsigned i = 0; i < l->nuids; i++) {
        const uidslot *u = &l->uids[i];
        if (u->parked && u->pending < uid_share(cfg) && (!best || u->pending < best->pending)) {
            best = u;
        }
    }
    if (!best) {
        return NULL;
    }
    sockconn *pick = NULL;
    for (sockconn *c = l->conns; c; c = c->next) {
        if (c->state == ST_PARKED && !c->dead && c->uid == best->uid &&
            (!pick || c->accept_seq < pick->accept_seq)) {
            pick = c;
        }
    }
    return pick;
}

/* Give out free handshake slots, then decide whether to accept. */
static void listener_kick(listener *l)
{
    const vmsig_core_config *cfg = vmsig__core_config(l->core);
    while (l->npending < pending_max(cfg)) {
        sockconn *c = next_parked(l);
        if (!c) {
            break;
        }
        conn_start(c);
    }
    listener_set_accepting(l);
}

/* The soft limit on open files, 0 if there is none we could read. */
static uint64_t fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
        return 0;
    }
    return (uint64_t)rl.rlim_cur;
}

static void accept_one(listener *l, int fd)
{
    const vmsig_core_config *cfg = vmsig__core_config(l->core);
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    char text[sizeof(vmsig_wire_bye)];
    uint64_t lim = fd_limit();
    /* fds are numbered lowest free first: a number this high means the
     * process has about that many open, so the host's reserve is at stake. */
    if (lim && (uint64_t)fd + FD_RESERVE >= lim) {
        snprintf(text, sizeof(text), "server near its file descriptor limit (%llu): try again later",
                 (unsigned long long)lim);
        refuse_now(fd, -EMFILE, text);
        return;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        close(fd);
        return;
    }
    uidslot *u = uid_slot(l, cred.uid, 1);
    if (!u) {
        refuse_now(fd, -ENOMEM, "server out of memory");
        return;
    }
    int slot = l->npending < pending_max(cfg) && u->pending < uid_share(cfg);
    if (l->nconns >= 2u * max_controls(cfg) || (!slot && u->parked >= uid_park_max(cfg))) {
        snprintf(text, sizeof(text), "too many connections%s (max-controls %u): try again later",
                 slot ? "" : " waiting from your uid", max_controls(cfg));
        if (!u->pending && !u->parked) {
            *u = l->uids[--l->nuids];
        }
        refuse_now(fd, -EMFILE, text);
        return;
    }
    sockconn *c = calloc(1, sizeof(*c));
    if (!c) {
        refuse_now(fd, -ENOMEM, "server out of memory");
        return;
    }
    c->fd = fd;
    c->core = l->core;
    c->uid = cred.uid;
    c->accept_seq = ++l->accepts;
    c->queue_limit = cfg->queue_limit ? cfg->queue_limit : 256u;
    c->timeout_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : 5000u;
    c->rd = vmsig__wire_reader_new(VMSIG_WIRE_C2S);
    c->wr = vmsig__wire_writer_new();
    if (c->rd) {
        /* HELLO first: anything else is refused from its header, before a
         * byte of its payload is buffered. */
        vmsig__wire_reader_expect(c->rd, VMSIG_MSG_HELLO);
    }
    c->l = l;
    c->next = l->conns;
    if (l->conns) {
        l->conns->prev = c;
    }
    l->conns = c;
    l->nconns++;
    c->state = ST_PARKED;
    count_state(c, +1);
    if (!c->rd || !c->wr) {
        conn_close(c);
        return;
    }
    if (slot) {
        conn_start(c);
    } else {
        arm_timer(c, c->timeout_ms); /* parked: a slot within the timeout, or BYE */
    }
    listener_set_accepting(l);
}

/* Out of fds with no spare: stop polling the listener for a while (a pending
 * peer would keep it readable and the loop spinning); the timer resumes it. */
static void listener_backoff(listener *l)
{
    l->backoff_until = now_ns() + LISTEN_BACKOFF_MS * 1000000ull;
    listener_arm(l, l->backoff_until);
    listener_set_accepting(l);
}

/* The one timer: every connection whose deadline passed, the back-off. */
static void listener_timer(void *opaque, uint32_t events)
{
    listener *l = opaque;
    uint64_t ticks, now = now_ns(), next = 0;
    if (read(l->tfd, &ticks, sizeof(ticks)) != sizeof(ticks)) {
        return;
    }
    l->armed = 0;
    sockconn *expired = NULL, *turn = NULL;
    for (sockconn *c = l->conns; c; c = c->next) {
        if ((c->more && !c->paused) || c->fdwait) {
            if (!c->dead) {
                c->busy++;
                c->rnext = turn;
                turn = c;
            }
        }
        if (!c->deadline || c->dead) {
            continue;
        }
        if (c->deadline <= now) {
            c->deadline = 0;
            c->busy++; /* kept while others on the chain are handled */
            c->tnext = expired;
            expired = c;
        } else if (!next || c->deadline < next) {
            next = c->deadline;
        }
    }
    if (l->backoff_until && l->backoff_until <= now) {
        l->backoff_until = 0;
        if (l->spare < 0) {
            l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
    } else if (l->backoff_until && (!next || l->backoff_until < next)) {
        next = l->backoff_until;
    }
    listener_arm(l, next);
    /* The listener outlives this: it is freed only by vmsig_core_free. */
    while (expired) {
        sockconn *c = expired;
        expired = c->tnext;
        conn_timeout(c);
        conn_leave(c);
    }
    while (turn) {
        sockconn *c = turn;
        turn = c->rnext;
        if (!c->dead && c->more && !c->paused) {
            conn_input(c);
            partial_deadline(c);
        } else if (!c->dead && c->fdwait) {
            int rc = conn_flush(c); /* has the peer read its last MEMCTX? */
            if (rc < 0 && rc != -EAGAIN) {
                flush_failed(c, rc);
            } else {
                update_watch(c);
            }
        }
        conn_leave(c);
    }
    listener_kick(l);
}

static void listener_ready(void *opaque, uint32_t events)
{
    listener *l = opaque;
    for (int i = 0; i < 64 && l->accepting; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE) {
                if (l->spare < 0) {
                    listener_backoff(l);
                    return;
                }
                /* Out of fds: a pending peer would keep the listener
                 * readable and the loop spinning. Spend the spare fd to
                 * accept it and refuse it at once (it reads a BYE, then EOF),
                 * then take the spare back (if that fails, the next EMFILE
                 * backs off). */
                close(l->spare);
                fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                    refuse_now(fd, -EMFILE, "server out of file descriptors");
                }
                l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            break; /* EAGAIN */
        }
        accept_one(l, fd);
    }
}

static void listener_free(void *opaque)
{
    listener *l = opaque;
    if (l->w) {
        vmsig__watch_del(l->w);
    }
    if (l->tw) {
        vmsig__watch_del(l->tw);
    }
    if (l->fd >= 0) {
        close(l->fd);
    }
    if (l->tfd >= 0) {
        close(l->tfd);
    }
    if (l->spare >= 0) {
        close(l->spare);
    }
    if (l->path) {
        struct stat st;
        /* Only our own socket: someone may have replaced it meanwhile. */
        if (lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino) {
            unlink(l->path);
        }
        free(l->path);
    }
    sockconn *c = l->conns;
    while (c) {
        sockconn *next = c->next;
        c->l = NULL;
        c->prev = c->next = NULL;
        c->shutdown = 1;
        c->deadline = 0;
        if (c->state != ST_ATTACHED) {
            /* Pending and parked handshakes and lingering BYEs: one last try. */
            if ((c->state == ST_HANDSHAKE || c->state == ST_PARKED) && !c->dead) {
                push_bye(c, -ESHUTDOWN, NULL);
                final_flush(c);
            }
            conn_close(c);
        }
        c = next;
    }
    free(l->uids);
    free(l);
}

int vmsig_core_listen(vmsig_core *core, const char *path, const vmsig_grants *grants)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!core || !path || !*path) {
        return -EINVAL;
    }
    if (strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);

    /* Every connection costs one fd and at most 2 * max_controls exist at
     * once, beside the listener's own and the host's reserve. */
    const vmsig_core_config *ccfg = vmsig__core_config(core);
    uint64_t lim = fd_limit();
    if (lim && 2ull * max_controls(ccfg) + FD_RESERVE + 8u > lim) {
        return -EMFILE;
    }

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            return -errno;
        }
        int rc = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
        int e = errno;
        close(probe);
        if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
            return -EADDRINUSE; /* somebody answers there */
        }
        if (e == ECONNREFUSED) {
            unlink(path); /* stale: nobody listens */
        }
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int rc;
    /* 0600 from the start (the inode takes the socket's mode), and again on
     * the path before listen(), so nobody else can ever connect. */
    if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    /* The backlog holds what does not fit while we stop accepting (admission). */
    int backlog = (int)(max_controls(ccfg) > 128u ? max_controls(ccfg) : 128u);
    if (chmod(path, 0600) < 0 || lstat(path, &st) < 0 || listen(fd, backlog) < 0) {
        rc = -errno;
        unlink(path);
        close(fd);
        return rc;
    }
    listener *l = calloc(1, sizeof(*l));
    if (!l || !(l->path = strdup(path))) {
        free(l);
        unlink(path);
        close(fd);
        return -ENOMEM;
    }
    l->core = core;
    l->fd = fd;
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->grants = grants;
    int err = l->tfd < 0 ? -errno : 0;
    if (!err) {
        l->w = vmsig__watch_add(core, fd, EPOLLIN, listener_ready, l, &err);
    }
    if (l->w) {
        l->tw = vmsig__watch_add(core, l->tfd, EPOLLIN, listener_timer, l, &err);
    }
    if (!l->w || !l->tw) {
        listener_free(l);
        return err ? err : -ENOMEM;
    }
    l->accepting = 1;
    rc = vmsig__core_set_listener(core, l, listener_free);
    if (rc < 0) {
        listener_free(l);
        return -EALREADY;
    }
    return 0;
}
