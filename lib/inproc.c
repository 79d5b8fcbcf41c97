/*
 * inproc.c - the reference in-process control: an algorithm embedded as C
 * callbacks, attached through the same vmsig_core_attach as a socket control.
 */
#include <errno.h>
#include <stdlib.h>
#include "vmsig/vmsig_core.h"

struct vmsig_inproc {
    vmsig_core *core;
    vmsig_control *ctl; /* NULL once the core has detached us */
    vmsig_inproc_cfg cfg;
};

static int inproc_deliver(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds)
{
    vmsig_inproc *ic = opaque;

    if (ev->kind == VMSIG_EV_MEMCTX) {
        return ic->cfg.on_memctx ? ic->cfg.on_memctx(ic->cfg.opaque, ev, fds, nfds) : 0;
    }
    return ic->cfg.on_event ? ic->cfg.on_event(ic->cfg.opaque, ev) : 0;
}

static void inproc_detach(void *opaque, int why)
{
    vmsig_inproc *ic = opaque;

    ic->ctl = NULL; /* the owner frees ic in vmsig_inproc_free */
}

static const vmsig_control_ops inproc_ops = {
    .name = "inproc",
    .deliver = inproc_deliver,
    .detach = inproc_detach,
};

/* Without on_memctx there is nowhere to put RAM fds, so MEMCTX is not asked for. */
static vmsig_sub inproc_sub(const vmsig_inproc_cfg *cfg)
{
    vmsig_sub s = cfg->sub;

    if (cfg->on_memctx) {
        return s;
    }
    if (!s.source_mask && !s.endpoint_mask) {
        s = (vmsig_sub){ VMSIG_SRC_ALL, ~0ull }; /* "everything", spelled out */
    }
    s.source_mask &= ~(1u << VMSIG_SRC_MEMCTX);
    return s;
}

vmsig_inproc *vmsig_inproc_new(vmsig_core *core, const vmsig_inproc_cfg *cfg,
                               const vmsig_grant *grant, int *err)
{
    vmsig_inproc *ic;
    vmsig_sub sub;

    if (!core || !cfg || !grant) {
        if (err) {
            *err = -EINVAL;
        }
        return NULL;
    }
    ic = calloc(1, sizeof(*ic));
    if (!ic) {
        if (err) {
            *err = -ENOMEM;
        }
        return NULL;
    }
    ic->core = core;
    ic->cfg = *cfg;
    sub = inproc_sub(cfg);
    ic->ctl = vmsig_core_attach(core, &inproc_ops, ic, grant, &sub, err);
    if (!ic->ctl) {
        free(ic);
        return NULL;
    }
    return ic;
}

int vmsig_inproc_send(vmsig_inproc *ic, const vmsig_event *down, vmsig_reply *reply)
{
    if (!ic || !ic->ctl) {
        if (reply) {
            reply->status = -EPIPE;
            reply->len = 0;
        }
        return -EPIPE;
    }
    return vmsig_control_submit(ic->ctl, down, reply);
}

void vmsig_inproc_free(vmsig_inproc *ic)
{
    if (!ic) {
        return;
    }
    if (ic->ctl) {
        vmsig_control_detach(ic->ctl, 0);
    }
    free(ic);
}
