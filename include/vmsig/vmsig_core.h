/*
 * vmsig_core.h - the vmsig core: grants, subscriptions, arbitration,
 * sequence numbers, bounded delivery; the control seam; the socket listener.
 *
 * The core is QEMU-free. It owns no thread and never blocks. It is hosted by
 * a loop (QEMU's main loop, a test, vmsig_loop_run()) through one pollable fd
 * (vmsig_core_fd) and a non-blocking vmsig_core_dispatch(). Every function here
 * must be called on that loop's thread ("the loop thread"); every callback is
 * called on it.
 *
 * ABI (docs/library.md): libvmsig.so.1 exports only the vmsig_[a-z]* names
 * declared in these headers. Within soname 1 functions and constants are
 * only added, never removed, renumbered or changed in meaning; structs with
 * a `version` field (vmsig_core_config, vmsig_client_config) grow only at
 * the end, and the library takes every version from 1 to the current one,
 * reading a field only if the caller's version has it. Other structs and
 * the callback tables are frozen. The wire protocol evolves separately, by
 * negotiated features (docs/protocol.rst).
 *
 * Errors: functions return 0 or a negative errno. The values a function can
 * return are listed with it; the ones with a fixed meaning everywhere are
 *   -EPERM   refused by the grant (capability or endpoint mask)
 *   -EBUSY   the (endpoint, class) is owned by another control
 *   -EAGAIN  back-pressure (queue full)
 *   -EPIPE   the peer is gone
 *   -EINVAL  malformed argument (retired capability bit, bad kind, ...)
 */
#ifndef VMSIG_CORE_H
#define VMSIG_CORE_H

#include <stdint.h>
#include <sys/types.h>
#include "vmsig_event.h"

typedef struct vmsig_core vmsig_core;       /* the core */
typedef struct vmsig_control vmsig_control; /* one attached control (core side) */
typedef struct vmsig_grants vmsig_grants;   /* a grants table (principal -> grant) */

/* ---- arbitration ---- */

typedef enum {
    VMSIG_ARB_DENY = 0,   /* the contender is refused, the owner keeps it */
    VMSIG_ARB_PREEMPT = 1 /* the contender takes it; the old owner is told */
} vmsig_arb_decision;

/*
 * Called only when (endpoint, cls) is held by a live owner and another
 * control sends ACQUIRE. incumbent and contender are the parties' live grants
 * (borrowed for the call); incumbent is never NULL: a dead owner's slot is
 * free and the policy is not asked. Called on the loop thread.
 */
typedef vmsig_arb_decision (*vmsig_arb_policy)(void *opaque, uint32_t endpoint, uint32_t cls,
                                               const vmsig_grant *incumbent,
                                               const vmsig_grant *contender);

/* Built-in policies (opaque unused). */
vmsig_arb_decision vmsig_arb_deny(void *opaque, uint32_t endpoint, uint32_t cls,
                                  const vmsig_grant *incumbent, const vmsig_grant *contender);
vmsig_arb_decision vmsig_arb_preempt(void *opaque, uint32_t endpoint, uint32_t cls,
                                     const vmsig_grant *incumbent, const vmsig_grant *contender);
/* PREEMPT if contender->priority > incumbent->priority, else DENY. */
vmsig_arb_decision vmsig_arb_priority(void *opaque, uint32_t endpoint, uint32_t cls,
                                      const vmsig_grant *incumbent, const vmsig_grant *contender);
/* "deny" / "preempt" / "priority" -> policy; NULL if the name is unknown. */
vmsig_arb_policy vmsig_arb_policy_by_name(const char *name);

/* ---- the VM side ---- */

/*
 * What the host (QEMU glue, or a test's VM model) implements so the core can
 * carry out DOWN commands. Called on the loop thread.
 *
 * command: a DOWN command that already passed the grant and arbitration
 *   checks. cmd is borrowed for the call (cmd->ool too). Fill reply->body /
 *   reply->len for a body (CMD_VM query: vmsig_wire_vminfo). Return 0 or a
 *   negative errno; the core puts it in the reply. When refusing, the body
 *   may be a NUL-terminated explanation (it reaches the control). ACQUIRE/RELEASE/NOP never
 *   reach it. If it returns 0 for CMD_MEMWRITE, the core publishes
 *   VMSIG_EV_MEMWRITE_DONE to the MEMCTX subscribers before
 *   vmsig_control_submit returns (so before a socket control's REPLY).
 *   The CMD_VM query body may always carry vmsig_wire_vminfo_host after the
 *   vminfo: the core trims it for controls without VMSIG_FEAT_VMINFO_HOST.
 */
typedef struct vmsig_backend_ops {
    int (*command)(void *opaque, const vmsig_event *cmd, uint32_t principal,
                   vmsig_reply *reply);
} vmsig_backend_ops;

