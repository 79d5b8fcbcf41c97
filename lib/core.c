/*
 * core.c - the vmsig core: fd watches, controls, subscriptions, per-endpoint
 * sequence numbers and state, snapshots, command checks and arbitration.
 *
 * Reentrancy: any callback (deliver, detach, backend, policy, watch) may
 * publish, submit, attach or detach. The core keeps a nesting depth; while it
 * is above zero nothing is freed, only marked (detached controls, removed
 * watches, replaced MEMCTX maps), and the outermost call sweeps. So an
 * iteration never sees freed memory, and a handle stays readable until the
 * call that holds it returns. vmsig_core_free must not be called from a
 * callback.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include "core_internal.h"
#include "kinds.h"

#define EP_COUNT       VMSIG_ENDPOINT_MAX
#define DISPATCH_BATCH 64

struct vmsig_watch {
    vmsig_core *core;
    int fd;
    vmsig_watch_cb cb;
    void *opaque;
    int removed;
    vmsig_watch *prev, *next; /* live list; a removed watch sits on the dead list */
};

struct vmsig_control {
    vmsig_core *core;
    vmsig_control_ops ops;
    void *opaque;
    vmsig_grant grant;
    vmsig_sub sub;  /* effective: requested & grant */
    uint64_t features; /* negotiated VMSIG_FEAT_* (in-process: all known) */
    uint64_t seq;   /* last delivery sequence number given to it */
    int dead;       /* detached; freed by the next sweep */
    int attaching;  /* inside vmsig_core_attach: a failure is reported there */
    int why;        /* why it was detached */
};

/* One published RAM map with the core's own read-only dups. */
typedef struct ep_memctx {
    vmsig_wire_memctx mc;
    vmsig_wire_memseg *segs;
    int fds[VMSIG_WIRE_MAX_FDS];
    unsigned nfds;
    uint64_t ts_ns;
    struct ep_memctx *next_dead;
} ep_memctx;

typedef struct ep_state {
    int has_seam;
    vmsig_wire_seam seam;  /* from the last RUNSTATE, for snapshots */
    uint64_t seam_ts;
    ep_memctx *mem;        /* current map, NULL if none published */
    vmsig_control *owner[VMSIG_CLASS__COUNT]; /* arbitration slots, [0] unused */
} ep_state;

struct vmsig_core {
    vmsig_core_config cfg;
    int epfd;
    unsigned depth;   /* callback/iteration nesting; frees wait for 0 */
    int closing;      /* inside vmsig_core_free */
    vmsig_control **ctls;
    unsigned nctl, capctl;
    unsigned nlive;   /* attached and not detached */
    unsigned ndead;   /* detached, waiting for the sweep */
    vmsig_watch *watches;
    vmsig_watch *dead_watches;
    ep_memctx *dead_mem;
    void *listener;
    void (*listener_free)(void *listener);
    ep_state ep[EP_COUNT];
    struct pending *pending;  /* commands the backend answers later */
    uint64_t next_ticket;
};

/* A command the backend took with -EINPROGRESS, until vmsig_core_complete. */
typedef struct pending {
    struct pending *next;
    uint64_t ticket;
    vmsig_control *c;  /* NULL once it detached: the answer is dropped */
    vmsig_event cmd;   /* id (seq), endpoint, kind and fixed payload; no ool */
} pending;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- deferred freeing ---- */

static void memctx_free(ep_memctx *m)
{
    for (unsigned i = 0; i < m->nfds; i++) {
        close(m->fds[i]);
    }
    free(m->segs);
    free(m);
}

static void sweep_controls(vmsig_core *core)
{
    unsigned j = 0;

    for (unsigned i = 0; i < core->nctl; i++) {
        vmsig_control *c = core->ctls[i];
        if (c->dead) {
            free(c);
        } else {
            core->ctls[j++] = c;
        }
    }
    core->nctl = j;
    core->ndead = 0;
}

static void sweep(vmsig_core *core)
{
    if (core->ndead) {
        sweep_controls(core);
    }
    while (core->dead_watches) {
        vmsig_watch *w = core->dead_watches;
        core->dead_watches = w->next;
        free(w);
    }
    while (core->dead_mem) {
        ep_memctx *m = core->dead_mem;
        core->dead_mem = m->next_dead;
        memctx_free(m);
    }
}

static void core_enter(vmsig_core *core)
{
    core->depth++;
}

static void core_leave(vmsig_core *core)
{
    if (--core->depth == 0) {
        sweep(core);
    }
}

/* ---- fd watches (core_internal.h) ---- */

