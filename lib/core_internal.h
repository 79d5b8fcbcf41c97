/*
 * core_internal.h - what the transport files of lib/ (sockctl.c) need from
 * core.c. Not installed, not part of the API.
 */
#ifndef VMSIG_CORE_INTERNAL_H
#define VMSIG_CORE_INTERNAL_H

#include <stdint.h>
#include "vmsig/vmsig_core.h"

/*
 * fd watches on the core's epoll set. cb is called from vmsig_core_dispatch()
 * with the ready epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP, EPOLLERR).
 * A watch may be removed from inside any callback, including its own: the
 * core defers freeing it until the current dispatch batch is over and never
 * calls a removed watch's cb again.
 */
typedef struct vmsig_watch vmsig_watch;
typedef void (*vmsig_watch_cb)(void *opaque, uint32_t events);

/* NULL with *err on failure (-errno of epoll_ctl, -ENOMEM). fd stays the caller's. */
vmsig_watch *vmsig__watch_add(vmsig_core *core, int fd, uint32_t events,
                              vmsig_watch_cb cb, void *opaque, int *err);
int  vmsig__watch_mod(vmsig_watch *w, uint32_t events);
void vmsig__watch_del(vmsig_watch *w);

/* Words for a detach reason (0, -ENOBUFS, -EPIPE, ...): for logs and BYE. */
const char *vmsig__why_text(int why);

/* vmsig_core_attach for a control that negotiated `features` (socket
 * controls); vmsig_core_attach gives in-process controls every known one. */
vmsig_control *vmsig__core_attach_ex(vmsig_core *core, const vmsig_control_ops *ops,
                                     void *opaque, const vmsig_grant *grant,
                                     const vmsig_sub *sub, uint64_t features, int *err);

/* The core's copied config (queue_limit etc. already defaulted). */
const vmsig_core_config *vmsig__core_config(const vmsig_core *core);

/* The listener lives in sockctl.c; the core frees it (before detaching the
 * controls) in vmsig_core_free. At most one. */
int vmsig__core_set_listener(vmsig_core *core, void *listener, void (*free_fn)(void *listener));

#endif /* VMSIG_CORE_INTERNAL_H */
