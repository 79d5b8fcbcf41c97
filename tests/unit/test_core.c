/*
 * test_core.c - the core with in-process controls and a small VM model as
 * its backend: delivery filtering, sequence numbers, snapshots, command
 * checks, arbitration, MEMWRITE_DONE, reentrant detach, shutdown.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <sys/resource.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmsig/vmsig_core.h"
#include "../../lib/core_internal.h"

#define ALL_EPS (~0ull)

/* ---- a VM model: the backend under test ---- */

typedef struct vm_model {
    vmsig_core *core;
    unsigned calls;         /* every command that reached the backend */
    uint32_t state[VMSIG_ENDPOINT_MAX];
    uint8_t ram[4096];
    uint32_t last_principal;
} vm_model;

static void vm_set_state(vm_model *m, uint32_t ep, uint32_t state)
{
    vmsig_event ev = { .kind = VMSIG_EV_RUNSTATE, .endpoint = ep };

    m->state[ep] = state;
    ev.u.seam.state = state;
    ev.u.seam.running = state == VMSIG_RS_RUNNING;
    g_assert_cmpint(vmsig_core_publish(m->core, &ev), ==, 0);
}

static int vm_memwrite(vm_model *m, const vmsig_event *cmd)
{
    const vmsig_wire_memwrite *mw = &cmd->u.memwrite;

    if (mw->gpa >= sizeof(m->ram) || mw->len > sizeof(m->ram) - mw->gpa) {
        return -EFAULT;
    }
    memcpy(m->ram + mw->gpa, cmd->ool, mw->len);
    return 0;
}

static int vm_command(void *opaque, const vmsig_event *cmd, uint32_t principal,
                      vmsig_reply *reply)
{
    vm_model *m = opaque;
    vmsig_wire_vminfo info = { 0 };

    m->calls++;
    m->last_principal = principal;
    switch (cmd->kind) {
    case VMSIG_CMD_VM:
        if (cmd->u.cmd.op == VMSIG_VM_QUERY) {
            info.state = m->state[cmd->endpoint];
            info.endpoint = cmd->endpoint;
            info.vcpus = 1;
            memcpy(reply->body, &info, sizeof(info));
            reply->len = sizeof(info);
        } else {
            vm_set_state(m, cmd->endpoint,
                         cmd->u.cmd.op == VMSIG_VM_STOP ? VMSIG_RS_PAUSED : VMSIG_RS_RUNNING);
        }
        return 0;
    case VMSIG_CMD_MEMWRITE:
        return vm_memwrite(m, cmd);
    case VMSIG_CMD_LIFECYCLE:
        if (cmd->u.cmd.op == VMSIG_LC_WAKEUP && m->state[cmd->endpoint] != VMSIG_RS_SUSPENDED) {
            /* a refusal explained in words, as QEMU's glue does */
            reply->len = (uint32_t)g_strlcpy((char *)reply->body, "guest is not suspended",
                                             sizeof(reply->body)) + 1;
            return -EINVAL;
        }
        return 0;
    default:
        return 0;
    }
}

static const vmsig_backend_ops vm_ops = { .command = vm_command };

/* Counts how often the policy is asked, then asks the real one. */
typedef struct counting_policy {
    vmsig_arb_policy inner;
    unsigned calls;
} counting_policy;

static vmsig_arb_decision count_policy(void *opaque, uint32_t endpoint, uint32_t cls,
                                       const vmsig_grant *incumbent,
                                       const vmsig_grant *contender)
{
    counting_policy *p = opaque;

    g_assert_nonnull(incumbent);
    p->calls++;
    return p->inner(NULL, endpoint, cls, incumbent, contender);
}

typedef struct detach_log {
    unsigned calls;
    int last_why;
} detach_log;

static void on_detach_log(void *opaque, const vmsig_grant *g, int why, const char *text)
{
    detach_log *l = opaque;

    g_assert_nonnull(text);
    l->calls++;
    l->last_why = why;
}

typedef struct fixture {
    vm_model vm;
    counting_policy policy;
    detach_log log;
    vmsig_core *core;
} fixture;

static void fx_init_max(fixture *f, vmsig_arb_policy policy, uint32_t max_controls)
{
    vmsig_core_config cfg = {
        .version = VMSIG_CORE_CONFIG_VERSION,
        .max_controls = max_controls,
        .policy = count_policy,
        .policy_opaque = &f->policy,
        .backend = &vm_ops,
        .backend_opaque = &f->vm,
        .on_detach = on_detach_log,
        .log_opaque = &f->log,
    };
    int err = 1;

    memset(f, 0, sizeof(*f));
    f->policy.inner = policy;
    f->core = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(f->core);
    g_assert_cmpint(err, ==, 0);
    f->vm.core = f->core;
}

static void fx_init(fixture *f, vmsig_arb_policy policy)
{
    fx_init_max(f, policy, 0);
}

static vmsig_grant mkgrant(uint32_t principal, uint32_t caps, uint64_t eps, int32_t prio)
{
    return (vmsig_grant){ .principal = principal, .caps = caps, .endpoint_mask = eps,
                          .priority = prio };
}

/* ---- a recording in-process control ---- */

typedef struct rec {
    GArray *evs;      /* vmsig_event copies; ool is not kept */
    GArray *nfds;     /* fds count per event */
    vmsig_inproc *ic;
    int ro_fds_ok;    /* every MEMCTX fd was read-only */
} rec;

static void rec_push(rec *r, const vmsig_event *ev, unsigned nfds)
{
    vmsig_event copy = *ev;

    copy.ool = NULL;
    g_array_append_val(r->evs, copy);
    g_array_append_val(r->nfds, nfds);
}

static int rec_on_event(void *opaque, const vmsig_event *ev)
{
    g_assert_cmpuint(ev->kind, !=, VMSIG_EV_MEMCTX);
    rec_push(opaque, ev, 0);
    return 0;
}

static int rec_on_memctx(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds)
{
    rec *r = opaque;

    g_assert_cmpuint(ev->kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpuint(ev->ool_len, ==, ev->u.memctx.nseg * sizeof(vmsig_wire_memseg));
    for (unsigned i = 0; i < nfds; i++) {
        if ((fcntl(fds[i], F_GETFL) & O_ACCMODE) != O_RDONLY) {
            r->ro_fds_ok = 0;
        }
    }
    rec_push(r, ev, nfds);
    return 0;
}

static rec *rec_new_err(fixture *f, vmsig_grant g, uint32_t src, uint64_t eps, int memctx,
                        int *err)
{
    rec *r = g_new0(rec, 1);
    vmsig_inproc_cfg cfg = {
        .on_event = rec_on_event,
        .on_memctx = memctx ? rec_on_memctx : NULL,
        .opaque = r,
        .sub = { .source_mask = src, .endpoint_mask = eps },
    };

    r->evs = g_array_new(FALSE, TRUE, sizeof(vmsig_event));
    r->nfds = g_array_new(FALSE, TRUE, sizeof(unsigned));
    r->ro_fds_ok = 1;
    r->ic = vmsig_inproc_new(f->core, &cfg, &g, err);
    return r;
}

static rec *rec_new(fixture *f, vmsig_grant g, uint32_t src, uint64_t eps)
{
    int err = 1;
    rec *r = rec_new_err(f, g, src, eps, 1, &err);

    g_assert_nonnull(r->ic);
    g_assert_cmpint(err, ==, 0);
    return r;
}

static void rec_free(rec *r)
{
    vmsig_inproc_free(r->ic);
    g_array_free(r->evs, TRUE);
    g_array_free(r->nfds, TRUE);
    g_free(r);
}

static const vmsig_event *rec_at(rec *r, unsigned i)
{
    g_assert_cmpuint(i, <, r->evs->len);
    return &g_array_index(r->evs, vmsig_event, i);
}

static unsigned rec_count(rec *r, uint32_t kind)
{
    unsigned n = 0;

    for (unsigned i = 0; i < r->evs->len; i++) {
        n += rec_at(r, i)->kind == kind;
    }
    return n;
}

static const vmsig_event *rec_last(rec *r, uint32_t kind)
{
    for (unsigned i = r->evs->len; i-- > 0;) {
        if (rec_at(r, i)->kind == kind) {
            return rec_at(r, i);
        }
    }
    return NULL;
}

static void rec_clear(rec *r)
{
    g_array_set_size(r->evs, 0);
    g_array_set_size(r->nfds, 0);
}

/* ---- commands ---- */

static vmsig_event mkcmd(uint32_t kind, uint32_t ep, uint32_t op)
{
    vmsig_event c = { .dir = VMSIG_DIR_DOWN, .kind = kind, .endpoint = ep };

    c.u.cmd.op = op;
    return c;
}

static int send_cmd(rec *r, uint32_t kind, uint32_t ep, uint32_t op)
{
    vmsig_event c = mkcmd(kind, ep, op);
    vmsig_reply reply;
    int ret = vmsig_inproc_send(r->ic, &c, &reply);

    g_assert_cmpint(reply.status, ==, ret);
    return ret;
}

static int send_input_key(rec *r, uint32_t ep)
{
    vmsig_event c = mkcmd(VMSIG_CMD_INPUT, ep, 0);

    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .code = 30, .value = 1 };
    return vmsig_inproc_send(r->ic, &c, NULL);
}

static int send_memwrite(rec *r, uint32_t ep, uint64_t gpa, const void *data, uint32_t len)
{
    vmsig_event c = mkcmd(VMSIG_CMD_MEMWRITE, ep, 0);

    c.u.memwrite = (vmsig_wire_memwrite){ .gpa = gpa, .len = len };
    c.ool = data;
    c.ool_len = len;
    return vmsig_inproc_send(r->ic, &c, NULL);
}