vmsig_watch *vmsig__watch_add(vmsig_core *core, int fd, uint32_t events,
                              vmsig_watch_cb cb, void *opaque, int *err)
{
    struct epoll_event ee = { .events = events };
    vmsig_watch *w = calloc(1, sizeof(*w));

    if (!w) {
        *err = -ENOMEM;
        return NULL;
    }
    *w = (vmsig_watch){ .core = core, .fd = fd, .cb = cb, .opaque = opaque };
    ee.data.ptr = w;
    if (epoll_ctl(core->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
        *err = -errno;
        free(w);
        return NULL;
    }
    w->next = core->watches;
    if (w->next) {
        w->next->prev = w;
    }
    core->watches = w;
    return w;
}

int vmsig__watch_mod(vmsig_watch *w, uint32_t events)
{
    struct epoll_event ee = { .events = events, .data.ptr = w };

    if (!w || w->removed) {
        return -EINVAL;
    }
    return epoll_ctl(w->core->epfd, EPOLL_CTL_MOD, w->fd, &ee) < 0 ? -errno : 0;
}

void vmsig__watch_del(vmsig_watch *w)
{
    vmsig_core *core;

    if (!w || w->removed) {
        return;
    }
    core = w->core;
    epoll_ctl(core->epfd, EPOLL_CTL_DEL, w->fd, NULL); /* fails harmlessly if fd closed */
    w->removed = 1;
    if (w->prev) {
        w->prev->next = w->next;
    } else {
        core->watches = w->next;
    }
    if (w->next) {
        w->next->prev = w->prev;
    }
    /* An event for it may still be in the current batch: free after it. */
    w->next = core->dead_watches;
    core->dead_watches = w;
    if (!core->depth) {
        sweep(core);
    }
}

const vmsig_core_config *vmsig__core_config(const vmsig_core *core)
{
    return &core->cfg;
}

int vmsig__core_set_listener(vmsig_core *core, void *listener, void (*free_fn)(void *listener))
{
    if (listener && core->listener) {
        return -EALREADY;
    }
    core->listener = listener;
    core->listener_free = free_fn;
    return 0;
}

/* ---- the core ---- */

static void config_defaults(vmsig_core_config *cfg)
{
    if (!cfg->queue_limit) {
        cfg->queue_limit = 256;
    }
    if (!cfg->max_controls) {
        cfg->max_controls = 256;
    }
    if (!cfg->handshake_timeout_ms) {
        cfg->handshake_timeout_ms = 5000;
    }
    if (!cfg->policy) {
        cfg->policy = vmsig_arb_deny;
    }
}

vmsig_core *vmsig_core_new(const vmsig_core_config *cfg, int *err)
{
    vmsig_core *core;
    int r = 0;

    if (cfg && (cfg->version < 1 || cfg->version > VMSIG_CORE_CONFIG_VERSION)) {
        r = -EINVAL;
        goto out;
    }
    core = calloc(1, sizeof(*core));
    if (!core) {
        r = -ENOMEM;
        goto out;
    }
    if (cfg) {
        /* Only the fields its version has: a v1 caller's struct ends earlier. */
        memcpy(&core->cfg, cfg, cfg->version == 1 ? offsetof(vmsig_core_config, features_off)
                                                   : sizeof(*cfg));
    }
    core->cfg.version = VMSIG_CORE_CONFIG_VERSION;
    config_defaults(&core->cfg);
    core->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (core->epfd < 0) {
        r = -errno;
        free(core);
    }
out:
    if (err) {
        *err = r;
    }
    return r < 0 ? NULL : core;
}

void vmsig_core_free(vmsig_core *core)
{
    if (!core) {
        return;
    }
    core->closing = 1;
    core_enter(core);
    if (core->listener && core->listener_free) {
        core->listener_free(core->listener);
    }
    core->listener = NULL;
    for (unsigned i = 0; i < core->nctl; i++) {
        vmsig_control_detach(core->ctls[i], -ESHUTDOWN);
    }
    core_leave(core);
    /* Watches still here were leaked by their owners; their fds are not ours. */
    while (core->watches) {
        vmsig_watch *w = core->watches;
        core->watches = w->next;
        free(w);
    }
    for (unsigned i = 0; i < EP_COUNT; i++) {
        if (core->ep[i].mem) {
            memctx_free(core->ep[i].mem);
        }
    }
    while (core->pending) {
        pending *p = core->pending;
        core->pending = p->next;
        free(p);
    }
    close(core->epfd);
    free(core->ctls);
    free(core);
}

int vmsig_core_fd(vmsig_core *core)
{
    return core->epfd;
}

int vmsig_core_dispatch(vmsig_core *core)
{
    struct epoll_event evs[DISPATCH_BATCH];
    int n = epoll_wait(core->epfd, evs, DISPATCH_BATCH, 0);

    if (n <= 0) {
        return 0;
    }
    core_enter(core);
    for (int i = 0; i < n; i++) {
        vmsig_watch *w = evs[i].data.ptr;
        if (!w->removed) {
            w->cb(w->opaque, evs[i].events);
        }
    }
    core_leave(core);
    return n;
}

void vmsig_core_set_policy(vmsig_core *core, vmsig_arb_policy policy, void *opaque)
{
    core->cfg.policy = policy ? policy : vmsig_arb_deny;
    core->cfg.policy_opaque = opaque;
}

unsigned vmsig_core_control_count(vmsig_core *core)
{
    return core->nlive;
}

/* ---- who receives what ---- */

/* Whether c receives an UP event of kind for endpoint: the kind's source in
 * its subscription, the kind's capability in its grant, the endpoint in both
 * masks and the kind's feature negotiated. */
static int covers_row(const vmsig_control *c, const vmsig_sub *s, const vmsig_kind_row *k,
                      uint32_t endpoint)
{
    uint64_t bit;

    if (endpoint >= EP_COUNT || !k || k->source == VMSIG_SRC_NONE) {
        return 0;
    }
    bit = 1ull << endpoint;
    return (c->grant.caps & k->cap) && (s->source_mask & (1u << k->source)) &&
           (c->grant.endpoint_mask & s->endpoint_mask & bit) &&
           (k->feature & ~c->features) == 0;
}

static int covers(const vmsig_control *c, const vmsig_sub *s, uint32_t kind, uint32_t endpoint)
{
    return covers_row(c, s, vmsig__kind(kind), endpoint);
}

static uint32_t sources_allowed(uint32_t caps)
{
    uint32_t m = 0;

    if (caps & VMSIG_CAP_OBSERVE) {
        m |= (1u << VMSIG_SRC_SEAM) | (1u << VMSIG_SRC_ARB);
    }
    if (caps & VMSIG_CAP_MEMCTX) {
        m |= 1u << VMSIG_SRC_MEMCTX;
    }
    return m;
}

/* An all-zero (or NULL) sub asks for everything the grant allows. */
static vmsig_sub effective_sub(const vmsig_grant *g, const vmsig_sub *want)
{
    vmsig_sub s = { VMSIG_SRC_ALL, ~0ull };

    if (want && (want->source_mask || want->endpoint_mask)) {
        s = *want;
    }
    s.source_mask &= sources_allowed(g->caps);
    s.endpoint_mask &= g->endpoint_mask;
    return s;
}

/* ev->seq becomes c's next delivery sequence number: counted per control, so
 * what its subscription filters out leaves no gap, and a gap is a loss. */
static void deliver_to(vmsig_control *c, vmsig_event *ev, const int *fds, unsigned nfds)
{
    int r;

    if (c->dead || !c->ops.deliver) {
        return;
    }
    ev->seq = ++c->seq;
    r = c->ops.deliver(c->opaque, ev, fds, nfds);
    if (r == -EAGAIN) {
        vmsig_control_detach(c, -ENOBUFS);
    } else if (r < 0) {
        vmsig_control_detach(c, r); /* -EPIPE gone, -EMFILE/-ENOMEM the server's lack */
    }
}

/* Delivers to every control the event is for, plus `also` (may be NULL).
 * Controls attached during the loop already got the state as a snapshot. */
static void broadcast_row(vmsig_core *core, const vmsig_kind_row *k, vmsig_event *ev,
                          const int *fds, unsigned nfds, vmsig_control *also)
{
    unsigned n = core->nctl;

    core_enter(core);
    for (unsigned i = 0; i < n; i++) {
        vmsig_control *c = core->ctls[i];
        if (c != also && (!covers_row(c, &c->sub, k, ev->endpoint) ||
                          (ev->kind == VMSIG_EV_ARB && ev->u.arb.cls == VMSIG_CLASS_SNAPSHOT &&
                           !(c->features & VMSIG_FEAT_SNAPSHOT)))) {
            continue; /* a 1.1 control never hears of the 1.2 class */
        }
        deliver_to(c, ev, fds, nfds);
    }
    core_leave(core);
}

static void broadcast(vmsig_core *core, vmsig_event *ev, const int *fds, unsigned nfds,
                      vmsig_control *also)
{
    broadcast_row(core, vmsig__kind(ev->kind), ev, fds, nfds, also);
}

static void stamp(vmsig_event *ev)
{
    ev->dir = VMSIG_DIR_UP;
    ev->flags &= ~VMSIG_F_SNAPSHOT;
    if (!ev->ts_ns) {
        ev->ts_ns = now_ns();
    }
}

/* ---- UP ---- */

static int publish_up(vmsig_core *core, vmsig_event *ev)
{
    const vmsig_kind_row *k = ev ? vmsig__kind(ev->kind) : NULL;
    ep_state *ep;

    if (!core || !k || ev->endpoint >= EP_COUNT || ev->kind == VMSIG_EV_MEMCTX ||
        k->source == VMSIG_SRC_NONE) {
        return -EINVAL;
    }
    stamp(ev);
    ep = &core->ep[ev->endpoint];
    if (ev->kind == VMSIG_EV_RUNSTATE) {
        ep->seam = ev->u.seam;
        ep->seam_ts = ev->ts_ns;
        ep->has_seam = 1;
    }
    broadcast_row(core, k, ev, NULL, 0, NULL);
    return 0;
}

int vmsig_core_publish(vmsig_core *core, vmsig_event *ev)
{
    /* ARB and MEMWRITE_DONE state what the core did: only the core says them. */
    if (ev && (ev->kind == VMSIG_EV_ARB || ev->kind == VMSIG_EV_MEMWRITE_DONE)) {
        return -EINVAL;
    }
    return publish_up(core, ev);
}

static int memctx_check(const vmsig_wire_memctx *mc, const vmsig_wire_memseg *segs,
                        const int *fds, unsigned nfds)
{
    if (!mc) {
        return -EINVAL;
    }
    if (mc->status != 0) {
        return 0; /* "unavailable": segments and fds are ignored */
    }
    if (mc->nseg > VMSIG_MEMCTX_MAX_SEGS || nfds > VMSIG_WIRE_MAX_FDS ||
        (mc->nseg && !segs) || (nfds && !fds)) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < mc->nseg; i++) {
        if (segs[i].fd_index >= nfds) {
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < nfds; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0) {
            return -EBADF;
        }
        /* A writable description would hand RAM write access to every holder. */
        if ((fl & O_ACCMODE) != O_RDONLY) {
            return -EACCES;
        }
    }
    return 0;
}

