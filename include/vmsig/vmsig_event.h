/*
 * vmsig_event.h - events (UP: VM -> control) and commands (DOWN: control ->
 * VM), grants and subscriptions: the vocabulary of the seam.
 *
 * An event's inline payload is the wire payload struct of its kind
 * (vmsig_wire.h), so in-process controls and socket controls see the same
 * bytes. Variable-length parts (MEMCTX segments, MEMWRITE data, INPUT text,
 * REPLY bodies) travel out of line through `ool`.
 */
#ifndef VMSIG_EVENT_H
#define VMSIG_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include "vmsig_wire.h"
#include "vmsig_keys.h"

#define VMSIG_DIR_UP   1u /* VM -> control */
#define VMSIG_DIR_DOWN 2u /* control -> VM */

/* Event sources: bit (1u << VMSIG_SRC_x) in a subscription's source_mask. */
#define VMSIG_SRC_SEAM   0u /* VMSIG_EV_RUNSTATE..SNAPSHOT; needs CAP_OBSERVE */
#define VMSIG_SRC_MEMCTX 1u /* VMSIG_EV_MEMCTX, MEMWRITE_DONE; needs CAP_MEMCTX */
#define VMSIG_SRC_ARB    2u /* VMSIG_EV_ARB; needs CAP_OBSERVE */
#define VMSIG_SRC_ALL    ((1u << VMSIG_SRC_SEAM) | (1u << VMSIG_SRC_MEMCTX) | (1u << VMSIG_SRC_ARB))

/* Capability bits of a grant. VMSIG_CAPS(X) expands X(NAME, bit) once per
 * capability: the one list that names, the grants parser and the spec use. */
#define VMSIG_CAP_OBSERVE   0x1u   /* receive SEAM and ARB events */
#define VMSIG_CAP_INPUT     0x2u   /* CMD_INPUT */
#define VMSIG_CAP_LIFECYCLE 0x8u   /* CMD_LIFECYCLE pause/resume/wakeup */
#define VMSIG_CAP_POWER     0x20u  /* CMD_POWER powerdown/reset/quit */
#define VMSIG_CAP_VM        0x40u  /* CMD_VM query/stop/cont */
#define VMSIG_CAP_MEMCTX    0x80u  /* receive MEMCTX (read-only RAM fds) and MEMWRITE_DONE */
#define VMSIG_CAP_MEMWRITE  0x100u /* CMD_MEMWRITE */
#define VMSIG_CAP_CPU       0x200u /* CMD_CPU: read vCPU registers (since 1.0 + VMSIG_FEAT_CPU) */
#define VMSIG_CAP_SNAPSHOT  0x400u /* CMD_SNAPSHOT: save/restore/delete/list in-memory
                                    * snapshots (VMSIG_FEAT_SNAPSHOT) */
#define VMSIG_CAPS(X) \
    X(OBSERVE, VMSIG_CAP_OBSERVE) \
    X(INPUT, VMSIG_CAP_INPUT) \
    X(LIFECYCLE, VMSIG_CAP_LIFECYCLE) \
    X(POWER, VMSIG_CAP_POWER) \
    X(VM, VMSIG_CAP_VM) \
    X(MEMCTX, VMSIG_CAP_MEMCTX) \
    X(MEMWRITE, VMSIG_CAP_MEMWRITE) \
    X(CPU, VMSIG_CAP_CPU) \
    X(SNAPSHOT, VMSIG_CAP_SNAPSHOT)
#define VMSIG__CAP_OR(name, bit) | (bit)
/* Every capability this version knows (what a grant may carry). */
#define VMSIG_CAP_ALL (0u VMSIG_CAPS(VMSIG__CAP_OR))
/* What "caps=all" in a grants file means, pinned forever: the capabilities
 * of protocol 1.0. A capability added later is granted only by its name, so
 * an old grants file never gains a new privilege on upgrade. */
#define VMSIG_CAP_ALL_1_0 0x1ebu
/* Bits of removed capabilities (0x4 CAP_STREAM, 0x10 CAP_MEMREAD): a stale
 * grant carrying them must never alias a new privilege, so they are refused. */
#define VMSIG_CAP_RETIRED   (0x4u | 0x10u)

/* What a control wants to receive; only ever narrows its grant. */
typedef struct vmsig_sub {
    uint32_t source_mask;   /* bits (1u << VMSIG_SRC_*) */
    uint64_t endpoint_mask; /* bits (1ull << endpoint) */
} vmsig_sub;

/* What a control is allowed: set by the host (grants file, SO_PEERCRED). */
typedef struct vmsig_grant {
    uint32_t principal;     /* uid (< 0x80000000), or a token entry's id
                             * (vmsig_token_principal); for auditing and events */
    uint64_t endpoint_mask; /* VMs it may touch */
    uint32_t caps;          /* VMSIG_CAP_* */
    int32_t  priority;      /* for the priority policy; larger wins */
} vmsig_grant;