static void publish_kind(fixture *f, uint32_t kind, uint32_t ep)
{
    vmsig_event ev = { .kind = kind, .endpoint = ep };

    g_assert_cmpint(vmsig_core_publish(f->core, &ev), ==, 0);
}

/* ---- read-only memfds ---- */

static int memfd_rw(size_t size)
{
    int fd = memfd_create("vmsig-test-ram", MFD_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    return fd;
}

/* A read-only description of the same file, the way the QEMU glue makes one. */
static int reopen_ro(int fd)
{
    char path[64];
    int ro;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ro = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(ro, >=, 0);
    return ro;
}

static void publish_map(fixture *f, uint32_t ep, int ro_fd, uint64_t size)
{
    vmsig_wire_memctx mc = { .ram_size = size, .nseg = 1 };
    vmsig_wire_memseg seg = { .gpa = 0, .size = size, .offset = 0, .fd_index = 0 };

    g_assert_cmpint(vmsig_core_publish_memctx(f->core, ep, &mc, &seg, &ro_fd, 1), ==, 0);
}

/* ================= delivery filter ================= */

static void test_filter_sources(void)
{
    fixture f;
    uint32_t caps = VMSIG_CAP_OBSERVE | VMSIG_CAP_MEMCTX;
    rec *seam, *arb, *mem, *noobs, *nomem;
    int rw, ro;

    fx_init(&f, vmsig_arb_deny);
    seam = rec_new(&f, mkgrant(1, caps, ALL_EPS, 0), 1u << VMSIG_SRC_SEAM, ALL_EPS);
    arb = rec_new(&f, mkgrant(2, caps, ALL_EPS, 0), 1u << VMSIG_SRC_ARB, ALL_EPS);
    mem = rec_new(&f, mkgrant(3, caps, ALL_EPS, 0), 1u << VMSIG_SRC_MEMCTX, ALL_EPS);
    /* Subscribed to everything but lacking the capability: nothing of it. */
    noobs = rec_new(&f, mkgrant(4, VMSIG_CAP_MEMCTX, ALL_EPS, 0), VMSIG_SRC_ALL, ALL_EPS);
    nomem = rec_new(&f, mkgrant(5, VMSIG_CAP_OBSERVE, ALL_EPS, 0), VMSIG_SRC_ALL, ALL_EPS);

    for (uint32_t k = VMSIG_EV_RUNSTATE; k <= VMSIG_EV_SHUTDOWN; k++) {
        publish_kind(&f, k, 0);
    }
    /* ARB and MEMWRITE_DONE are the core's own: made by a control's
     * ACQUIRE and MEMWRITE (the actor receives nothing: no OBSERVE/MEMCTX);
     * a host that tries to publish them is refused. */
    rec *actor = rec_new(&f, mkgrant(6, VMSIG_CAP_INPUT | VMSIG_CAP_MEMWRITE, ALL_EPS, 0), 0, 0);
    g_assert_cmpint(send_cmd(actor, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpint(send_memwrite(actor, 0, 0x10, "x", 1), ==, 0);
    vmsig_event fake = { .dir = VMSIG_DIR_UP, .kind = VMSIG_EV_ARB };
    g_assert_cmpint(vmsig_core_publish(f.core, &fake), ==, -EINVAL);
    fake.kind = VMSIG_EV_MEMWRITE_DONE;
    g_assert_cmpint(vmsig_core_publish(f.core, &fake), ==, -EINVAL);
    g_assert_cmpuint(actor->evs->len, ==, 0);
    rw = memfd_rw(4096);
    ro = reopen_ro(rw);
    publish_map(&f, 0, ro, 4096);

    g_assert_cmpuint(seam->evs->len, ==, 6);
    g_assert_cmpuint(rec_count(seam, VMSIG_EV_SHUTDOWN), ==, 1);
    g_assert_cmpuint(arb->evs->len, ==, 1);
    g_assert_cmpuint(rec_count(arb, VMSIG_EV_ARB), ==, 1);
    g_assert_cmpuint(mem->evs->len, ==, 2);
    g_assert_cmpuint(rec_count(mem, VMSIG_EV_MEMWRITE_DONE), ==, 1);
    g_assert_cmpuint(rec_count(mem, VMSIG_EV_MEMCTX), ==, 1);
    g_assert_true(mem->ro_fds_ok);
    g_assert_cmpuint(noobs->evs->len, ==, 2);
    g_assert_cmpuint(rec_count(noobs, VMSIG_EV_MEMCTX), ==, 1);
    g_assert_cmpuint(nomem->evs->len, ==, 7);
    g_assert_cmpuint(rec_count(nomem, VMSIG_EV_MEMCTX) + rec_count(nomem, VMSIG_EV_MEMWRITE_DONE),
                     ==, 0);

    rec_free(actor);
    rec_free(seam);
    rec_free(arb);
    rec_free(mem);
    rec_free(noobs);
    rec_free(nomem);
    close(ro);
    close(rw);
    vmsig_core_free(f.core);
}

static void test_filter_endpoints(void)
{
    fixture f;
    rec *r, *all;

    fx_init(&f, vmsig_arb_deny);
    /* grant {0,1}, subscription {1,2}: only endpoint 1 is both. */
    r = rec_new(&f, mkgrant(1, VMSIG_CAP_OBSERVE, 0x3, 0), VMSIG_SRC_ALL, 0x6);
    /* An all-zero subscription: everything the grant allows. */
    all = rec_new(&f, mkgrant(2, VMSIG_CAP_OBSERVE, 0x5, 0), 0, 0);
    for (uint32_t ep = 0; ep < 4; ep++) {
        publish_kind(&f, VMSIG_EV_RESET, ep);
    }
    publish_kind(&f, VMSIG_EV_RESET, 63);
    g_assert_cmpuint(r->evs->len, ==, 1);
    g_assert_cmpuint(rec_at(r, 0)->endpoint, ==, 1);
    g_assert_cmpuint(all->evs->len, ==, 2);
    g_assert_cmpuint(rec_at(all, 0)->endpoint, ==, 0);
    g_assert_cmpuint(rec_at(all, 1)->endpoint, ==, 2);
    rec_free(r);
    rec_free(all);
    vmsig_core_free(f.core);
}

/* ---- a raw control, for what inproc does not expose ---- */

typedef struct raw_ctl {
    vmsig_control *ctl;
    int ret;                 /* what deliver returns */
    unsigned delivered;
    unsigned detach_calls;
    int detach_why;
    int detach_self;         /* detach itself from inside deliver */
    struct raw_ctl *victim;  /* detach this one from inside deliver */
} raw_ctl;

static int raw_deliver(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds)
{
    raw_ctl *r = opaque;

    r->delivered++;
    if (r->detach_self) {
        r->detach_self = 0;
        vmsig_control_detach(r->ctl, 0);
    }
    if (r->victim) {
        raw_ctl *v = r->victim;
        r->victim = NULL;
        vmsig_control_detach(v->ctl, 0);
    }
    return r->ret;
}

static void raw_detach(void *opaque, int why)
{
    raw_ctl *r = opaque;

    r->detach_calls++;
    r->detach_why = why;
}

static const vmsig_control_ops raw_ops = {
    .name = "raw", .deliver = raw_deliver, .detach = raw_detach,
};

static void raw_attach(fixture *f, raw_ctl *r, vmsig_grant g, const vmsig_sub *sub)
{
    int err = 1;

    memset(r, 0, sizeof(*r));
    r->ctl = vmsig_core_attach(f->core, &raw_ops, r, &g, sub, &err);
    g_assert_nonnull(r->ctl);
    g_assert_cmpint(err, ==, 0);
}

static void test_filter_effective_sub(void)
{
    fixture f;
    raw_ctl a, b;
    vmsig_sub want = { .source_mask = VMSIG_SRC_ALL, .endpoint_mask = 0xf0 };

    fx_init(&f, vmsig_arb_deny);
    raw_attach(&f, &a, mkgrant(1, VMSIG_CAP_OBSERVE, 0x30, 0), NULL);
    g_assert_cmpuint(vmsig_control_sub(a.ctl).endpoint_mask, ==, 0x30);
    g_assert_cmpuint(vmsig_control_sub(a.ctl).source_mask, ==,
                     (1u << VMSIG_SRC_SEAM) | (1u << VMSIG_SRC_ARB));
    raw_attach(&f, &b, mkgrant(2, VMSIG_CAP_MEMCTX, 0x3c, 0), &want);
    g_assert_cmpuint(vmsig_control_sub(b.ctl).endpoint_mask, ==, 0x30);
    g_assert_cmpuint(vmsig_control_sub(b.ctl).source_mask, ==, 1u << VMSIG_SRC_MEMCTX);
    g_assert_cmpuint(vmsig_control_grant(b.ctl)->principal, ==, 2);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 2);
    vmsig_core_free(f.core);
}

/* ================= sequence numbers ================= */

/* Delivery seqs count per control: a narrow subscription sees 1, 2, 3 with
 * no gaps (filtering is not loss), a wide one sees every event, 1..n. */
static void test_seq_per_control(void)
{
    fixture f;
    rec *wide, *narrow, *seam0;
    const uint32_t eps[] = { 0, 1, 0, 0, 1, 5 };

    fx_init(&f, vmsig_arb_deny);
    wide = rec_new(&f, mkgrant(1, VMSIG_CAP_ALL, ALL_EPS, 0), 0, 0);
    narrow = rec_new(&f, mkgrant(2, VMSIG_CAP_ALL, ALL_EPS, 0), VMSIG_SRC_ALL, 1ull << 0);
    /* endpoint 0 only, and SEAM only: the ARB source is filtered too */
    seam0 = rec_new(&f, mkgrant(3, VMSIG_CAP_ALL, 0x1, 0), 1u << VMSIG_SRC_SEAM, ~0ull);
    for (unsigned i = 0; i < G_N_ELEMENTS(eps); i++) {
        publish_kind(&f, i % 2 ? VMSIG_EV_RESET : VMSIG_EV_RUNSTATE, eps[i]);
    }
    g_assert_cmpuint(wide->evs->len, ==, G_N_ELEMENTS(eps));
    for (unsigned i = 0; i < G_N_ELEMENTS(eps); i++) {
        const vmsig_event *ev = rec_at(wide, i);
        g_assert_cmpuint(ev->endpoint, ==, eps[i]);
        g_assert_cmpuint(ev->seq, ==, i + 1);
        g_assert_cmpuint(ev->dir, ==, VMSIG_DIR_UP);
        g_assert_cmpuint(ev->ts_ns, !=, 0);
        g_assert_cmpuint(ev->flags & VMSIG_F_SNAPSHOT, ==, 0);
    }
    g_assert_cmpuint(narrow->evs->len, ==, 3);
    g_assert_cmpuint(seam0->evs->len, ==, 3);
    for (unsigned i = 0; i < 3; i++) {
        g_assert_cmpuint(rec_at(narrow, i)->endpoint, ==, 0);
        g_assert_cmpuint(rec_at(narrow, i)->seq, ==, i + 1);
        g_assert_cmpuint(rec_at(seam0, i)->seq, ==, i + 1);
    }
    /* A control attached now starts at 1 with its snapshot (the RUNSTATEs of
     * endpoints 0 and 1). */
    rec *late = rec_new(&f, mkgrant(4, VMSIG_CAP_ALL, ALL_EPS, 0), 0, 0);
    g_assert_cmpuint(late->evs->len, ==, 2);
    for (unsigned i = 0; i < 2; i++) {
        g_assert_cmpuint(rec_at(late, i)->seq, ==, i + 1);
        g_assert_cmpuint(rec_at(late, i)->flags & VMSIG_F_SNAPSHOT, ==, VMSIG_F_SNAPSHOT);
    }
    publish_kind(&f, VMSIG_EV_RUNSTATE, 1);
    g_assert_cmpuint(rec_at(late, 2)->seq, ==, 3);
    g_assert_cmpuint(rec_at(wide, 6)->seq, ==, 7);
    g_assert_cmpuint(narrow->evs->len, ==, 3);
    rec_free(late);
    rec_free(seam0);
    rec_free(narrow);
    rec_free(wide);
    vmsig_core_free(f.core);
}

static void test_publish_einval(void)
{
    fixture f;
    vmsig_event ev = { .kind = VMSIG_EV_MEMCTX };

    fx_init(&f, vmsig_arb_deny);
    g_assert_cmpint(vmsig_core_publish(f.core, &ev), ==, -EINVAL);
    ev.kind = VMSIG_CMD_VM;
    g_assert_cmpint(vmsig_core_publish(f.core, &ev), ==, -EINVAL);
    ev.kind = VMSIG_MSG_HELLO;
    g_assert_cmpint(vmsig_core_publish(f.core, &ev), ==, -EINVAL);
    ev.kind = VMSIG_EV_RUNSTATE;
    ev.endpoint = VMSIG_ENDPOINT_MAX;
    g_assert_cmpint(vmsig_core_publish(f.core, &ev), ==, -EINVAL);
    vmsig_core_free(f.core);
}

/* ================= snapshots and MEMCTX ================= */

static void test_snapshot_on_attach(void)
{
    fixture f;
    rec *r;
    int rw = memfd_rw(8192), ro = reopen_ro(rw);
    struct stat st_rw, st_got;
    const vmsig_event *ev;

    fx_init(&f, vmsig_arb_deny);
    vm_set_state(&f.vm, 2, VMSIG_RS_PAUSED);
    vm_set_state(&f.vm, 0, VMSIG_RS_PAUSED);
    vm_set_state(&f.vm, 0, VMSIG_RS_RUNNING);
    publish_kind(&f, VMSIG_EV_RESET, 2);         /* not a state: no snapshot */
    publish_map(&f, 0, ro, 8192);
    close(ro);                                   /* the core keeps its own dup */

    r = rec_new(&f, mkgrant(1, VMSIG_CAP_ALL, ALL_EPS, 0), 0, 0);
    g_assert_cmpuint(r->evs->len, ==, 3);
    ev = rec_at(r, 0);
    g_assert_cmpuint(ev->kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev->endpoint, ==, 0);
    g_assert_cmpuint(ev->flags, ==, VMSIG_F_SNAPSHOT);
    g_assert_cmpuint(ev->seq, ==, 1); /* this control's first delivery */
    g_assert_cmpuint(ev->u.seam.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(ev->u.seam.running, ==, 1);
    ev = rec_at(r, 1);
    g_assert_cmpuint(ev->kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev->endpoint, ==, 2);
    g_assert_cmpuint(ev->flags, ==, VMSIG_F_SNAPSHOT);
    g_assert_cmpuint(ev->seq, ==, 2);
    g_assert_cmpuint(ev->u.seam.state, ==, VMSIG_RS_PAUSED);
    ev = rec_at(r, 2);
    g_assert_cmpuint(ev->kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpuint(ev->flags, ==, VMSIG_F_SNAPSHOT);
    g_assert_cmpuint(ev->seq, ==, 3);
    g_assert_cmpuint(ev->u.memctx.generation, ==, 1);
    g_assert_cmpuint(ev->u.memctx.nseg, ==, 1);
    g_assert_cmpuint(g_array_index(r->nfds, unsigned, 2), ==, 1);
    g_assert_true(r->ro_fds_ok);

    /* Live events follow, unflagged, with the next seq. */
    publish_kind(&f, VMSIG_EV_POWERDOWN, 0);
    ev = rec_at(r, 3);
    g_assert_cmpuint(ev->flags, ==, 0);
    g_assert_cmpuint(ev->seq, ==, 4);

    /* The dup the core hands out is the same file, read-only. */
    g_assert_cmpint(fstat(rw, &st_rw), ==, 0);
    rec_free(r);
    g_assert_cmpint(fstat(rw, &st_got), ==, 0);
    g_assert_cmpuint(st_rw.st_ino, ==, st_got.st_ino);
    close(rw);
    vmsig_core_free(f.core);
}

static int keep_fd_cb(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds)
{
    int *out = opaque;

    g_assert_cmpuint(nfds, ==, 1);
    *out = dup(fds[0]);
    return 0;
}

static void test_snapshot_fd_is_same_file(void)
{
    fixture f;
    int rw = memfd_rw(4096), ro = reopen_ro(rw), got = -1, err = 1;
    vmsig_grant g = mkgrant(1, VMSIG_CAP_MEMCTX, 1, 0);
    vmsig_inproc_cfg cfg = { .on_memctx = keep_fd_cb, .opaque = &got };
    vmsig_inproc *ic;
    struct stat a, b;
    uint8_t *p;

    fx_init(&f, vmsig_arb_deny);
    publish_map(&f, 0, ro, 4096);
    close(ro);
    ic = vmsig_inproc_new(f.core, &cfg, &g, &err);
    g_assert_nonnull(ic);
    g_assert_cmpint(got, >=, 0);
    g_assert_cmpint(fstat(rw, &a), ==, 0);
    g_assert_cmpint(fstat(got, &b), ==, 0);
    g_assert_cmpuint(a.st_ino, ==, b.st_ino);
    g_assert_cmpuint(a.st_dev, ==, b.st_dev);
    g_assert_cmpint(fcntl(got, F_GETFL) & O_ACCMODE, ==, O_RDONLY);
    /* Writable mappings of it are refused; a read-only one sees the RAM. */
    g_assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, got, 0) == MAP_FAILED);
    g_assert_cmpint(pwrite(rw, "hi", 2, 100), ==, 2);
    p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, got, 0);
    g_assert_true(p != MAP_FAILED);
    g_assert_cmpmem(p + 100, 2, "hi", 2);
    munmap(p, 4096);
    close(got);
    close(rw);
    vmsig_inproc_free(ic);
    vmsig_core_free(f.core);
}

static void test_memctx_refusals(void)
{
    fixture f;
    int rw = memfd_rw(4096), ro = reopen_ro(rw), fds[2];
    vmsig_wire_memctx mc = { .ram_size = 4096, .nseg = 1 };
    vmsig_wire_memseg seg = { .size = 4096, .fd_index = 0 };
    rec *r;

    fx_init(&f, vmsig_arb_deny);
    r = rec_new(&f, mkgrant(1, VMSIG_CAP_MEMCTX, 1, 0), 0, 0);
    g_assert_cmpint(vmsig_core_publish_memctx(f.core, 0, &mc, &seg, &rw, 1), ==, -EACCES);
    fds[0] = ro;
    fds[1] = rw; /* one writable fd among read-only ones is enough to refuse */
    g_assert_cmpint(vmsig_core_publish_memctx(f.core, 0, &mc, &seg, fds, 2), ==, -EACCES);
    seg.fd_index = 1;
    g_assert_cmpint(vmsig_core_publish_memctx(f.core, 0, &mc, &seg, &ro, 1), ==, -EINVAL);
    seg.fd_index = 0;
    mc.nseg = VMSIG_MEMCTX_MAX_SEGS + 1;
    g_assert_cmpint(vmsig_core_publish_memctx(f.core, 0, &mc, &seg, &ro, 1), ==, -EINVAL);
    mc.nseg = 1;
    g_assert_cmpint(vmsig_core_publish_memctx(f.core, VMSIG_ENDPOINT_MAX, &mc, &seg, &ro, 1),
                    ==, -EINVAL);
    g_assert_cmpuint(r->evs->len, ==, 0);
    g_assert_cmpuint(vmsig_core_memctx_generation(f.core, 0), ==, 0);

    g_assert_cmpint(vmsig_core_publish_memctx(f.core, 0, &mc, &seg, &ro, 1), ==, 0);
    g_assert_cmpuint(vmsig_core_memctx_generation(f.core, 0), ==, 1);
    /* Unavailable: published with no fds, generation still grows. */
    mc = (vmsig_wire_memctx){ .status = -ENODEV };
    g_strlcpy(mc.why, "use memory-backend-memfd", sizeof(mc.why));
    g_assert_cmpint(vmsig_core_publish_memctx(f.core, 0, &mc, NULL, NULL, 0), ==, 0);
    g_assert_cmpuint(vmsig_core_memctx_generation(f.core, 0), ==, 2);
    g_assert_cmpuint(r->evs->len, ==, 2);
    g_assert_cmpint(rec_at(r, 1)->u.memctx.status, ==, -ENODEV);
    g_assert_cmpuint(g_array_index(r->nfds, unsigned, 1), ==, 0);
    g_assert_cmpstr(rec_at(r, 1)->u.memctx.why, ==, "use memory-backend-memfd");
    rec_free(r);
    close(ro);
    close(rw);
    vmsig_core_free(f.core);
}

/* ================= command checks ================= */

static int send_snap(rec *r, uint32_t op, uint32_t then, uint32_t flags, const char *name,
                     size_t name_len)
{
    vmsig_event c = mkcmd(VMSIG_CMD_SNAPSHOT, 0, 0);

    c.u.snapshot = (vmsig_wire_snapshot){ .op = op, .then = then, .flags = flags };
    memcpy(c.u.snapshot.name, name, name_len);
    return vmsig_inproc_send(r->ic, &c, NULL);
}

/* CMD_SNAPSHOT: shape, capability, class (LIST has none), EV_SNAPSHOT. */
static void test_snapshot_cmd(void)
{
    fixture f;
    rec *a, *b, *nocap, *obs;
    char bad[VMSIG_SNAP_NAME_MAX];

    fx_init(&f, vmsig_arb_deny);
    a = rec_new(&f, mkgrant(1, VMSIG_CAP_ALL, ALL_EPS, 0), 0, 0);
    b = rec_new(&f, mkgrant(2, VMSIG_CAP_SNAPSHOT, ALL_EPS, 0), 0, 0);
    nocap = rec_new(&f, mkgrant(3, VMSIG_CAP_ALL_1_0 | VMSIG_CAP_CPU, ALL_EPS, 0), 0, 0);
    obs = rec_new(&f, mkgrant(4, VMSIG_CAP_OBSERVE, ALL_EPS, 0), 1u << VMSIG_SRC_SEAM, ALL_EPS);

    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, VMSIG_SNAP_THEN_RUN, 0, "s0", 2), ==, 0);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_RESTORE, 0, VMSIG_SNAP_F_FULL, "a-b_c.9", 7), ==, 0);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_LIST, 0, 0, "", 0), ==, 0);
    /* shape */
    g_assert_cmpint(send_snap(a, 0, 0, 0, "s0", 2), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_LIST + 1, 0, 0, "s0", 2), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, 3, 0, "s0", 2), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_DELETE, VMSIG_SNAP_THEN_RUN, 0, "s0", 2), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, 0, VMSIG_SNAP_F_FULL, "s0", 2), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_RESTORE, 0, 0x2, "s0", 2), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, 0, 0, "", 0), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, 0, 0, "a b", 3), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, 0, 0, "s0\0x", 4), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_LIST, 0, 0, "s0", 2), ==, -EINVAL);
    memset(bad, 'x', sizeof(bad));
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, 0, 0, bad, sizeof(bad)), ==, -EINVAL);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_SAVE, 0, 0, bad, sizeof(bad) - 1), ==, 0);
    {
        vmsig_event c = mkcmd(VMSIG_CMD_SNAPSHOT, 0, 0);
        c.u.snapshot = (vmsig_wire_snapshot){ .op = VMSIG_SNAP_SAVE, .reserved = 1,
                                               .name = "s0" };
        g_assert_cmpint(vmsig_inproc_send(a->ic, &c, NULL), ==, -EINVAL);
    }
    /* capability: not in caps=all (the 1.0 set) */
    g_assert_cmpint(send_snap(nocap, VMSIG_SNAP_LIST, 0, 0, "", 0), ==, -EPERM);
    g_assert_cmpint(send_cmd(nocap, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_SNAPSHOT), ==, -EPERM);
    /* class: the owner's SAVE goes, another's is -EBUSY; LIST is never classed */
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_SNAPSHOT), ==, 0);
    g_assert_cmpint(send_snap(b, VMSIG_SNAP_RESTORE, 0, 0, "s0", 2), ==, -EBUSY);
    g_assert_cmpint(send_snap(b, VMSIG_SNAP_LIST, 0, 0, "", 0), ==, 0);
    g_assert_cmpint(send_snap(a, VMSIG_SNAP_DELETE, 0, 0, "s0", 2), ==, 0);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_RELEASE, 0, VMSIG_CLASS_SNAPSHOT), ==, 0);
    g_assert_cmpint(send_snap(b, VMSIG_SNAP_RESTORE, 0, 0, "s0", 2), ==, 0);
    /* EV_SNAPSHOT from the host reaches a SEAM observer */
    {
        vmsig_event ev = { .kind = VMSIG_EV_SNAPSHOT, .endpoint = 0,
                           .u.snap = { .what = VMSIG_SNAP_RESTORE, .by = 2,
                                       .generation = 7, .name = "s0" } };
        const vmsig_event *got;
        g_assert_cmpint(vmsig_core_publish(f.core, &ev), ==, 0);
        got = rec_last(obs, VMSIG_EV_SNAPSHOT);
        g_assert_nonnull(got);
        g_assert_cmpuint(got->u.snap.what, ==, VMSIG_SNAP_RESTORE);
        g_assert_cmpuint(got->u.snap.generation, ==, 7);
        g_assert_cmpstr(got->u.snap.name, ==, "s0");
    }
    rec_free(a);
    rec_free(b);
    rec_free(nocap);
    rec_free(obs);
    vmsig_core_free(f.core);
}