static int memctx_copy(const vmsig_wire_memctx *mc, const vmsig_wire_memseg *segs,
                       const int *fds, unsigned nfds, ep_memctx **out)
{
    ep_memctx *m = calloc(1, sizeof(*m));
    size_t seg_bytes;

    if (!m) {
        return -ENOMEM;
    }
    m->mc = *mc;
    m->mc.why[sizeof(m->mc.why) - 1] = '\0';
    if (mc->status != 0) {
        m->mc.nseg = 0;
        nfds = 0;
    }
    seg_bytes = (size_t)m->mc.nseg * sizeof(*segs);
    if (seg_bytes && !(m->segs = malloc(seg_bytes))) {
        memctx_free(m);
        return -ENOMEM;
    }
    if (seg_bytes) {
        memcpy(m->segs, segs, seg_bytes);
    }
    for (unsigned i = 0; i < nfds; i++) {
        int d = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
        if (d < 0) {
            int r = -errno;
            memctx_free(m);
            return r;
        }
        m->fds[m->nfds++] = d;
    }
    *out = m;
    return 0;
}

static void memctx_event(const ep_memctx *m, uint32_t endpoint, vmsig_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->dir = VMSIG_DIR_UP;
    ev->kind = VMSIG_EV_MEMCTX;
    ev->endpoint = endpoint;
    ev->u.memctx = m->mc;
    ev->ool = m->segs;
    ev->ool_len = m->mc.nseg * (uint32_t)sizeof(vmsig_wire_memseg);
}