/*
 * Answer later. A command that takes time (a vCPU's registers read on its
 * own thread, a large write with the vCPUs paused) need not block the loop:
 * if reply->ticket is nonzero, command() may return -EINPROGRESS, keep the
 * ticket (cmd is borrowed: copy what it needs) and call this on the loop
 * thread when done, exactly once, after command() has returned. status and
 * body as command() would have given them (body copied, at most
 * VMSIG_REPLY_BODY_MAX). A successful CMD_MEMWRITE's MEMWRITE_DONE is
 * published before the reply. With ticket 0 (an in-process control, which
 * has no way to take a late reply) command() must answer before returning.
 * Returns 0, -ENOENT (no such ticket), -EPIPE (the control went away: the
 * answer is dropped), -EINVAL.
 */
int vmsig_core_complete(vmsig_core *core, uint64_t ticket, int status, const void *body,
                        uint32_t len);

/* ---- the core ---- */

/* Versions of vmsig_core_config: 1 (up to log_opaque), 2 (features_off).
 * vmsig_core_new takes every version from 1 to VMSIG_CORE_CONFIG_VERSION and
 * reads a field only if the version has it (the others are 0). */
#define VMSIG_CORE_CONFIG_VERSION 2u

typedef struct vmsig_core_config {
    uint32_t version;              /* VMSIG_CORE_CONFIG_VERSION */
    uint32_t queue_limit;          /* frames queued per socket control; 0 = 256 */
    uint32_t max_controls;         /* 0 = 256 */
    uint32_t handshake_timeout_ms; /* socket controls; 0 = 5000 */
    vmsig_arb_policy policy;       /* NULL = vmsig_arb_deny */
    void *policy_opaque;
    const vmsig_backend_ops *backend; /* NULL: every command but NOP/ACQUIRE/RELEASE gets -ENOSYS */
    void *backend_opaque;
    /* Called once per detached control, with why (e.g. -ENOBUFS slow reader,
     * -EPROTO bad frame, -EPIPE peer closed, 0 orderly). Optional; for logs. */
    void (*on_detach)(void *opaque, const vmsig_grant *g, int why, const char *text);
    void *log_opaque;
    /* version 2 */
    uint64_t features_off; /* VMSIG_FEAT_* socket controls are not offered; 0 = offer all */
} vmsig_core_config;

/* cfg is copied. NULL on OOM or bad config (*err = -ENOMEM / -EINVAL). */
vmsig_core *vmsig_core_new(const vmsig_core_config *cfg, int *err);

/* Sends BYE(-ESHUTDOWN) to socket controls, detaches everything, closes the
 * listener (and unlinks its path), frees. NULL is a no-op. Each control's
 * ops->detach (and on_detach) is called once with -ESHUTDOWN; no ARB RELEASED
 * events are sent while closing. Not to be called from a core callback. */
void vmsig_core_free(vmsig_core *core);

/* Pollable fd (an epoll fd owned by the core): when readable, call
 * vmsig_core_dispatch(). Never -1 for a live core. */
int vmsig_core_fd(vmsig_core *core);

/* Does all work that is ready without blocking (accepts, reads, writes,
 * timeouts). Returns the number of events handled (>= 0). */
int vmsig_core_dispatch(vmsig_core *core);

/* Standalone loop for tests, benchmarks and tools: poll + dispatch until
 * *stop becomes nonzero or timeout_ms passes (-1 = no timeout). Returns 0. */
int vmsig_loop_run(vmsig_core *core, volatile int *stop, int timeout_ms);

/* Change the arbitration policy at run time. */
void vmsig_core_set_policy(vmsig_core *core, vmsig_arb_policy policy, void *opaque);

/* ---- UP: the VM side publishes ---- */

/*
 * Publish an UP event for ev->endpoint: the core sets ev->ts_ns (if 0),
 * remembers SEAM state for snapshots and delivers to every control whose
 * effective subscription and grant cover it, setting ev->seq before each
 * delivery to that control's next delivery sequence number (so after the
 * call ev->seq is the last control's).
 * ev is borrowed. Returns 0, -EINVAL (not an UP kind; MEMCTX must use
 * vmsig_core_publish_memctx; ARB and MEMWRITE_DONE are the core's own, a
 * host cannot publish them).
 */
int vmsig_core_publish(vmsig_core *core, vmsig_event *ev);

/*
 * Publish a new RAM map for `endpoint`. mc is copied; segs (mc->nseg entries)
 * copied; fds borrowed: the core keeps its own dups (F_DUPFD_CLOEXEC) to hand
 * to later subscribers, so the caller closes its copies when it likes. The fds
 * must already be read-only (O_RDONLY descriptions), checked with F_GETFL:
 * -EACCES otherwise. mc->status != 0 publishes "unavailable" (nfds 0).
 * mc->generation 0 lets the core number the map (previous + 1); a nonzero
 * generation is kept as given.
 * Returns 0, -EINVAL (nseg/nfds over limits, fd_index out of range),
 * -EACCES (a writable fd), -EBADF (an fd that is not open), -ENOMEM, or
 * -EMFILE: the core could not dup the fds, and published the map as
 * unavailable (status -EMFILE, why saying so) instead, so holders of the
 * old map are told.
 */