static void test_submit_eperm(void)
{
    static const struct {
        uint32_t kind, op, cap;
    } cases[] = {
        { VMSIG_CMD_VM, VMSIG_VM_STOP, VMSIG_CAP_VM },
        { VMSIG_CMD_VM, VMSIG_VM_QUERY, VMSIG_CAP_VM },
        { VMSIG_CMD_LIFECYCLE, VMSIG_LC_PAUSE, VMSIG_CAP_LIFECYCLE },
        { VMSIG_CMD_POWER, VMSIG_PWR_RESET, VMSIG_CAP_POWER },
        { VMSIG_CMD_INPUT, VMSIG_INPUT_KEY, VMSIG_CAP_INPUT },
        { VMSIG_CMD_MEMWRITE, 0, VMSIG_CAP_MEMWRITE },
        { VMSIG_CMD_ACQUIRE, VMSIG_CLASS_INPUT, VMSIG_CAP_INPUT },
        { VMSIG_CMD_ACQUIRE, VMSIG_CLASS_POWER, VMSIG_CAP_POWER },
        { VMSIG_CMD_ACQUIRE, VMSIG_CLASS_MEMWRITE, VMSIG_CAP_MEMWRITE },
        { VMSIG_CMD_ACQUIRE, VMSIG_CLASS_RUN, VMSIG_CAP_VM },
        { VMSIG_CMD_ACQUIRE, VMSIG_CLASS_RUN, VMSIG_CAP_LIFECYCLE },
        { VMSIG_CMD_RELEASE, VMSIG_CLASS_INPUT, VMSIG_CAP_INPUT },
    };
    static const uint8_t data[4] = { 1, 2, 3, 4 };
    fixture f;

    fx_init(&f, vmsig_arb_deny);
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        /* RUN is granted by VM or LIFECYCLE: without both of them it is refused. */
        uint32_t strip = cases[i].op == VMSIG_CLASS_RUN && cases[i].kind == VMSIG_CMD_ACQUIRE
                             ? VMSIG_CAP_VM | VMSIG_CAP_LIFECYCLE : cases[i].cap;
        rec *nocap = rec_new(&f, mkgrant(1, VMSIG_CAP_ALL & ~strip, 0x1, 0), 0, 0);
        rec *noep = rec_new(&f, mkgrant(2, cases[i].cap, 0x2, 0), 0, 0);
        rec *ok = rec_new(&f, mkgrant(3, cases[i].cap, 0x1, 0), 0, 0);
        vmsig_event c = mkcmd(cases[i].kind, 0, cases[i].op);
        unsigned before = f.vm.calls;
        int want_ok = cases[i].kind == VMSIG_CMD_RELEASE ? -ENOENT : 0;

        if (cases[i].kind == VMSIG_CMD_INPUT) {
            c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .code = 1 };
        } else if (cases[i].kind == VMSIG_CMD_MEMWRITE) {
            c.u.memwrite = (vmsig_wire_memwrite){ .gpa = 0, .len = sizeof(data) };
            c.ool = data;
            c.ool_len = sizeof(data);
        }
        g_assert_cmpint(vmsig_inproc_send(nocap->ic, &c, NULL), ==, -EPERM);
        g_assert_cmpint(vmsig_inproc_send(noep->ic, &c, NULL), ==, -EPERM);
        c.endpoint = 64; /* no mask can cover it */
        g_assert_cmpint(vmsig_inproc_send(ok->ic, &c, NULL), ==, -EPERM);
        g_assert_cmpuint(f.vm.calls, ==, before);
        c.endpoint = 0;
        g_assert_cmpint(vmsig_inproc_send(ok->ic, &c, NULL), ==, want_ok);
        rec_free(nocap);
        rec_free(noep);
        rec_free(ok);
    }
    vmsig_core_free(f.core);
}