int vmsig_core_publish_memctx(vmsig_core *core, uint32_t endpoint,
                              const vmsig_wire_memctx *mc, const vmsig_wire_memseg *segs,
                              const int *fds, unsigned nfds)
{
    ep_memctx *m = NULL;
    ep_state *ep;
    vmsig_event ev;
    int r;

    if (!core || endpoint >= EP_COUNT) {
        return -EINVAL;
    }
    r = memctx_check(mc, segs, fds, nfds);
    if (r == 0) {
        r = memctx_copy(mc, segs, fds, nfds, &m);
    }
    if (r == -EMFILE || r == -ENFILE) {
        /* The map changed but we cannot keep its fds: say it is unavailable
         * (with why) rather than nothing, so no holder trusts the old one. */
        vmsig_wire_memctx un = { .generation = mc->generation, .status = -EMFILE };
        snprintf(un.why, sizeof(un.why), "server out of file descriptors: cannot pass guest RAM");
        int r2 = memctx_copy(&un, NULL, NULL, 0, &m);
        if (r2 < 0) {
            return r2;
        }
        r = -EMFILE; /* published, but not what was asked */
    } else if (r < 0) {
        return r;
    }
    ep = &core->ep[endpoint];
    if (!m->mc.generation) {
        m->mc.generation = (ep->mem ? ep->mem->mc.generation : 0) + 1;
    }
    core_enter(core);
    if (ep->mem) {
        /* Someone up the stack may be delivering the old map: free it later. */
        ep->mem->next_dead = core->dead_mem;
        core->dead_mem = ep->mem;
    }
    ep->mem = m;
    memctx_event(m, endpoint, &ev);
    stamp(&ev);
    m->ts_ns = ev.ts_ns;
    broadcast(core, &ev, m->fds, m->nfds, NULL);
    core_leave(core);
    return r;
}

uint64_t vmsig_core_memctx_generation(vmsig_core *core, uint32_t endpoint)
{
    if (!core || endpoint >= EP_COUNT || !core->ep[endpoint].mem) {
        return 0;
    }
    return core->ep[endpoint].mem->mc.generation;
}

/* ---- snapshots ---- */

static int newly_covered(const vmsig_control *c, const vmsig_sub *before, uint32_t kind,
                         uint32_t endpoint)
{
    return covers(c, &c->sub, kind, endpoint) && !(before && covers(c, before, kind, endpoint));
}

/* Current state for what c's subscription covers and `before` did not:
 * every RUNSTATE, then every MEMCTX. */