int vmsig_core_publish_memctx(vmsig_core *core, uint32_t endpoint,
                              const vmsig_wire_memctx *mc, const vmsig_wire_memseg *segs,
                              const int *fds, unsigned nfds);

/* Current MEMCTX generation of an endpoint, 0 if none. */
uint64_t vmsig_core_memctx_generation(vmsig_core *core, uint32_t endpoint);

/* ---- controls ---- */

/*
 * How the core reaches a control. In-process controls call back directly;
 * socket controls serialize onto their socket. The core treats both the same.
 *
 * deliver: an UP event for this control (already filtered by subscription and
 *   grant; the one exception: an owner that loses a slot to PREEMPT gets that
 *   VMSIG_EV_ARB even without CAP_OBSERVE or an ARB subscription). ev, ev->ool and fds are borrowed for the call: dup what must
 *   outlive it. fds are only non-empty for VMSIG_EV_MEMCTX (read-only RAM
 *   fds). Return 0, -EAGAIN (cannot take it now; the core drops the control
 *   with -ENOBUFS), -EPIPE (gone; the core detaches it) or another negative
 *   errno the host lacks (-EMFILE no fd to dup, -ENOMEM): the core detaches
 *   the control with it.
 * detach: the control is being detached (why as for on_detach). The core no
 *   longer touches it after this; free opaque here. Optional.
 */
typedef struct vmsig_control_ops {
    const char *name;
    int  (*deliver)(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds);
    void (*detach)(void *opaque, int why);
    /* A command's reply that comes after vmsig_control_submit returned
     * -EINPROGRESS (see vmsig_core_complete): id is the command's seq.
     * Optional: a control without it never gets -EINPROGRESS. */
    void (*reply)(void *opaque, uint64_t id, uint32_t endpoint, int status, const void *body,
                  uint32_t len);
} vmsig_control_ops;

/*
 * Attach a control. grant and sub are copied; the effective subscription is
 * sub & grant (sources also narrowed by the caps that receive them). A NULL or
 * all-zero sub means everything the grant allows. The new control first gets
 * a snapshot (the current RUNSTATE of each endpoint in its subscription, then
 * the current MEMCTX of each), flagged VMSIG_F_SNAPSHOT with seq 1, 2, ...
 * (its own delivery sequence starts with them), then live events.
 * Returns the core's handle, or NULL with *err = -EINVAL (grant with a retired
 * or unknown bit), -EMFILE (max_controls reached), -ENOMEM, -ESHUTDOWN (core
 * being freed), -ENOBUFS / -EPIPE (deliver refused the snapshot with -EAGAIN /
 * -EPIPE). When attach fails, ops->detach is never called.
 */
vmsig_control *vmsig_core_attach(vmsig_core *core, const vmsig_control_ops *ops, void *opaque,
                                 const vmsig_grant *grant, const vmsig_sub *sub, int *err);

/* Detach: frees the control's arbitration slots (owners told RELEASED), calls
 * ops->detach(opaque, why). The handle is invalid afterwards. */
void vmsig_control_detach(vmsig_control *ctl, int why);

/*
 * A DOWN command from this control. The core checks, in this order:
 * the kind and its payload (-EINVAL unknown or not a command, unknown op or
 * class, INPUT/MEMWRITE lengths that disagree with ool_len or exceed
 * VMSIG_TEXT_MAX/VMSIG_MEMWRITE_MAX, MEMWRITE len 0; -EFAULT for a MEMWRITE
 * range that wraps past 2^64), the endpoint (-EPERM outside
 * the grant's endpoint mask), the capability (-EPERM), arbitration (-EBUSY
 * when another control owns the command's class), then runs it (ACQUIRE,
 * RELEASE and NOP in the core; the rest through the backend). cmd is
 * borrowed. reply is filled (status = the return value); it may be NULL.
 * Returns 0 or the negative errno above, or the backend's; -EINPROGRESS
 * (a control with ops->reply only): the reply comes later through it; -EPIPE if the
 * control was detached during a callback that is still on the stack.
 * ACQUIRE: 0 if granted (or already ours), -EBUSY if the policy denied; a
 * dead owner's slot is taken without asking the policy. RELEASE: -ENOENT if
 * not the owner. Capabilities: ACQUIRE/RELEASE need the class's command cap
 * (RUN: CAP_VM or CAP_LIFECYCLE); NOP needs none, only the endpoint.
 * A successful CMD_MEMWRITE's MEMWRITE_DONE is published before this returns.
 */