static void test_submit_nop(void)
{
    fixture f;
    rec *r;

    fx_init(&f, vmsig_arb_deny);
    r = rec_new(&f, mkgrant(1, 0, 0x1, 0), 0, 0);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_NOP, 0, 0), ==, 0);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_NOP, 1, 0), ==, -EPERM);
    g_assert_cmpuint(f.vm.calls, ==, 0);
    rec_free(r);
    vmsig_core_free(f.core);
}

static void test_submit_einval(void)
{
    fixture f;
    rec *r;
    vmsig_event c;
    uint8_t big[VMSIG_MEMWRITE_MAX + 1];
    char text[VMSIG_TEXT_MAX + 1];

    memset(text, 'a', sizeof(text));
    fx_init(&f, vmsig_arb_deny);
    r = rec_new(&f, mkgrant(1, VMSIG_CAP_ALL, ALL_EPS, 0), 0, 0);
    /* Kinds that are not commands this core knows: not supported. */
    g_assert_cmpint(send_cmd(r, 0x1999, 0, 0), ==, -EOPNOTSUPP);
    g_assert_cmpint(send_cmd(r, VMSIG_EV_RUNSTATE, 0, 0), ==, -EOPNOTSUPP);
    g_assert_cmpint(send_cmd(r, VMSIG_MSG_HELLO, 0, 0), ==, -EOPNOTSUPP);
    /* Reserved fields must be 0. */
    c = mkcmd(VMSIG_CMD_VM, 0, VMSIG_VM_QUERY);
    c.u.cmd.arg = 1;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c = mkcmd(VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT);
    c.u.cmd.arg = 0x80000000u;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c = mkcmd(VMSIG_CMD_INPUT, 0, 0);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_TEXT, .code = 1, .len = 1 };
    c.ool = "a";
    c.ool_len = 1;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_TEXT, .value = 1, .len = 1 };
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c = mkcmd(VMSIG_CMD_MEMWRITE, 0, 0);
    c.u.memwrite = (vmsig_wire_memwrite){ .gpa = 0x1000, .len = 1, .flags = 1 };
    c.ool = "a";
    c.ool_len = 1;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    /* Values outside what an op means. */
    c = mkcmd(VMSIG_CMD_INPUT, 0, 0);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .code = 30, .value = 2 };
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_BTN, .code = VMSIG_BTN__COUNT, .value = 1 };
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_ABS, .code = VMSIG_AXIS_X,
                                    .value = VMSIG_ABS_MAX + 1 };
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_REL, .code = 2, .value = 5 };
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_VM, 0, 0), ==, -EINVAL);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_VM, 0, 4), ==, -EINVAL);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_LIFECYCLE, 0, 9), ==, -EINVAL);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_POWER, 0, 0), ==, -EINVAL);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_ACQUIRE, 0, 0), ==, -EINVAL);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_RELEASE, 0, VMSIG_CLASS__COUNT), ==, -EINVAL);

    c = mkcmd(VMSIG_CMD_INPUT, 0, 0);
    c.u.input.op = 99;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .len = 3 };
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_TEXT, .len = 4 };
    c.ool = text;
    c.ool_len = 3;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input.len = c.ool_len = VMSIG_TEXT_MAX + 1;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.input.len = c.ool_len = VMSIG_TEXT_MAX;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, 0);
    g_assert_cmpuint(f.vm.calls, ==, 1);

    c = mkcmd(VMSIG_CMD_MEMWRITE, 0, 0);
    c.ool = big;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL); /* len 0 */
    c.u.memwrite.len = c.ool_len = sizeof(big);
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.u.memwrite.len = 8;
    c.ool_len = 7;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EINVAL);
    c.ool_len = 8;
    c.u.memwrite.gpa = UINT64_MAX - 3;
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, NULL), ==, -EFAULT);
    g_assert_cmpuint(f.vm.calls, ==, 1);
    rec_free(r);
    vmsig_core_free(f.core);
}