static void send_snapshot(vmsig_control *c, const vmsig_sub *before)
{
    vmsig_core *core = c->core;
    vmsig_event ev;

    for (uint32_t i = 0; i < EP_COUNT && !c->dead; i++) {
        ep_state *ep = &core->ep[i];
        if (!ep->has_seam || !newly_covered(c, before, VMSIG_EV_RUNSTATE, i)) {
            continue;
        }
        memset(&ev, 0, sizeof(ev));
        ev.dir = VMSIG_DIR_UP;
        ev.kind = VMSIG_EV_RUNSTATE;
        ev.endpoint = i;
        ev.flags = VMSIG_F_SNAPSHOT;
        ev.ts_ns = ep->seam_ts;
        ev.u.seam = ep->seam;
        deliver_to(c, &ev, NULL, 0);
    }
    for (uint32_t i = 0; i < EP_COUNT && !c->dead; i++) {
        ep_memctx *m = core->ep[i].mem;
        if (!m || !newly_covered(c, before, VMSIG_EV_MEMCTX, i)) {
            continue;
        }
        memctx_event(m, i, &ev);
        ev.flags = VMSIG_F_SNAPSHOT;
        ev.ts_ns = m->ts_ns;
        deliver_to(c, &ev, m->fds, m->nfds);
    }
}

/* ---- controls ---- */

static int ctls_push(vmsig_core *core, vmsig_control *c)
{
    if (core->nctl == core->capctl) {
        unsigned ncap = core->capctl ? core->capctl * 2 : 16;
        vmsig_control **nv = realloc(core->ctls, ncap * sizeof(*nv));
        if (!nv) {
            return -ENOMEM;
        }
        core->ctls = nv;
        core->capctl = ncap;
    }
    core->ctls[core->nctl++] = c;
    return 0;
}

static int attach_check(vmsig_core *core, const vmsig_control_ops *ops, const vmsig_grant *grant)
{
    if (!core || !ops || vmsig_grant_check(grant) < 0) {
        return -EINVAL;
    }
    if (core->closing) {
        return -ESHUTDOWN;
    }
    if (core->nlive >= core->cfg.max_controls) {
        return -EMFILE;
    }
    return 0;
}

vmsig_control *vmsig_core_attach(vmsig_core *core, const vmsig_control_ops *ops, void *opaque,
                                 const vmsig_grant *grant, const vmsig_sub *sub, int *err)
{
    return vmsig__core_attach_ex(core, ops, opaque, grant, sub, VMSIG_FEATURES_KNOWN, err);
}

vmsig_control *vmsig__core_attach_ex(vmsig_core *core, const vmsig_control_ops *ops,
                                     void *opaque, const vmsig_grant *grant,
                                     const vmsig_sub *sub, uint64_t features, int *err)
{
    vmsig_control *c = NULL;
    int r = attach_check(core, ops, grant);

    if (r == 0 && !(c = calloc(1, sizeof(*c)))) {
        r = -ENOMEM;
    }
    if (r == 0) {
        *c = (vmsig_control){ .core = core, .ops = *ops, .opaque = opaque, .grant = *grant,
                              .sub = effective_sub(grant, sub),
                              .features = features & VMSIG_FEATURES_KNOWN, .attaching = 1 };
        r = ctls_push(core, c);
        if (r < 0) {
            free(c);
        }
    }
    if (r == 0) {
        core->nlive++;
        core_enter(core);
        send_snapshot(c, NULL);
        c->attaching = 0;
        r = c->dead ? c->why : 0; /* it refused its snapshot */
        core_leave(core);
    }
    if (err) {
        *err = r;
    }
    return r < 0 ? NULL : c;
}

static void arb_publish(vmsig_core *core, uint32_t endpoint, uint32_t cls, uint32_t what,
                        uint32_t owner, uint32_t by, vmsig_control *also)
{
    vmsig_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_EV_ARB;
    ev.endpoint = endpoint;
    ev.u.arb = (vmsig_wire_arb){ .cls = cls, .what = what, .owner = owner, .by = by };
    stamp(&ev);
    broadcast(core, &ev, NULL, 0, also);
}

static void release_slots(vmsig_control *c)
{
    vmsig_core *core = c->core;

    for (uint32_t i = 0; i < EP_COUNT; i++) {
        for (uint32_t cls = 1; cls < VMSIG_CLASS__COUNT; cls++) {
            if (core->ep[i].owner[cls] != c) {
                continue;
            }
            core->ep[i].owner[cls] = NULL;
            if (!core->closing) {
                arb_publish(core, i, cls, VMSIG_ARB_RELEASED, c->grant.principal, 0, NULL);
            }
        }
    }
}

const char *vmsig__why_text(int why)
{
    switch (why) {
    case 0:           return "detached";
    case -ENOBUFS:    return "slow reader: event queue full";
    case -EPIPE:      return "peer closed";
    case -ESHUTDOWN:  return "server shutting down";
    case -EPROTO:     return "protocol error";
    case -ETIMEDOUT:  return "handshake timed out";
    default:          return strerror(-why);
    }
}

void vmsig_control_detach(vmsig_control *c, int why)
{
    vmsig_core *core;

    if (!c || c->dead) {
        return;
    }
    core = c->core;
    core_enter(core);
    c->dead = 1;
    c->why = why;
    for (pending *p = core->pending; p; p = p->next) {
        if (p->c == c) {
            p->c = NULL; /* its late reply is dropped; the backend still completes */
        }
    }
    core->nlive--;
    core->ndead++;
    release_slots(c);
    /* A control that dies during attach never existed for its owner. */
    if (!c->attaching) {
        if (core->cfg.on_detach) {
            core->cfg.on_detach(core->cfg.log_opaque, &c->grant, why, vmsig__why_text(why));
        }
        if (c->ops.detach) {
            c->ops.detach(c->opaque, why);
        }
    }
    core_leave(core);
}