int vmsig_control_submit(vmsig_control *ctl, const vmsig_event *cmd, vmsig_reply *reply);

/* Change the subscription (still narrowed by the grant; all-zero as for
 * attach). Endpoints/sources it newly covers get their snapshot first. */
void vmsig_control_subscribe(vmsig_control *ctl, const vmsig_sub *sub);

/* The control's grant (borrowed, lives as long as the control). */
const vmsig_grant *vmsig_control_grant(const vmsig_control *ctl);
/* The effective subscription. */
vmsig_sub vmsig_control_sub(const vmsig_control *ctl);

/* Number of attached controls. */
unsigned vmsig_core_control_count(vmsig_core *core);

/* ---- the reference in-process control ---- */

/* An algorithm embedded as C callbacks. Both callbacks are called on the loop
 * thread with borrowed arguments. */
typedef struct vmsig_inproc_cfg {
    /* Every UP event but MEMCTX. Return 0 (-EAGAIN / -EPIPE detach it). */
    int (*on_event)(void *opaque, const vmsig_event *up);
    /* UP MEMCTX with its read-only fds (borrowed: dup or mmap to keep).
     * NULL: the control does not accept MEMCTX (it is not subscribed). */
    int (*on_memctx)(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds);
    void *opaque;
    vmsig_sub sub;
} vmsig_inproc_cfg;

typedef struct vmsig_inproc vmsig_inproc;

/* cfg and grant are copied. NULL with *err as for vmsig_core_attach. */
vmsig_inproc *vmsig_inproc_new(vmsig_core *core, const vmsig_inproc_cfg *cfg,
                               const vmsig_grant *grant, int *err);
/* As vmsig_control_submit. -EPIPE if the core already detached it. */
int vmsig_inproc_send(vmsig_inproc *ic, const vmsig_event *down, vmsig_reply *reply);
/* Detaches (if still attached) and frees. NULL is a no-op. */
void vmsig_inproc_free(vmsig_inproc *ic);

/* ---- grants table ---- */

/*
 * Parse a grants file (format in docs/protocol.rst "Grants file"):
 *   # comment
 *   uid:1000     endpoints=0,1    caps=OBSERVE,VM,MEMCTX  priority=0
 *   token:s3cret endpoints=all    caps=all                priority=100
 *   default      endpoints=all    caps=OBSERVE
 * Returns the table or NULL with *err = -EINVAL and errbuf naming the line and
 * the problem (a retired capability bit, an unknown name, ...), or -errno of
 * open/read.
 */
vmsig_grants *vmsig_grants_load(const char *path, int *err, char *errbuf, size_t errlen);
/* Same, from a string (for tests and the QEMU default). */
vmsig_grants *vmsig_grants_parse(const char *text, int *err, char *errbuf, size_t errlen);
/* Add/replace one entry; uid = (uint32_t)-1 with token NULL sets the default.
 * g->principal is ignored: lookup gives a token's id (vmsig_token_principal)
 * or the peer's own uid.
 * Returns 0, -EINVAL (retired/unknown bit, token over VMSIG_TOKEN_MAX, a uid
 * >= 0x80000000), -EEXIST (another token of the table has the same id),
 * -ENOMEM. */
int vmsig_grants_set(vmsig_grants *t, uint32_t uid, const char *token, const vmsig_grant *g);
/* Look up a peer: a token match wins, then its uid, then the default.
 * 0 and *out filled, or -EPERM (no entry; a wrong token is -EPERM too; a
 * peer without a token whose uid is >= 0x80000000, whose principal would
 * fall among the token ids). */
int vmsig_grants_lookup(const vmsig_grants *t, uint32_t uid, const char *token, vmsig_grant *out);
void vmsig_grants_free(vmsig_grants *t);

/* ---- the socket listener ---- */

/*
 * Listen on a UNIX socket at path (created mode 0600). Refuses to replace
 * anything but a stale socket: -EEXIST if path exists and is not a socket,
 * -EADDRINUSE if a live server answers there. Peers are identified by
 * SO_PEERCRED (and an optional HELLO token) and mapped to grants through
 * `grants` (borrowed: must outlive the core or be replaced first).
 * One listener per core; a second call returns -EALREADY.
 * Each connection costs one fd, and at most 2 * max_controls connections
 * exist at once (attached, waiting for a handshake slot, saying a last BYE):
 * -EMFILE if that, plus a reserve of 64 fds for the host, does not fit
 * under RLIMIT_NOFILE (lower max_controls or raise the limit). Admission of
 * connections is described in docs/protocol.rst "Admission".
 * Returns 0 or -errno of socket/bind/listen.
 */
int vmsig_core_listen(vmsig_core *core, const char *path, const vmsig_grants *grants);

#endif /* VMSIG_CORE_H */