static void test_submit_no_backend(void)
{
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION };
    vmsig_grant g = mkgrant(1, VMSIG_CAP_ALL, ALL_EPS, 0);
    vmsig_inproc_cfg icfg = { 0 };
    vmsig_event c = mkcmd(VMSIG_CMD_VM, 0, VMSIG_VM_QUERY);
    vmsig_core *core;
    vmsig_inproc *ic;
    int err = 1;

    cfg.version = 99;
    g_assert_null(vmsig_core_new(&cfg, &err));
    g_assert_cmpint(err, ==, -EINVAL);
    cfg.version = VMSIG_CORE_CONFIG_VERSION;
    core = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(core);
    g_assert_cmpint(vmsig_core_fd(core), >=, 0);
    ic = vmsig_inproc_new(core, &icfg, &g, &err);
    g_assert_nonnull(ic);
    g_assert_cmpint(vmsig_inproc_send(ic, &c, NULL), ==, -ENOSYS);
    c = mkcmd(VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_POWER);
    g_assert_cmpint(vmsig_inproc_send(ic, &c, NULL), ==, 0);
    vmsig_inproc_free(ic);
    vmsig_core_free(core);
}

static void test_backend_query_and_stop(void)
{
    fixture f;
    rec *r, *obs;
    vmsig_event c = mkcmd(VMSIG_CMD_VM, 3, VMSIG_VM_QUERY);
    vmsig_reply reply;
    vmsig_wire_vminfo info;

    fx_init(&f, vmsig_arb_deny);
    r = rec_new(&f, mkgrant(42, VMSIG_CAP_VM, 1ull << 3, 0), 0, 0);
    obs = rec_new(&f, mkgrant(7, VMSIG_CAP_OBSERVE, ALL_EPS, 0), 0, 0);
    vm_set_state(&f.vm, 3, VMSIG_RS_RUNNING);
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, &reply), ==, 0);
    g_assert_cmpint(reply.status, ==, 0);
    g_assert_cmpuint(reply.len, ==, sizeof(info));
    memcpy(&info, reply.body, sizeof(info));
    g_assert_cmpuint(info.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(info.endpoint, ==, 3);
    g_assert_cmpuint(f.vm.last_principal, ==, 42);
    g_assert_cmpint(send_cmd(r, VMSIG_CMD_VM, 3, VMSIG_VM_STOP), ==, 0);
    g_assert_cmpuint(rec_last(obs, VMSIG_EV_RUNSTATE)->u.seam.state, ==, VMSIG_RS_PAUSED);
    g_assert_cmpuint(rec_last(obs, VMSIG_EV_RUNSTATE)->seq, ==, 2);
    rec_free(r);
    rec_free(obs);
    vmsig_core_free(f.core);
}

/* A refusal by the VM side keeps its explanation in the reply body. */
static void test_backend_refusal_text(void)
{
    fixture f;
    rec *r;
    vmsig_event c = mkcmd(VMSIG_CMD_LIFECYCLE, 0, VMSIG_LC_WAKEUP);
    vmsig_reply reply;

    fx_init(&f, vmsig_arb_deny);
    r = rec_new(&f, mkgrant(42, VMSIG_CAP_LIFECYCLE, 1, 0), 0, 0);
    vm_set_state(&f.vm, 0, VMSIG_RS_RUNNING);
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, &reply), ==, -EINVAL);
    g_assert_cmpint(reply.status, ==, -EINVAL);
    g_assert_cmpstr((const char *)reply.body, ==, "guest is not suspended");
    /* the core's own refusals carry no body */
    c = mkcmd(VMSIG_CMD_POWER, 0, VMSIG_PWR_RESET);
    g_assert_cmpint(vmsig_inproc_send(r->ic, &c, &reply), ==, -EPERM);
    g_assert_cmpuint(reply.len, ==, 0);
    rec_free(r);
    vmsig_core_free(f.core);
}

/* ================= arbitration ================= */

static void assert_arb(const vmsig_event *ev, uint32_t cls, uint32_t what, uint32_t owner,
                       uint32_t by)
{
    g_assert_nonnull(ev);
    g_assert_cmpuint(ev->kind, ==, VMSIG_EV_ARB);
    g_assert_cmpuint(ev->u.arb.cls, ==, cls);
    g_assert_cmpuint(ev->u.arb.what, ==, what);
    g_assert_cmpuint(ev->u.arb.owner, ==, owner);
    g_assert_cmpuint(ev->u.arb.by, ==, by);
}