void vmsig_control_subscribe(vmsig_control *c, const vmsig_sub *sub)
{
    vmsig_sub before;

    if (!c || c->dead) {
        return;
    }
    before = c->sub;
    c->sub = effective_sub(&c->grant, sub);
    core_enter(c->core);
    send_snapshot(c, &before);
    core_leave(c->core);
}

const vmsig_grant *vmsig_control_grant(const vmsig_control *c)
{
    return &c->grant;
}

vmsig_sub vmsig_control_sub(const vmsig_control *c)
{
    return c->sub;
}

/* ---- DOWN: command checks ---- */

static int in_range(uint32_t v, uint32_t lo, uint32_t hi)
{
    return v >= lo && v <= hi ? 0 : -EINVAL;
}

static int input_check(const vmsig_event *cmd)
{
    const vmsig_wire_input *in = &cmd->u.input;

    switch (in->op) {
    case VMSIG_INPUT_KEY:
        /* Whether QEMU can map the code is the backend's call. */
        return in->len == 0 && (in->value == 0 || in->value == 1) ? 0 : -EINVAL;
    case VMSIG_INPUT_BTN:
        return in->len == 0 && in->code < VMSIG_BTN__COUNT && (in->value == 0 || in->value == 1)
                   ? 0 : -EINVAL;
    case VMSIG_INPUT_REL:
        return in->len == 0 && in->code <= VMSIG_AXIS_Y ? 0 : -EINVAL;
    case VMSIG_INPUT_ABS:
        return in->len == 0 && in->code <= VMSIG_AXIS_Y && in->value >= 0 &&
                       in->value <= VMSIG_ABS_MAX ? 0 : -EINVAL;
    case VMSIG_INPUT_TEXT:
        /* 1..VMSIG_TEXT_MAX bytes; code and value are reserved */
        if (in->code || in->value || in->len == 0 || in->len > VMSIG_TEXT_MAX ||
            cmd->ool_len != in->len || !cmd->ool) {
            return -EINVAL;
        }
        return 0;
    default:
        return -EINVAL;
    }
}

static int memwrite_check(const vmsig_event *cmd)
{
    const vmsig_wire_memwrite *mw = &cmd->u.memwrite;

    if (mw->flags || mw->len == 0 || mw->len > VMSIG_MEMWRITE_MAX || cmd->ool_len != mw->len ||
        !cmd->ool) {
        return -EINVAL;
    }
    /* Whether the range is RAM is the backend's call; wrapping is never valid. */
    if (mw->gpa > UINT64_MAX - (mw->len - 1)) {
        return -EFAULT;
    }
    return 0;
}

static int op_check(const vmsig_event *cmd, uint32_t lo, uint32_t hi)
{
    if (cmd->u.cmd.arg != 0) {
        return -EINVAL; /* reserved */
    }
    return in_range(cmd->u.cmd.op, lo, hi);
}

/* -EOPNOTSUPP for a kind that is not a command, that this core does not
 * know or whose feature c did not negotiate. */
static int cmd_check_kind(const vmsig_control *c, const vmsig_event *cmd)
{
    const vmsig_kind_row *k = vmsig__kind(cmd->kind);

    if (!k || k->dir != VMSIG_WIRE_C2S || !vmsig__kind_is_cmd_range(cmd->kind) ||
        (k->feature & ~c->features)) {
        return -EOPNOTSUPP;
    }
    return 0;
}

/* A snapshot name: 1..31 of [A-Za-z0-9._-], NUL padded to the end. */
static int snap_name_ok(const char *name)
{
    size_t n = 0;

    while (n < VMSIG_SNAP_NAME_MAX && name[n]) {
        char ch = name[n++];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-')) {
            return 0;
        }
    }
    if (n == 0 || n == VMSIG_SNAP_NAME_MAX) {
        return 0;
    }
    while (n < VMSIG_SNAP_NAME_MAX) {
        if (name[n++]) {
            return 0; /* padding is zero */
        }
    }
    return 1;
}

static int snapshot_check(const vmsig_event *cmd)
{
    vmsig_wire_snapshot s;
    static const char zero[VMSIG_SNAP_NAME_MAX];

    memcpy(&s, cmd->u.raw, sizeof(s));
    if (s.reserved || s.op < VMSIG_SNAP_SAVE || s.op > VMSIG_SNAP_LIST ||
        (s.flags & ~VMSIG_SNAP_F_KNOWN) || (s.flags && s.op != VMSIG_SNAP_RESTORE) ||
        s.then > VMSIG_SNAP_THEN_PAUSE ||
        (s.then && s.op != VMSIG_SNAP_SAVE && s.op != VMSIG_SNAP_RESTORE)) {
        return -EINVAL;
    }
    if (s.op == VMSIG_SNAP_LIST) {
        return memcmp(s.name, zero, sizeof(zero)) ? -EINVAL : 0;
    }
    return snap_name_ok(s.name) ? 0 : -EINVAL;
}