/*
 * Check a grant before it is used anywhere.
 * Returns 0, -EINVAL if it has a retired bit (VMSIG_CAP_RETIRED) or a bit that
 * is not a capability at all.
 */
int vmsig_grant_check(const vmsig_grant *g);

/*
 * The principal of a grants-file token entry: 0x80000000 | (FNV-1a-32 of the
 * token's bytes & 0x7fffffff). A uid entry's principal is the uid itself
 * (uids >= 0x80000000 are refused), so the two never meet; a grants file in
 * which two tokens would get the same id is refused. A client maps the
 * principal in WELCOME, ARB owner/by and MEMWRITE_DONE writer back to a
 * grants line with this function (or `vmsig-helper grants FILE`,
 * which prints every line's id). 0 for an empty or over-long token.
 */
uint32_t vmsig_token_principal(const char *token);

/* Names for logs and the helper ("running", "io-error", "OBSERVE", ...).
 * Never NULL; unknown values give "unknown" (run states and causes this
 * version does not know give "other"). */
const char *vmsig_runstate_name(uint32_t rs);
const char *vmsig_cause_name(uint32_t sc);
const char *vmsig_kind_name(uint32_t kind);
const char *vmsig_class_name(uint32_t cls);

/* The capabilities that let a control ACQUIRE a class (any one of them):
 * INPUT: INPUT; RUN: VM or LIFECYCLE; POWER: POWER; MEMWRITE: MEMWRITE;
 * SNAPSHOT: SNAPSHOT.
 * 0 for an unknown class. */
uint32_t vmsig_class_caps(uint32_t cls);
const char *vmsig_cap_name(uint32_t cap_bit);

/*
 * One event or command. Borrowed by whoever receives it: copy what must
 * outlive the call.
 */
typedef struct vmsig_event {
    uint32_t dir;       /* VMSIG_DIR_UP / VMSIG_DIR_DOWN */
    uint32_t kind;      /* VMSIG_EV_* (UP) or VMSIG_CMD_* (DOWN) */
    uint32_t endpoint;  /* VM it is about */
    uint32_t flags;     /* VMSIG_F_* */
    uint64_t seq;       /* UP: this control's delivery sequence number (1, 2,
                         * ...), set by the core for each control it delivers
                         * to; a gap of N means N events lost (coalesced).
                         * DOWN: the request id (echoed in the reply). */
    uint64_t ts_ns;     /* UP: CLOCK_MONOTONIC ns, set by the core if 0 */
    union {             /* inline payload, by kind */
        vmsig_wire_seam          seam;     /* VMSIG_EV_RUNSTATE..SHUTDOWN */
        vmsig_wire_memctx        memctx;   /* VMSIG_EV_MEMCTX */
        vmsig_wire_memwrite_done memdone;  /* VMSIG_EV_MEMWRITE_DONE */
        vmsig_wire_arb           arb;      /* VMSIG_EV_ARB */
        vmsig_wire_cmd           cmd;      /* CMD_VM/LIFECYCLE/POWER/ACQUIRE/RELEASE */
        vmsig_wire_input         input;    /* CMD_INPUT */
        vmsig_wire_memwrite      memwrite; /* CMD_MEMWRITE */
        vmsig_wire_snapshot      snapshot; /* CMD_SNAPSHOT */
        vmsig_wire_snap_event    snap;     /* VMSIG_EV_SNAPSHOT */
        uint8_t                  raw[128];
    } u;
    /* Out-of-line payload, borrowed: MEMCTX: nseg vmsig_wire_memseg;
     * CMD_MEMWRITE: len data bytes; CMD_INPUT text: len bytes. */
    const void *ool;
    uint32_t    ool_len;
} vmsig_event;

/* Reply to a DOWN command: status plus an optional body (CMD_VM query:
 * vmsig_wire_vminfo; CMD_CPU REGS: vmsig_wire_cpu_regs). Filled by the
 * core; caller-owned storage. A body is at most VMSIG_REPLY_BODY_MAX_1_0
 * bytes unless a negotiated feature says more (VMSIG_FEAT_CPU). */
#define VMSIG_REPLY_BODY_MAX_1_0 256u
#define VMSIG_REPLY_BODY_MAX     1024u
typedef struct vmsig_reply {
    int32_t  status;   /* 0 or negative errno */
    uint32_t len;      /* body bytes */
    uint8_t  body[VMSIG_REPLY_BODY_MAX];
    /* Set by the core before the backend's command(): nonzero if the
     * command may be answered later (the backend returns -EINPROGRESS and
     * calls vmsig_core_complete(core, ticket, ...) on the loop thread). */
    uint64_t ticket;
} vmsig_reply;

/* Fixed inline payload size of a kind, or -1 if the kind is unknown. */
int vmsig_kind_payload_size(uint32_t kind);

#endif /* VMSIG_EVENT_H */