static void test_arb_deny(void)
{
    fixture f;
    rec *a, *b, *obs;

    fx_init(&f, vmsig_arb_deny);
    a = rec_new(&f, mkgrant(10, VMSIG_CAP_INPUT, 1, 0), 0, 0);
    b = rec_new(&f, mkgrant(20, VMSIG_CAP_INPUT, 1, 0), 0, 0);
    obs = rec_new(&f, mkgrant(30, VMSIG_CAP_OBSERVE, 1, 0), 1u << VMSIG_SRC_ARB, 1);

    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0);
    assert_arb(rec_last(obs, VMSIG_EV_ARB), VMSIG_CLASS_INPUT, VMSIG_ARB_GRANTED, 10, 0);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0); /* idempotent */
    g_assert_cmpuint(obs->evs->len, ==, 1);
    g_assert_cmpuint(f.policy.calls, ==, 0);

    g_assert_cmpint(send_cmd(b, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, -EBUSY);
    g_assert_cmpuint(f.policy.calls, ==, 1);
    g_assert_cmpint(send_input_key(b, 0), ==, -EBUSY);
    g_assert_cmpuint(f.vm.calls, ==, 0);
    g_assert_cmpint(send_input_key(a, 0), ==, 0);
    g_assert_cmpuint(f.vm.calls, ==, 1);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_RELEASE, 0, VMSIG_CLASS_INPUT), ==, -ENOENT);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_RELEASE, 0, VMSIG_CLASS_INPUT), ==, 0);
    assert_arb(rec_last(obs, VMSIG_EV_ARB), VMSIG_CLASS_INPUT, VMSIG_ARB_RELEASED, 10, 0);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_RELEASE, 0, VMSIG_CLASS_INPUT), ==, -ENOENT);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpuint(f.policy.calls, ==, 1);
    /* Other classes and endpoints are separate slots. */
    g_assert_cmpint(send_input_key(a, 0), ==, -EBUSY);
    rec_free(a);
    rec_free(b);
    rec_free(obs);
    vmsig_core_free(f.core);
}

static void test_arb_run_class(void)
{
    fixture f;
    rec *a, *b;

    fx_init(&f, vmsig_arb_deny);
    a = rec_new(&f, mkgrant(1, VMSIG_CAP_LIFECYCLE, 1, 0), 0, 0);
    b = rec_new(&f, mkgrant(2, VMSIG_CAP_VM | VMSIG_CAP_LIFECYCLE, 1, 0), 0, 0);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_RUN), ==, 0);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_VM, 0, VMSIG_VM_STOP), ==, -EBUSY);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_LIFECYCLE, 0, VMSIG_LC_PAUSE), ==, -EBUSY);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_VM, 0, VMSIG_VM_QUERY), ==, 0); /* no class */
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_POWER, 0, VMSIG_PWR_RESET), ==, -EPERM);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_LIFECYCLE, 0, VMSIG_LC_PAUSE), ==, 0);
    g_assert_cmpuint(f.vm.calls, ==, 2);
    rec_free(a);
    rec_free(b);
    vmsig_core_free(f.core);
}

static void test_arb_preempt(void)
{
    fixture f;
    rec *a, *b, *obs;

    fx_init(&f, vmsig_arb_preempt);
    /* a does not subscribe to ARB (SEAM only), yet must hear it lost. */
    a = rec_new(&f, mkgrant(10, VMSIG_CAP_INPUT | VMSIG_CAP_OBSERVE, 1, 0),
                1u << VMSIG_SRC_SEAM, 1);
    b = rec_new(&f, mkgrant(20, VMSIG_CAP_INPUT, 1, 0), 0, 0);
    obs = rec_new(&f, mkgrant(30, VMSIG_CAP_OBSERVE, 1, 0), 0, 0);

    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpuint(a->evs->len, ==, 0);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0);
    g_assert_cmpuint(f.policy.calls, ==, 1);
    g_assert_cmpuint(a->evs->len, ==, 1);
    assert_arb(rec_at(a, 0), VMSIG_CLASS_INPUT, VMSIG_ARB_PREEMPTED, 10, 20);
    g_assert_cmpuint(obs->evs->len, ==, 3);
    assert_arb(rec_at(obs, 1), VMSIG_CLASS_INPUT, VMSIG_ARB_PREEMPTED, 10, 20);
    assert_arb(rec_at(obs, 2), VMSIG_CLASS_INPUT, VMSIG_ARB_GRANTED, 20, 0);
    g_assert_cmpuint(rec_at(obs, 2)->seq, ==, rec_at(obs, 1)->seq + 1);
    g_assert_cmpuint(b->evs->len, ==, 0); /* b has no OBSERVE */
    g_assert_cmpint(send_input_key(a, 0), ==, -EBUSY);
    g_assert_cmpint(send_input_key(b, 0), ==, 0);
    rec_free(a);
    rec_free(b);
    rec_free(obs);
    vmsig_core_free(f.core);
}

static void test_arb_priority(void)
{
    fixture f;
    rec *a, *b, *c;

    fx_init(&f, vmsig_arb_priority);
    a = rec_new(&f, mkgrant(10, VMSIG_CAP_POWER, 1, 5), 0, 0);
    b = rec_new(&f, mkgrant(20, VMSIG_CAP_POWER, 1, 5), 0, 0);
    c = rec_new(&f, mkgrant(30, VMSIG_CAP_POWER, 1, 10), 0, 0);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_POWER), ==, 0);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_POWER), ==, -EBUSY);
    g_assert_cmpint(send_cmd(c, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_POWER), ==, 0);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_POWER), ==, -EBUSY);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_POWER, 0, VMSIG_PWR_RESET), ==, -EBUSY);
    g_assert_cmpint(send_cmd(c, VMSIG_CMD_POWER, 0, VMSIG_PWR_RESET), ==, 0);
    g_assert_cmpuint(f.policy.calls, ==, 3);
    rec_free(a);
    rec_free(b);
    rec_free(c);
    vmsig_core_free(f.core);
}

static void test_arb_dead_owner(void)
{
    fixture f;
    rec *a, *b, *obs;

    fx_init(&f, vmsig_arb_deny);
    a = rec_new(&f, mkgrant(10, VMSIG_CAP_MEMWRITE, 1, 0), 0, 0);
    b = rec_new(&f, mkgrant(20, VMSIG_CAP_MEMWRITE, 1, 0), 0, 0);
    obs = rec_new(&f, mkgrant(30, VMSIG_CAP_OBSERVE, 1, 0), 0, 0);
    g_assert_cmpint(send_cmd(a, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_MEMWRITE), ==, 0);
    rec_free(a);
    assert_arb(rec_last(obs, VMSIG_EV_ARB), VMSIG_CLASS_MEMWRITE, VMSIG_ARB_RELEASED, 10, 0);
    g_assert_cmpint(send_cmd(b, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_MEMWRITE), ==, 0);
    g_assert_cmpuint(f.policy.calls, ==, 0);
    assert_arb(rec_last(obs, VMSIG_EV_ARB), VMSIG_CLASS_MEMWRITE, VMSIG_ARB_GRANTED, 20, 0);
    rec_free(b);
    rec_free(obs);
    vmsig_core_free(f.core);
}

/* ================= MEMWRITE ================= */

static void test_memwrite_done(void)
{
    fixture f;
    rec *w, *mem, *obs;
    int rw = memfd_rw(4096), ro = reopen_ro(rw);
    const vmsig_event *ev;

    fx_init(&f, vmsig_arb_deny);
    w = rec_new(&f, mkgrant(99, VMSIG_CAP_MEMWRITE, 1, 0), 0, 0);
    mem = rec_new(&f, mkgrant(2, VMSIG_CAP_MEMCTX, 1, 0), 0, 0);
    obs = rec_new(&f, mkgrant(3, VMSIG_CAP_OBSERVE, 1, 0), 0, 0);
    publish_map(&f, 0, ro, 4096);
    publish_map(&f, 0, ro, 4096);
    rec_clear(mem);

    g_assert_cmpint(send_memwrite(w, 0, 16, "vmsig", 5), ==, 0);
    g_assert_cmpmem(f.vm.ram + 16, 5, "vmsig", 5);
    g_assert_cmpuint(mem->evs->len, ==, 1);
    ev = rec_at(mem, 0);
    g_assert_cmpuint(ev->kind, ==, VMSIG_EV_MEMWRITE_DONE);
    g_assert_cmpuint(ev->u.memdone.gpa, ==, 16);
    g_assert_cmpuint(ev->u.memdone.len, ==, 5);
    g_assert_cmpuint(ev->u.memdone.generation, ==, 2);
    g_assert_cmpuint(ev->u.memdone.writer, ==, 99);
    g_assert_cmpuint(ev->seq, ==, 3);
    g_assert_cmpuint(obs->evs->len, ==, 0);
    g_assert_cmpuint(w->evs->len, ==, 0);

    /* A write the backend refuses is not announced. */
    g_assert_cmpint(send_memwrite(w, 0, 4094, "vmsig", 5), ==, -EFAULT);
    g_assert_cmpuint(mem->evs->len, ==, 1);
    rec_free(w);
    rec_free(mem);
    rec_free(obs);
    close(ro);
    close(rw);
    vmsig_core_free(f.core);
}

/* ================= attach limits ================= */

static void test_attach_retired(void)
{
    fixture f;
    static const uint32_t bad[] = { 0x4, 0x10, VMSIG_CAP_OBSERVE | 0x4, 0x800, 0x80000000u };
    int err;

    fx_init(&f, vmsig_arb_deny);
    for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
        vmsig_grant g = mkgrant(1, bad[i], ALL_EPS, 0);
        rec *r;

        err = 0;
        g_assert_null(vmsig_core_attach(f.core, &raw_ops, NULL, &g, NULL, &err));
        g_assert_cmpint(err, ==, -EINVAL);
        err = 0;
        r = rec_new_err(&f, g, 0, 0, 1, &err);
        g_assert_null(r->ic);
        g_assert_cmpint(err, ==, -EINVAL);
        rec_free(r);
    }
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 0);
    vmsig_core_free(f.core);
}