/* The payload: -EINVAL (-EFAULT for a wrapping MEMWRITE). */
static int cmd_check_shape(const vmsig_event *cmd)
{
    switch (cmd->kind) {
    case VMSIG_CMD_NOP:
        return 0;
    case VMSIG_CMD_VM:
        return op_check(cmd, VMSIG_VM_QUERY, VMSIG_VM_CONT);
    case VMSIG_CMD_LIFECYCLE:
        return op_check(cmd, VMSIG_LC_PAUSE, VMSIG_LC_WAKEUP);
    case VMSIG_CMD_POWER:
        return op_check(cmd, VMSIG_PWR_POWERDOWN, VMSIG_PWR_QUIT);
    case VMSIG_CMD_ACQUIRE:
    case VMSIG_CMD_RELEASE:
        return op_check(cmd, VMSIG_CLASS_INPUT, VMSIG_CLASS__COUNT - 1);
    case VMSIG_CMD_INPUT:
        return input_check(cmd);
    case VMSIG_CMD_MEMWRITE:
        return memwrite_check(cmd);
    case VMSIG_CMD_CPU: {
        vmsig_wire_cpu c;
        memcpy(&c, cmd->u.raw, sizeof(c));
        return c.op == VMSIG_CPU_REGS ? 0 : -EINVAL; /* the index is the backend's */
    }
    case VMSIG_CMD_SNAPSHOT:
        return snapshot_check(cmd);
    default:
        return -EOPNOTSUPP;
    }
}

/* Any one of the returned bits allows the command; 0 = none needed (NOP). */
static uint32_t cmd_caps(const vmsig_event *cmd)
{
    if (cmd->kind == VMSIG_CMD_ACQUIRE || cmd->kind == VMSIG_CMD_RELEASE) {
        return vmsig_class_caps(cmd->u.cmd.op);
    }
    return vmsig__kind(cmd->kind)->cap;
}

/* The exclusive class a command belongs to, 0 if none (VM query, NOP, ...). */
static uint32_t cmd_class(const vmsig_event *cmd)
{
    if ((cmd->kind == VMSIG_CMD_VM && cmd->u.cmd.op == VMSIG_VM_QUERY) ||
        (cmd->kind == VMSIG_CMD_SNAPSHOT && cmd->u.snapshot.op == VMSIG_SNAP_LIST)) {
        return 0;
    }
    return vmsig__kind(cmd->kind)->cls;
}

/* ---- DOWN: arbitration ---- */

static int held_by_other(const vmsig_control *owner, const vmsig_control *c)
{
    return owner && owner != c && !owner->dead;
}

static int arb_acquire(vmsig_control *c, uint32_t endpoint, uint32_t cls)
{
    vmsig_core *core = c->core;
    vmsig_control **slot = &core->ep[endpoint].owner[cls];
    vmsig_control *old = *slot;

    if (old == c) {
        return 0;
    }
    if (held_by_other(old, c)) {
        if (core->cfg.policy(core->cfg.policy_opaque, endpoint, cls, &old->grant,
                             &c->grant) != VMSIG_ARB_PREEMPT) {
            return -EBUSY;
        }
        *slot = c;
        /* The loser hears it even if it never subscribed to ARB. */
        arb_publish(core, endpoint, cls, VMSIG_ARB_PREEMPTED, old->grant.principal,
                    c->grant.principal, old);
    } else {
        *slot = c; /* free, or its owner is gone: the policy is not asked */
    }
    arb_publish(core, endpoint, cls, VMSIG_ARB_GRANTED, c->grant.principal, 0, NULL);
    return 0;
}

static int arb_release(vmsig_control *c, uint32_t endpoint, uint32_t cls)
{
    vmsig_core *core = c->core;
    vmsig_control **slot = &core->ep[endpoint].owner[cls];

    if (*slot != c) {
        return -ENOENT;
    }
    *slot = NULL;
    arb_publish(core, endpoint, cls, VMSIG_ARB_RELEASED, c->grant.principal, 0, NULL);
    return 0;
}

/* ---- DOWN: running a command ---- */

static void publish_memwrite_done(vmsig_core *core, const vmsig_event *cmd, uint32_t writer)
{
    vmsig_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_EV_MEMWRITE_DONE;
    ev.endpoint = cmd->endpoint;
    ev.u.memdone = (vmsig_wire_memwrite_done){
        .gpa = cmd->u.memwrite.gpa,
        .len = cmd->u.memwrite.len,
        .generation = vmsig_core_memctx_generation(core, cmd->endpoint),
        .writer = writer,
    };
    publish_up(core, &ev);
}