static void test_attach_max_controls(void)
{
    fixture f;
    rec *a, *b, *c;
    int err = 0;

    fx_init_max(&f, vmsig_arb_deny, 2);
    a = rec_new(&f, mkgrant(1, VMSIG_CAP_OBSERVE, 1, 0), 0, 0);
    b = rec_new(&f, mkgrant(2, VMSIG_CAP_OBSERVE, 1, 0), 0, 0);
    c = rec_new_err(&f, mkgrant(3, VMSIG_CAP_OBSERVE, 1, 0), 0, 0, 1, &err);
    g_assert_null(c->ic);
    g_assert_cmpint(err, ==, -EMFILE);
    rec_free(c);
    rec_free(a);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 1);
    c = rec_new(&f, mkgrant(3, VMSIG_CAP_OBSERVE, 1, 0), 0, 0);
    rec_free(b);
    rec_free(c);
    vmsig_core_free(f.core);
}

static void test_attach_snapshot_refused(void)
{
    fixture f;
    raw_ctl r;
    vmsig_grant g = mkgrant(1, VMSIG_CAP_OBSERVE, 1, 0);
    int err = 0;

    fx_init(&f, vmsig_arb_deny);
    vm_set_state(&f.vm, 0, VMSIG_RS_RUNNING);
    memset(&r, 0, sizeof(r));
    r.ret = -EAGAIN;
    g_assert_null(vmsig_core_attach(f.core, &raw_ops, &r, &g, NULL, &err));
    g_assert_cmpint(err, ==, -ENOBUFS);
    g_assert_cmpuint(r.delivered, ==, 1);
    g_assert_cmpuint(r.detach_calls, ==, 0); /* a failed attach never calls detach */
    g_assert_cmpuint(f.log.calls, ==, 0);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 0);
    vmsig_core_free(f.core);
}

/* ================= reentrant detach ================= */

static void test_detach_self_in_deliver(void)
{
    fixture f;
    raw_ctl a, b;
    vmsig_grant g = mkgrant(1, VMSIG_CAP_OBSERVE, ALL_EPS, 0);

    fx_init(&f, vmsig_arb_deny);
    raw_attach(&f, &a, g, NULL);
    raw_attach(&f, &b, g, NULL);
    a.detach_self = 1;
    publish_kind(&f, VMSIG_EV_RESET, 0);
    g_assert_cmpuint(a.delivered, ==, 1);
    g_assert_cmpuint(a.detach_calls, ==, 1);
    g_assert_cmpint(a.detach_why, ==, 0);
    g_assert_cmpuint(b.delivered, ==, 1); /* the loop went on past it */
    publish_kind(&f, VMSIG_EV_RESET, 0);
    g_assert_cmpuint(a.delivered, ==, 1);
    g_assert_cmpuint(b.delivered, ==, 2);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 1);
    g_assert_cmpuint(f.log.calls, ==, 1);
    vmsig_core_free(f.core);
    g_assert_cmpuint(a.detach_calls, ==, 1);
    g_assert_cmpuint(b.detach_calls, ==, 1);
}

static void test_detach_other_in_deliver(void)
{
    fixture f;
    raw_ctl a, b, c;
    vmsig_grant g = mkgrant(1, VMSIG_CAP_OBSERVE, ALL_EPS, 0);

    fx_init(&f, vmsig_arb_deny);
    raw_attach(&f, &a, g, NULL);
    raw_attach(&f, &b, g, NULL);
    raw_attach(&f, &c, g, NULL);
    b.victim = &c; /* later in the list: must not get the event */
    publish_kind(&f, VMSIG_EV_RESET, 0);
    g_assert_cmpuint(c.delivered, ==, 0);
    g_assert_cmpuint(c.detach_calls, ==, 1);
    b.victim = &a; /* earlier in the list */
    publish_kind(&f, VMSIG_EV_RESET, 0);
    g_assert_cmpuint(a.delivered, ==, 2);
    g_assert_cmpuint(a.detach_calls, ==, 1);
    publish_kind(&f, VMSIG_EV_RESET, 0);
    g_assert_cmpuint(a.delivered, ==, 2);
    g_assert_cmpuint(b.delivered, ==, 3);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 1);
    vmsig_core_free(f.core);
    g_assert_cmpuint(a.detach_calls + b.detach_calls + c.detach_calls, ==, 3);
}

static void test_detach_on_deliver_error(void)
{
    fixture f;
    raw_ctl slow, gone, ok;
    vmsig_grant g = mkgrant(1, VMSIG_CAP_OBSERVE, ALL_EPS, 0);

    fx_init(&f, vmsig_arb_deny);
    raw_attach(&f, &slow, g, NULL);
    raw_attach(&f, &gone, g, NULL);
    raw_attach(&f, &ok, g, NULL);
    slow.ret = -EAGAIN;
    gone.ret = -EPIPE;
    publish_kind(&f, VMSIG_EV_WAKEUP, 0);
    g_assert_cmpuint(slow.detach_calls, ==, 1);
    g_assert_cmpint(slow.detach_why, ==, -ENOBUFS);
    g_assert_cmpuint(gone.detach_calls, ==, 1);
    g_assert_cmpint(gone.detach_why, ==, -EPIPE);
    g_assert_cmpuint(ok.detach_calls, ==, 0);
    g_assert_cmpuint(f.log.calls, ==, 2);
    g_assert_cmpuint(vmsig_core_control_count(f.core), ==, 1);
    vmsig_core_free(f.core);
    g_assert_cmpuint(ok.detach_calls, ==, 1);
    g_assert_cmpint(ok.detach_why, ==, -ESHUTDOWN);
}

/* A deliver callback that publishes again: nested events keep their order. */
typedef struct nested {
    vmsig_core *core;
    int depth;
    GArray *seqs;
} nested;

static int nested_on_event(void *opaque, const vmsig_event *ev)
{
    nested *n = opaque;

    g_array_append_val(n->seqs, ev->seq);
    if (n->depth++ < 3) {
        vmsig_event next = { .kind = VMSIG_EV_RESET, .endpoint = ev->endpoint };
        g_assert_cmpint(vmsig_core_publish(n->core, &next), ==, 0);
    }
    return 0;
}

static void test_publish_from_deliver(void)
{
    fixture f;
    nested n = { 0 };
    vmsig_grant g = mkgrant(1, VMSIG_CAP_OBSERVE, 1, 0);
    vmsig_inproc_cfg cfg = { .on_event = nested_on_event, .opaque = &n };
    vmsig_inproc *ic;
    int err;

    fx_init(&f, vmsig_arb_deny);
    n.core = f.core;
    n.seqs = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    ic = vmsig_inproc_new(f.core, &cfg, &g, &err);
    g_assert_nonnull(ic);
    publish_kind(&f, VMSIG_EV_RESET, 0);
    g_assert_cmpuint(n.seqs->len, ==, 4);
    for (unsigned i = 0; i < 4; i++) {
        g_assert_cmpuint(g_array_index(n.seqs, uint64_t, i), ==, i + 1);
    }
    g_array_free(n.seqs, TRUE);
    vmsig_inproc_free(ic);
    vmsig_core_free(f.core);
}

/* ================= shutdown ================= */