static int run_backend(vmsig_control *c, const vmsig_event *cmd, vmsig_reply *reply)
{
    vmsig_core *core = c->core;
    const vmsig_backend_ops *ops = core->cfg.backend;
    uint32_t principal = c->grant.principal;
    int r;

    if (!ops || !ops->command) {
        return -ENOSYS;
    }
    /* A control that can take a late reply gets a ticket for it. */
    pending *p = NULL;
    reply->ticket = 0;
    if (c->ops.reply && (p = calloc(1, sizeof(*p)))) {
        reply->ticket = ++core->next_ticket;
    }
    r = ops->command(core->cfg.backend_opaque, cmd, principal, reply);
    if (r == -EINPROGRESS && p) {
        p->ticket = reply->ticket;
        p->c = c;
        p->cmd = *cmd;
        p->cmd.ool = NULL;
        p->cmd.ool_len = 0;
        p->next = core->pending;
        core->pending = p;
        return r;
    }
    free(p);
    if (r == -EINPROGRESS) {
        r = -EIO; /* a backend that defers without a ticket: its bug */
    }
    if (r > 0) {
        r = 0;
    }
    if (reply->len > VMSIG_REPLY_BODY_MAX) {
        reply->len = VMSIG_REPLY_BODY_MAX;
    }
    if (r == 0 && cmd->kind == VMSIG_CMD_VM && cmd->u.cmd.op == VMSIG_VM_QUERY &&
        !(c->features & VMSIG_FEAT_VMINFO_HOST) && reply->len > sizeof(vmsig_wire_vminfo)) {
        reply->len = sizeof(vmsig_wire_vminfo); /* the tail is only for who negotiated it */
    }
    if (r == 0 && cmd->kind == VMSIG_CMD_MEMWRITE) {
        reply->status = 0;
        publish_memwrite_done(core, cmd, principal);
    }
    return r;
}

static int submit_checked(vmsig_control *c, const vmsig_event *cmd, vmsig_reply *reply)
{
    vmsig_core *core = c->core;
    uint32_t need, cls;
    int r = cmd_check_kind(c, cmd);

    /* What the control may not send, it learns nothing about: the grant
     * (endpoint, capability) first, then ownership, then the payload. */
    if (r < 0) {
        return r;
    }
    if (cmd->endpoint >= EP_COUNT || !(c->grant.endpoint_mask & (1ull << cmd->endpoint))) {
        return -EPERM;
    }
    need = cmd_caps(cmd);
    if (need && !(c->grant.caps & need)) {
        return -EPERM;
    }
    cls = cmd_class(cmd);
    if (cls && held_by_other(core->ep[cmd->endpoint].owner[cls], c)) {
        return -EBUSY;
    }
    r = cmd_check_shape(cmd);
    if (r < 0) {
        return r;
    }
    if ((cmd->kind == VMSIG_CMD_ACQUIRE || cmd->kind == VMSIG_CMD_RELEASE) &&
        cmd->u.cmd.op == VMSIG_CLASS_SNAPSHOT && !(c->features & VMSIG_FEAT_SNAPSHOT)) {
        return -EINVAL; /* a class of protocol 1.2: only with its feature */
    }
    switch (cmd->kind) {
    case VMSIG_CMD_NOP:
        return 0;
    case VMSIG_CMD_ACQUIRE:
        return arb_acquire(c, cmd->endpoint, cmd->u.cmd.op);
    case VMSIG_CMD_RELEASE:
        return arb_release(c, cmd->endpoint, cmd->u.cmd.op);
    default:
        return run_backend(c, cmd, reply);
    }
}

int vmsig_core_complete(vmsig_core *core, uint64_t ticket, int status, const void *body,
                        uint32_t len)
{
    pending **pp, *p;

    if (!core || !ticket) {
        return -EINVAL;
    }
    for (pp = &core->pending; (p = *pp) && p->ticket != ticket; pp = &p->next) {
    }
    if (!p) {
        return -ENOENT;
    }
    *pp = p->next;
    vmsig_control *c = p->c;
    int r = 0;
    if (!c || c->dead) {
        r = -EPIPE; /* it went away meanwhile: nobody to tell */
    } else {
        if (status > 0) {
            status = 0;
        }
        if (len > VMSIG_REPLY_BODY_MAX || (len && !body)) {
            len = 0;
        }
        core_enter(core);
        if (status == 0 && p->cmd.kind == VMSIG_CMD_MEMWRITE) {
            publish_memwrite_done(core, &p->cmd, c->grant.principal);
        }
        if (!c->dead) {
            c->ops.reply(c->opaque, p->cmd.seq, p->cmd.endpoint, status, body, len);
        }
        core_leave(core);
    }
    free(p);
    return r;
}

int vmsig_control_submit(vmsig_control *c, const vmsig_event *cmd, vmsig_reply *reply)
{
    vmsig_reply scratch;
    int r;

    if (!reply) {
        reply = &scratch;
    }
    reply->status = 0;
    reply->len = 0;
    if (!c || !cmd) {
        r = -EINVAL;
    } else if (c->dead) {
        r = -EPIPE;
    } else {
        vmsig_core *core = c->core;
        core_enter(core); /* c stays valid even if a callback detaches it */
        r = submit_checked(c, cmd, reply);
        core_leave(core);
    }
    reply->status = r;
    /* On failure a body, if the backend set one, is its NUL-terminated
     * explanation (QEMU's error text); the core's own refusals have none. */
    return r;
}