static void test_core_free_detaches(void)
{
    fixture f;
    raw_ctl r[3];
    rec *in;
    vmsig_grant g = mkgrant(1, VMSIG_CAP_ALL, ALL_EPS, 0);

    fx_init(&f, vmsig_arb_deny);
    for (unsigned i = 0; i < 3; i++) {
        raw_attach(&f, &r[i], g, NULL);
    }
    in = rec_new(&f, g, 0, 0);
    g_assert_cmpint(send_cmd(in, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0);
    vmsig_core_free(f.core);
    for (unsigned i = 0; i < 3; i++) {
        g_assert_cmpuint(r[i].detach_calls, ==, 1);
        g_assert_cmpint(r[i].detach_why, ==, -ESHUTDOWN);
        g_assert_cmpuint(r[i].delivered, ==, 1); /* GRANTED; no RELEASED while closing */
    }
    g_assert_cmpuint(f.log.calls, ==, 4);
    g_assert_cmpint(f.log.last_why, ==, -ESHUTDOWN);
    /* The in-proc control outlived its core: send fails, free only frees. */
    g_assert_cmpint(send_cmd(in, VMSIG_CMD_NOP, 0, 0), ==, -EPIPE);
    rec_free(in);
}

/* ================= subscription changes ================= */

static void test_subscribe_snapshot(void)
{
    fixture f;
    raw_ctl r;
    vmsig_sub s = { 1u << VMSIG_SRC_SEAM, 0x1 };

    fx_init(&f, vmsig_arb_deny);
    vm_set_state(&f.vm, 0, VMSIG_RS_RUNNING);
    vm_set_state(&f.vm, 1, VMSIG_RS_PAUSED);
    raw_attach(&f, &r, mkgrant(1, VMSIG_CAP_OBSERVE, 0x3, 0), &s);
    g_assert_cmpuint(r.delivered, ==, 1);
    s.endpoint_mask = 0x3;
    vmsig_control_subscribe(r.ctl, &s); /* only ep1 is new */
    g_assert_cmpuint(r.delivered, ==, 2);
    s.endpoint_mask = 0x7;              /* ep2 is not granted */
    vmsig_control_subscribe(r.ctl, &s);
    g_assert_cmpuint(r.delivered, ==, 2);
    g_assert_cmpuint(vmsig_control_sub(r.ctl).endpoint_mask, ==, 0x3);
    vmsig_core_free(f.core);
}

/* ================= watches and the loop ================= */

typedef struct watch_ctx {
    vmsig_watch *w;
    int fd;
    unsigned calls;
    volatile int *stop;
} watch_ctx;

static void watch_cb(void *opaque, uint32_t events)
{
    watch_ctx *c = opaque;
    char buf[8];

    g_assert_true(events & EPOLLIN);
    c->calls++;
    g_assert_cmpint(read(c->fd, buf, sizeof(buf)), >, 0);
    vmsig__watch_del(c->w); /* removing itself from inside its own callback */
    if (c->stop) {
        *c->stop = 1;
    }
}

static void test_watch_and_loop(void)
{
    fixture f;
    int p[2];
    volatile int stop = 0;
    watch_ctx c = { 0 };
    int err = 1;

    fx_init(&f, vmsig_arb_deny);
    g_assert_cmpint(pipe2(p, O_CLOEXEC | O_NONBLOCK), ==, 0);
    c.fd = p[0];
    c.stop = &stop;
    c.w = vmsig__watch_add(f.core, p[0], EPOLLIN, watch_cb, &c, &err);
    g_assert_nonnull(c.w);
    g_assert_cmpint(vmsig_core_dispatch(f.core), ==, 0);
    g_assert_cmpint(write(p[1], "x", 1), ==, 1);
    g_assert_cmpint(vmsig_loop_run(f.core, &stop, 5000), ==, 0);
    g_assert_cmpuint(c.calls, ==, 1);
    g_assert_true(stop);
    /* Removed: more data does not call it again. */
    g_assert_cmpint(write(p[1], "y", 1), ==, 1);
    g_assert_cmpint(vmsig_loop_run(f.core, NULL, 50), ==, 0);
    g_assert_cmpuint(c.calls, ==, 1);
    g_assert_null(vmsig__watch_add(f.core, -1, EPOLLIN, watch_cb, &c, &err));
    g_assert_cmpint(err, ==, -EBADF);
    g_assert_cmpuint(vmsig__core_config(f.core)->queue_limit, ==, 256);
    close(p[0]);
    close(p[1]);
    vmsig_core_free(f.core);
}

/* A control learns nothing about a command it may not send: the grant
 * first (endpoint, capability: -EPERM), then ownership (-EBUSY), then the
 * payload (-EINVAL / -EFAULT). */
static void test_submit_refusal_order(void)
{
    fixture f;
    fx_init(&f, vmsig_arb_deny);
    rec *weak = rec_new(&f, mkgrant(1, VMSIG_CAP_OBSERVE, ALL_EPS, 0), 0, 0);
    rec *owner = rec_new(&f, mkgrant(2, VMSIG_CAP_ALL, ALL_EPS, 0), 0, 0);
    rec *other = rec_new(&f, mkgrant(3, VMSIG_CAP_ALL, 0x1, 0), 0, 0);
    vmsig_event c;

    /* Without CAP_MEMWRITE: -EPERM for a zero-length and a wrapping write. */
    c = mkcmd(VMSIG_CMD_MEMWRITE, 0, 0);
    c.u.memwrite = (vmsig_wire_memwrite){ .gpa = 0x1000, .len = 0 };
    g_assert_cmpint(vmsig_inproc_send(weak->ic, &c, NULL), ==, -EPERM);
    c.u.memwrite = (vmsig_wire_memwrite){ .gpa = UINT64_MAX - 2, .len = 8 };
    c.ool = "12345678";
    c.ool_len = 8;
    g_assert_cmpint(vmsig_inproc_send(weak->ic, &c, NULL), ==, -EPERM);
    /* Without CAP_VM: an unknown op is -EPERM too. */
    g_assert_cmpint(send_cmd(weak, VMSIG_CMD_VM, 0, 9), ==, -EPERM);
    /* Outside the endpoint mask: -EPERM before the payload. */
    g_assert_cmpint(send_cmd(other, VMSIG_CMD_VM, 5, 9), ==, -EPERM);
    /* A class owned by another: -EBUSY before the payload. */
    g_assert_cmpint(send_cmd(owner, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_INPUT), ==, 0);
    c = mkcmd(VMSIG_CMD_INPUT, 0, 0);
    c.u.input = (vmsig_wire_input){ .op = 99 };
    g_assert_cmpint(vmsig_inproc_send(other->ic, &c, NULL), ==, -EBUSY);
    g_assert_cmpint(send_cmd(owner, VMSIG_CMD_ACQUIRE, 0, VMSIG_CLASS_RUN), ==, 0);
    g_assert_cmpint(send_cmd(other, VMSIG_CMD_VM, 0, 9), ==, -EBUSY);
    /* Allowed and not owned by another: now the payload is looked at. */
    g_assert_cmpint(vmsig_inproc_send(owner->ic, &c, NULL), ==, -EINVAL);
    g_assert_cmpint(send_cmd(owner, VMSIG_CMD_VM, 0, 9), ==, -EINVAL);
    c = mkcmd(VMSIG_CMD_MEMWRITE, 0, 0);
    c.u.memwrite = (vmsig_wire_memwrite){ .gpa = UINT64_MAX - 2, .len = 8 };
    c.ool = "12345678";
    c.ool_len = 8;
    g_assert_cmpint(vmsig_inproc_send(other->ic, &c, NULL), ==, -EFAULT);
    /* Not a command at all: -EOPNOTSUPP, whatever the grant. */
    g_assert_cmpint(send_cmd(weak, 0x1999, 0, 0), ==, -EOPNOTSUPP);
    rec_free(other);
    rec_free(owner);
    rec_free(weak);
    vmsig_core_free(f.core);
}

/* Out of fds when a map changes: the core cannot keep the new map's fds,
 * so it publishes the map as unavailable (status -EMFILE) instead of
 * nothing, and holders stop trusting the old one. */
static void test_memctx_out_of_fds(void)
{
    fixture f;
    fx_init(&f, vmsig_arb_deny);
    rec *r = rec_new(&f, mkgrant(1, VMSIG_CAP_ALL, ALL_EPS, 0), 0, 0);
    int rw = memfd_rw(4096), ro = reopen_ro(rw);
    publish_map(&f, 0, ro, 4096);
    g_assert_cmpuint(rec_count(r, VMSIG_EV_MEMCTX), ==, 1);
    struct rlimit old, low;
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close(lowest);
    low = old;
    low.rlim_cur = (rlim_t)lowest;
    vmsig_wire_memctx mc = { .ram_size = 4096, .nseg = 1 };
    vmsig_wire_memseg seg = { .gpa = 0, .size = 4096, .fd_index = 0 };
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
    int ret = vmsig_core_publish_memctx(f.core, 0, &mc, &seg, &ro, 1);
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
    g_assert_cmpint(ret, ==, -EMFILE);
    g_assert_cmpuint(rec_count(r, VMSIG_EV_MEMCTX), ==, 2);
    const vmsig_event *ev = rec_at(r, r->evs->len - 1);
    g_assert_cmpuint(ev->kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpint(ev->u.memctx.status, ==, -EMFILE);
    g_assert_cmpuint(ev->u.memctx.nseg, ==, 0);
    g_assert_cmpuint(ev->u.memctx.generation, ==, 2);
    g_assert_nonnull(strstr(ev->u.memctx.why, "out of file descriptors"));
    close(ro);
    close(rw);
    rec_free(r);
    vmsig_core_free(f.core);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/core/filter/sources", test_filter_sources);
    g_test_add_func("/core/filter/endpoints", test_filter_endpoints);
    g_test_add_func("/core/filter/effective-sub", test_filter_effective_sub);
    g_test_add_func("/core/seq/per-control", test_seq_per_control);
    g_test_add_func("/core/publish/einval", test_publish_einval);
    g_test_add_func("/core/publish/from-deliver", test_publish_from_deliver);
    g_test_add_func("/core/snapshot/on-attach", test_snapshot_on_attach);
    g_test_add_func("/core/snapshot/fd-same-file", test_snapshot_fd_is_same_file);
    g_test_add_func("/core/snapshot/on-subscribe", test_subscribe_snapshot);
    g_test_add_func("/core/memctx/refusals", test_memctx_refusals);
    g_test_add_func("/core/submit/eperm", test_submit_eperm);
    g_test_add_func("/core/submit/nop", test_submit_nop);
    g_test_add_func("/core/submit/einval", test_submit_einval);
    g_test_add_func("/core/submit/snapshot", test_snapshot_cmd);
    g_test_add_func("/core/submit/refusal-order", test_submit_refusal_order);
    g_test_add_func("/core/memctx/out-of-fds", test_memctx_out_of_fds);
    g_test_add_func("/core/submit/no-backend", test_submit_no_backend);
    g_test_add_func("/core/submit/query-and-stop", test_backend_query_and_stop);
    g_test_add_func("/core/submit/refusal-text", test_backend_refusal_text);
    g_test_add_func("/core/arb/deny", test_arb_deny);
    g_test_add_func("/core/arb/run-class", test_arb_run_class);
    g_test_add_func("/core/arb/preempt", test_arb_preempt);
    g_test_add_func("/core/arb/priority", test_arb_priority);
    g_test_add_func("/core/arb/dead-owner", test_arb_dead_owner);
    g_test_add_func("/core/memwrite/done", test_memwrite_done);
    g_test_add_func("/core/attach/retired", test_attach_retired);
    g_test_add_func("/core/attach/max-controls", test_attach_max_controls);
    g_test_add_func("/core/attach/snapshot-refused", test_attach_snapshot_refused);
    g_test_add_func("/core/detach/self-in-deliver", test_detach_self_in_deliver);
    g_test_add_func("/core/detach/other-in-deliver", test_detach_other_in_deliver);
    g_test_add_func("/core/detach/deliver-error", test_detach_on_deliver_error);
    g_test_add_func("/core/free/detaches-all", test_core_free_detaches);
    g_test_add_func("/core/watch/loop", test_watch_and_loop);
    return g_test_run();
}
