/*
 * vmsig_wire.h - the vmsig wire protocol: the one definition of every frame
 * and payload. Used by the core, the QEMU module, the helper, the client
 * library and the tests; no protocol struct is declared anywhere else.
 * The protocol is specified in docs/protocol.rst.
 *
 * Rules for everything in this file:
 *  - fixed-width fields, little-endian, natural alignment, no enums on the wire;
 *  - every struct size is pinned by a _Static_assert;
 *  - the in-process event (vmsig_event.h) embeds these payload structs as they
 *    are, so a frame's payload and an event's inline payload are byte-identical.
 *    That is why the build refuses big-endian hosts instead of swapping.
 */
#ifndef VMSIG_WIRE_H
#define VMSIG_WIRE_H

#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vmsig's wire structs are used in place; only little-endian hosts are supported"
#endif

/*
 * Protocol version. The major version changes only for an incompatible
 * protocol (none is planned); HELLO with another major is refused with
 * -EPROTONOSUPPORT. The minor version counts spec revisions that only added
 * features: the server answers min(client minor, server minor). What a
 * connection may use is decided by the negotiated feature mask, not by the
 * minor version (docs/protocol.rst "Negotiation").
 */
#define VMSIG_WIRE_MAJOR 1u
#define VMSIG_WIRE_MINOR 2u

/*
 * Feature bits (HELLO.features: offered by the client; WELCOME.features: the
 * intersection with the server's). A feature is used by neither side until
 * it is in WELCOME.features; bits this header does not name are dropped by
 * the server and refused by the client library if a server sets them.
 */
#define VMSIG_FEAT_VMINFO_HOST (1ull << 0) /* CMD_VM query REPLY carries vmsig_wire_vminfo_host */
#define VMSIG_FEAT_CPU         (1ull << 1) /* CMD_CPU: vCPU registers, REPLY bodies up to
                                            * VMSIG_REPLY_BODY_MAX */
#define VMSIG_FEAT_SNAPSHOT    (1ull << 2) /* CMD_SNAPSHOT, EV_SNAPSHOT, class SNAPSHOT
                                            * (protocol 1.2) */
#define VMSIG_FEATURES_KNOWN   (VMSIG_FEAT_VMINFO_HOST | VMSIG_FEAT_CPU | VMSIG_FEAT_SNAPSHOT)

/* Limits (see docs/protocol.rst "Limits"). */
#define VMSIG_WIRE_MAX_PAYLOAD   ((1u << 20) + 4096u) /* largest payload after the header */
#define VMSIG_WIRE_MAX_FDS       16u                /* fds on one frame */
#define VMSIG_MEMWRITE_MAX       (1u << 20)         /* bytes in one CMD_MEMWRITE */
#define VMSIG_TEXT_MAX           1024u              /* bytes of INPUT text */
#define VMSIG_MEMCTX_MAX_SEGS    64u                /* segments in one MEMCTX map */
#define VMSIG_TOKEN_MAX          64u                /* token bytes in HELLO, NUL padded */
#define VMSIG_ENDPOINT_MAX       64u                /* endpoints are 0..63 */

/*
 * Frame kinds. 0x00xx: connection; 0x01xx: UP SEAM events; 0x02xx: UP MEMCTX
 * events; 0x03xx: UP arbitration events; 0x10xx: DOWN commands.
 */
#define VMSIG_MSG_HELLO          0x0001u /* client -> server, first frame */
#define VMSIG_MSG_WELCOME        0x0002u /* server -> client, handshake accepted */
#define VMSIG_MSG_REPLY          0x0003u /* server -> client, answers a command */
#define VMSIG_MSG_BYE            0x0004u /* server -> client, last frame before close */
#define VMSIG_MSG_SUBSCRIBE      0x0005u /* client -> server, change subscription */

#define VMSIG_EV_RUNSTATE        0x0101u /* run state changed (or snapshot) */
#define VMSIG_EV_RESET           0x0102u /* system reset happened */
#define VMSIG_EV_POWERDOWN       0x0103u /* ACPI powerdown was requested */
#define VMSIG_EV_SUSPEND         0x0104u /* guest suspended (S3) */
#define VMSIG_EV_WAKEUP          0x0105u /* guest woke up from suspend */
#define VMSIG_EV_SHUTDOWN        0x0106u /* QEMU is shutting down the VM, with a cause */
#define VMSIG_EV_SNAPSHOT        0x0107u /* an in-memory snapshot was saved, restored or
                                          * deleted (VMSIG_FEAT_SNAPSHOT) */

#define VMSIG_EV_MEMCTX          0x0201u /* guest RAM map + read-only fds */
#define VMSIG_EV_MEMWRITE_DONE   0x0202u /* a CMD_MEMWRITE was applied */

#define VMSIG_EV_ARB             0x0301u /* ownership of (endpoint, class) changed */

#define VMSIG_CMD_NOP            0x1000u /* does nothing; answers status 0 */
#define VMSIG_CMD_VM             0x1001u /* query / stop / cont */
#define VMSIG_CMD_LIFECYCLE      0x1002u /* pause / resume / wakeup */
#define VMSIG_CMD_POWER          0x1003u /* powerdown / reset / quit */
#define VMSIG_CMD_INPUT          0x1004u /* keyboard / pointer */
#define VMSIG_CMD_MEMWRITE       0x1005u /* write guest RAM */
#define VMSIG_CMD_ACQUIRE        0x1006u /* take exclusive (endpoint, class) */
#define VMSIG_CMD_RELEASE        0x1007u /* give it back */
#define VMSIG_CMD_CPU            0x1008u /* vCPU state (VMSIG_FEAT_CPU) */
#define VMSIG_CMD_SNAPSHOT       0x1009u /* in-memory snapshots (VMSIG_FEAT_SNAPSHOT) */

/* Frame header flags (server -> client only; a client frame's flags are 0). */
#define VMSIG_F_SNAPSHOT 0x01u /* UP event re-sent as current state to a new subscriber */
#define VMSIG_F_KNOWN    (VMSIG_F_SNAPSHOT)

/*
 * Every frame: this header, then exactly `len` payload bytes, with exactly
 * `nfds` descriptors attached (SCM_RIGHTS) to the sendmsg() that carries the
 * header's first byte.
 */
typedef struct vmsig_wire_hdr {
    uint16_t kind;     /* VMSIG_MSG_*, VMSIG_EV_*, VMSIG_CMD_* */
    uint8_t  nfds;     /* descriptors attached to this frame */
    uint8_t  flags;    /* VMSIG_F_* */
    uint32_t len;      /* payload bytes after the header, <= VMSIG_WIRE_MAX_PAYLOAD */
    uint64_t id;       /* command/REPLY/HELLO/WELCOME/BYE: request id (BYE: 0);
                        * UP event: this control's delivery sequence number,
                        * 1, 2, 3, ...: a gap of N means N events lost */
    uint64_t ts_ns;    /* UP event: CLOCK_MONOTONIC ns when it happened; else 0 */
    uint32_t endpoint; /* VM the frame is about: a command's target (NOP too:
                        * it must be in the grant); 0 for HELLO, WELCOME, BYE
                        * and SUBSCRIBE (HELLO/SUBSCRIBE: -EPROTO otherwise) */
    int32_t  status;   /* REPLY/BYE: 0 or a negative errno; else 0 */
} vmsig_wire_hdr;
_Static_assert(sizeof(vmsig_wire_hdr) == 32, "wire header size");

/* ---- connection ---- */

/* Subscription (a narrowing only: effective = subscription & grant). */
typedef struct vmsig_wire_sub {
    uint32_t source_mask;   /* bit (1u << VMSIG_SRC_*) per wanted event source */
    uint32_t reserved;      /* 0 */
    uint64_t endpoint_mask; /* bit (1ull << endpoint) per wanted VM */
} vmsig_wire_sub;
_Static_assert(sizeof(vmsig_wire_sub) == 16, "sub size");

typedef struct vmsig_wire_hello {
    uint16_t major;                 /* VMSIG_WIRE_MAJOR */
    uint16_t minor;                 /* the client's VMSIG_WIRE_MINOR */
    uint32_t flags;                 /* 0 */
    uint64_t features;              /* VMSIG_FEAT_* the client can use */
    vmsig_wire_sub sub;             /* requested subscription */
    char     token[VMSIG_TOKEN_MAX];/* optional, NUL padded; empty = identify by uid */
} vmsig_wire_hello;
_Static_assert(sizeof(vmsig_wire_hello) == 96, "hello size");

typedef struct vmsig_wire_welcome {
    uint16_t major;          /* VMSIG_WIRE_MAJOR */
    uint16_t minor;          /* min(HELLO minor, the server's) */
    uint32_t principal;      /* who the server thinks we are (docs: "Principals") */
    uint64_t endpoint_mask;  /* grant: VMs we may touch */
    uint32_t caps;           /* grant: VMSIG_CAP_* */
    int32_t  priority;       /* grant: used by the priority policy */
    vmsig_wire_sub sub;      /* effective subscription (requested & grant) */
    uint32_t max_payload;    /* VMSIG_WIRE_MAX_PAYLOAD; 1040 without CAP_MEMWRITE */
    uint32_t max_fds;        /* VMSIG_WIRE_MAX_FDS */
    uint32_t queue_limit;    /* frames queued for us before coalescing/BYE */
    uint32_t reserved;       /* 0 */
    uint64_t features;       /* negotiated: HELLO features & the server's */
} vmsig_wire_welcome;
_Static_assert(sizeof(vmsig_wire_welcome) == 64, "welcome size");

/* BYE: status says why (e.g. -ENOBUFS slow reader, -ESHUTDOWN server going
 * away, -ETIMEDOUT handshake); text (NUL padded) says it in words. */
typedef struct vmsig_wire_bye {
    char text[120];
} vmsig_wire_bye;
_Static_assert(sizeof(vmsig_wire_bye) == 120, "bye size");

/* ---- UP SEAM ---- */

/* Run states: vmsig's own numbers (the QEMU glue maps QEMU's RunState to
 * them; a state it does not know is VMSIG_RS_OTHER). New states get new
 * numbers at the end; a client shows an unknown number as "other". */
#define VMSIG_RS_DEBUG          0u
#define VMSIG_RS_INMIGRATE      1u
#define VMSIG_RS_INTERNAL_ERROR 2u
#define VMSIG_RS_IO_ERROR       3u
#define VMSIG_RS_PAUSED         4u
#define VMSIG_RS_POSTMIGRATE    5u
#define VMSIG_RS_PRELAUNCH      6u
#define VMSIG_RS_FINISH_MIGRATE 7u
#define VMSIG_RS_RESTORE_VM     8u
#define VMSIG_RS_RUNNING        9u
#define VMSIG_RS_SAVE_VM        10u
#define VMSIG_RS_SHUTDOWN       11u
#define VMSIG_RS_SUSPENDED      12u
#define VMSIG_RS_WATCHDOG       13u
#define VMSIG_RS_GUEST_PANICKED 14u
#define VMSIG_RS_COLO           15u
#define VMSIG_RS_OTHER          16u /* a state this vmsig does not know */
#define VMSIG_RS__COUNT         17u

/* Shutdown/reset causes: vmsig's own numbers, mapped from QEMU's
 * ShutdownCause by the glue; one it does not know is VMSIG_SC_OTHER. */
#define VMSIG_SC_NONE                  0u
#define VMSIG_SC_HOST_ERROR            1u
#define VMSIG_SC_HOST_QMP_QUIT         2u
#define VMSIG_SC_HOST_QMP_SYSTEM_RESET 3u
#define VMSIG_SC_HOST_SIGNAL           4u
#define VMSIG_SC_HOST_UI               5u
#define VMSIG_SC_GUEST_SHUTDOWN        6u
#define VMSIG_SC_GUEST_RESET           7u
#define VMSIG_SC_GUEST_PANIC           8u
#define VMSIG_SC_SUBSYSTEM_RESET       9u
#define VMSIG_SC_SNAPSHOT_LOAD         10u
#define VMSIG_SC_OTHER                 11u /* a cause this vmsig does not know */
#define VMSIG_SC__COUNT                12u

/* Payload of every VMSIG_EV_RUNSTATE/RESET/POWERDOWN/SUSPEND/WAKEUP/SHUTDOWN. */
typedef struct vmsig_wire_seam {
    uint32_t state;   /* VMSIG_RS_*: run state after the event */
    uint32_t cause;   /* RESET/SHUTDOWN: VMSIG_SC_*; else 0 */
    uint32_t running; /* 1 if the vCPUs run */
    uint32_t guest;   /* RESET/SHUTDOWN: 1 if the guest asked for it */
} vmsig_wire_seam;
_Static_assert(sizeof(vmsig_wire_seam) == 16, "seam size");

/* ---- UP MEMCTX ---- */

/* One stretch of guest-physical RAM that lives in fd[fd_index] at offset. */
typedef struct vmsig_wire_memseg {
    uint64_t gpa;      /* guest-physical start */
    uint64_t size;     /* bytes */
    uint64_t offset;   /* offset in the fd */
    uint32_t fd_index; /* index into the frame's fds */
    uint32_t flags;    /* 0 (a client refuses a map with other flags: -EPROTO) */
} vmsig_wire_memseg;
_Static_assert(sizeof(vmsig_wire_memseg) == 32, "memseg size");

/* VMSIG_EV_MEMCTX payload: this struct, then nseg vmsig_wire_memseg, and nfds
 * read-only fds on the frame (nfds == the header's nfds). status != 0 means
 * the map is unavailable (nseg == nfds == 0) and `why` names the fix. */
typedef struct vmsig_wire_memctx {
    uint64_t generation; /* grows by one per published map, starts at 1 */
    uint64_t ram_size;   /* bytes the segments map (the sum of their sizes) */
    uint32_t nseg;       /* segments that follow */
    int32_t  status;     /* 0; -ENODEV guest RAM not shareable; -E2BIG map over
                          * VMSIG_MEMCTX_MAX_SEGS / VMSIG_WIRE_MAX_FDS; other
                          * -errno: the read-only reopen failed */
    char     why[104];   /* NUL padded; set when status != 0 */
} vmsig_wire_memctx;
_Static_assert(sizeof(vmsig_wire_memctx) == 128, "memctx size");

/* VMSIG_EV_MEMWRITE_DONE payload. */
typedef struct vmsig_wire_memwrite_done {
    uint64_t gpa;
    uint64_t len;
    uint64_t generation; /* map the write was validated against */
    uint32_t writer;     /* principal of the control that wrote */
    uint32_t reserved;   /* 0 */
} vmsig_wire_memwrite_done;
_Static_assert(sizeof(vmsig_wire_memwrite_done) == 32, "memwrite_done size");

/* ---- UP arbitration ---- */

#define VMSIG_ARB_GRANTED   1u /* owner acquired it */
#define VMSIG_ARB_PREEMPTED 2u /* owner lost it to `by` */
#define VMSIG_ARB_RELEASED  3u /* owner released it (or died) */

typedef struct vmsig_wire_arb {
    uint32_t cls;   /* VMSIG_CLASS_* */
    uint32_t what;  /* VMSIG_ARB_GRANTED/PREEMPTED/RELEASED */
    uint32_t owner; /* principal that held or now holds it */
    uint32_t by;    /* principal that took it (PREEMPTED), else 0 */
} vmsig_wire_arb;
_Static_assert(sizeof(vmsig_wire_arb) == 16, "arb size");

/* ---- DOWN commands ---- */

/* Exclusive classes for ACQUIRE/RELEASE; a command of an owned class from a
 * control that is not its owner is refused with -EBUSY. */
#define VMSIG_CLASS_INPUT    1u /* CMD_INPUT */
#define VMSIG_CLASS_RUN      2u /* CMD_VM stop/cont, CMD_LIFECYCLE */
#define VMSIG_CLASS_POWER    3u /* CMD_POWER */
#define VMSIG_CLASS_MEMWRITE 4u /* CMD_MEMWRITE */
#define VMSIG_CLASS_SNAPSHOT 5u /* CMD_SNAPSHOT save/restore/delete (VMSIG_FEAT_SNAPSHOT) */
#define VMSIG_CLASS__COUNT   6u

#define VMSIG_VM_QUERY 1u
#define VMSIG_VM_STOP  2u
#define VMSIG_VM_CONT  3u

#define VMSIG_LC_PAUSE  1u
#define VMSIG_LC_RESUME 2u
#define VMSIG_LC_WAKEUP 3u

#define VMSIG_PWR_POWERDOWN 1u
#define VMSIG_PWR_RESET     2u
#define VMSIG_PWR_QUIT      3u

/* Payload of CMD_VM, CMD_LIFECYCLE, CMD_POWER, CMD_ACQUIRE, CMD_RELEASE. */
typedef struct vmsig_wire_cmd {
    uint32_t op;  /* VMSIG_VM_*, VMSIG_LC_*, VMSIG_PWR_*; ACQUIRE/RELEASE: VMSIG_CLASS_* */
    uint32_t arg; /* 0 (reserved: -EINVAL otherwise) */
} vmsig_wire_cmd;
_Static_assert(sizeof(vmsig_wire_cmd) == 8, "cmd size");

/* REPLY body of CMD_VM query. */
typedef struct vmsig_wire_vminfo {
    uint32_t state;       /* VMSIG_RS_* */
    uint32_t running;
    uint32_t vcpus;
    uint32_t endpoint;
    uint64_t ram_size;    /* bytes of RAM the machine was given (-m). Not MEMCTX
                           * ram_size, which counts the bytes its segments map:
                           * less by what QEMU maps over RAM (on pc, 256 KiB of
                           * ROM at 0xc0000-0xfffff), more by hotplugged DIMMs */
    uint64_t memctx_gen;  /* current MEMCTX generation, 0 if none */
    char     version[32]; /* QEMU version, NUL padded */
    char     name[32];    /* VM name (-name), NUL padded */
} vmsig_wire_vminfo;
_Static_assert(sizeof(vmsig_wire_vminfo) == 96, "vminfo size");

/* With VMSIG_FEAT_VMINFO_HOST, follows vmsig_wire_vminfo in the REPLY body. */
typedef struct vmsig_wire_vminfo_host {
    uint32_t pid;        /* QEMU's process id (for /proc/<pid>, perf, gdb) */
    uint32_t reserved;   /* 0 */
    char     accel[16];  /* accelerator: "tcg", "kvm", "qtest", ... NUL padded */
    uint8_t  uuid[16];   /* -uuid, all zero if none was given */
} vmsig_wire_vminfo_host;
_Static_assert(sizeof(vmsig_wire_vminfo_host) == 40, "vminfo_host size");

#define VMSIG_INPUT_KEY  1u /* code = VMSIG_KEY_* (vmsig_keys.h), value = 1 down / 0 up */
#define VMSIG_INPUT_BTN  2u /* code = VMSIG_BTN_*, value = 1 down / 0 up */
#define VMSIG_INPUT_REL  3u /* code = VMSIG_AXIS_*, value = delta */
#define VMSIG_INPUT_ABS  4u /* code = VMSIG_AXIS_*, value = 0..32767 */
#define VMSIG_INPUT_TEXT 5u /* text follows the struct (len bytes of US-ASCII); code, value 0 */

/* Pointer buttons: vmsig's own numbers. */
#define VMSIG_BTN_LEFT        0u
#define VMSIG_BTN_MIDDLE      1u
#define VMSIG_BTN_RIGHT       2u
#define VMSIG_BTN_WHEEL_UP    3u
#define VMSIG_BTN_WHEEL_DOWN  4u
#define VMSIG_BTN_SIDE        5u
#define VMSIG_BTN_EXTRA       6u
#define VMSIG_BTN__COUNT      7u

/* Pointer axes. */
#define VMSIG_AXIS_X 0u
#define VMSIG_AXIS_Y 1u

#define VMSIG_ABS_MAX 32767 /* INPUT_ABS values are 0..VMSIG_ABS_MAX */

/* CMD_INPUT payload: this struct, then `len` bytes of text for INPUT_TEXT. */
typedef struct vmsig_wire_input {
    uint32_t op;    /* VMSIG_INPUT_* */
    uint32_t code;
    int32_t  value;
    uint32_t len;   /* INPUT_TEXT: text bytes that follow (<= VMSIG_TEXT_MAX); else 0 */
} vmsig_wire_input;
_Static_assert(sizeof(vmsig_wire_input) == 16, "input size");

/* ---- CMD_CPU (VMSIG_FEAT_CPU, VMSIG_CAP_CPU) ---- */

#define VMSIG_CPU_REGS 1u /* the vCPU's registers: REPLY body vmsig_wire_cpu_regs */

/* CMD_CPU payload. */
typedef struct vmsig_wire_cpu {
    uint32_t op;    /* VMSIG_CPU_* */
    uint32_t index; /* vCPU index, 0..vcpus-1 (vminfo.vcpus); else -EINVAL */
} vmsig_wire_cpu;
_Static_assert(sizeof(vmsig_wire_cpu) == 8, "cpu size");

/* A segment register as the CPU holds it (descriptor cache). */
typedef struct vmsig_wire_seg {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint16_t attr;  /* access rights: descriptor bits 40..47 and 52..55 (type, S,
                     * DPL, P, AVL, L, D/B, G) as bits 0..7 and 12..15 */
} vmsig_wire_seg;
_Static_assert(sizeof(vmsig_wire_seg) == 16, "seg size");

/* A descriptor table register (GDTR, IDTR). */
typedef struct vmsig_wire_dtr {
    uint64_t base;
    uint32_t limit;
    uint32_t reserved; /* 0 */
} vmsig_wire_dtr;
_Static_assert(sizeof(vmsig_wire_dtr) == 16, "dtr size");

#define VMSIG_ARCH_X86_64 1u

#define VMSIG_CPU_F_HALTED 0x1u /* the vCPU is halted (HLT, waiting for an interrupt) */
#define VMSIG_CPU_F_LMA    0x2u /* long mode active (EFER.LMA) */
#define VMSIG_CPU_F_PAGING 0x4u /* paging on (CR0.PG) */

/* REPLY body of CMD_CPU REGS: x86-64 state for introspection (read-only). */
typedef struct vmsig_wire_cpu_regs {
    uint32_t index;     /* the vCPU */
    uint32_t arch;      /* VMSIG_ARCH_X86_64 */
    uint32_t flags;     /* VMSIG_CPU_F_* */
    uint32_t reserved;  /* 0 */
    uint64_t gpr[16];   /* rax rcx rdx rbx rsp rbp rsi rdi r8 .. r15 (encoding order) */
    uint64_t rip;
    uint64_t rflags;
    uint64_t cr0;
    uint64_t cr2;
    uint64_t cr3;
    uint64_t cr4;
    uint64_t efer;
    uint64_t kernel_gs_base; /* MSR 0xc0000102 (swapgs) */
    vmsig_wire_seg es;
    vmsig_wire_seg cs;
    vmsig_wire_seg ss;
    vmsig_wire_seg ds;
    vmsig_wire_seg fs;       /* fs.base: the FS base */
    vmsig_wire_seg gs;       /* gs.base: the GS base */
    vmsig_wire_seg ldt;
    vmsig_wire_seg tr;
    vmsig_wire_dtr gdt;
    vmsig_wire_dtr idt;
} vmsig_wire_cpu_regs;
_Static_assert(sizeof(vmsig_wire_cpu_regs) == 368, "cpu_regs size");

/* ---- CMD_SNAPSHOT, EV_SNAPSHOT (VMSIG_FEAT_SNAPSHOT, VMSIG_CAP_SNAPSHOT) ---- */

#define VMSIG_SNAP_SAVE    1u /* keep guest RAM + device state under a name (replaces
                               * a snapshot of that name) */
#define VMSIG_SNAP_RESTORE 2u /* put the VM back into a snapshot's state */
#define VMSIG_SNAP_DELETE  3u /* free a snapshot */
#define VMSIG_SNAP_LIST    4u /* REPLY body: vmsig_wire_snap_list + count vmsig_wire_snap_info */

/* The run state SAVE/RESTORE leave the VM in. */
#define VMSIG_SNAP_THEN_KEEP  0u /* as it was before the command */
#define VMSIG_SNAP_THEN_RUN   1u /* running (RESTORE + RUN: an episode reset) */
#define VMSIG_SNAP_THEN_PAUSE 2u /* paused */

#define VMSIG_SNAP_F_FULL  0x1u /* RESTORE: copy every page back, not only the
                                 * ones written since the snapshot */
#define VMSIG_SNAP_F_KNOWN VMSIG_SNAP_F_FULL

#define VMSIG_SNAP_NAME_MAX 32u /* name bytes incl. the NUL: 1..31 of [A-Za-z0-9._-] */
#define VMSIG_SNAP_MAX      16u /* snapshots one VM keeps at once */

/* CMD_SNAPSHOT payload. */
typedef struct vmsig_wire_snapshot {
    uint32_t op;       /* VMSIG_SNAP_* */
    uint32_t then;     /* SAVE/RESTORE: VMSIG_SNAP_THEN_*; else 0 */
    uint32_t flags;    /* VMSIG_SNAP_F_* (RESTORE only); else 0 */
    uint32_t reserved; /* 0 */
    char     name[VMSIG_SNAP_NAME_MAX]; /* NUL padded; LIST: all zero */
} vmsig_wire_snapshot;
_Static_assert(sizeof(vmsig_wire_snapshot) == 48, "snapshot size");

/* One snapshot. */
typedef struct vmsig_wire_snap_info {
    char     name[VMSIG_SNAP_NAME_MAX]; /* NUL padded */
    uint64_t ram_bytes;   /* guest RAM it holds (its share of snapshot-limit) */
    uint64_t age_ms;      /* since its SAVE */
    uint32_t state_bytes; /* device state (QEMU's vmstate without RAM) */
    uint32_t restores;    /* RESTOREs of it so far */
} vmsig_wire_snap_info;
_Static_assert(sizeof(vmsig_wire_snap_info) == 56, "snap_info size");

/* REPLY body of SAVE, RESTORE and DELETE. */
typedef struct vmsig_wire_snap_result {
    vmsig_wire_snap_info info; /* the snapshot (DELETE: as it was) */
    uint64_t generation;  /* MEMCTX generation after the command (RESTORE: a new one) */
    uint64_t pages;       /* SAVE: pages copied; RESTORE: pages copied back */
    uint64_t stopped_ns;  /* how long the vCPUs were stopped for it */
    uint32_t full;        /* RESTORE: 1 if every page was copied back */
    uint32_t reserved;    /* 0 */
} vmsig_wire_snap_result;
_Static_assert(sizeof(vmsig_wire_snap_result) == 88, "snap_result size");

/* REPLY body of LIST: this, then count vmsig_wire_snap_info (oldest first). */
typedef struct vmsig_wire_snap_list {
    uint32_t count;
    uint32_t max;   /* VMSIG_SNAP_MAX */
    uint64_t used;  /* bytes all snapshots hold (RAM + device state) */
    uint64_t limit; /* the object's snapshot-limit */
} vmsig_wire_snap_list;
_Static_assert(sizeof(vmsig_wire_snap_list) == 24, "snap_list size");
_Static_assert(sizeof(vmsig_wire_snap_list) + VMSIG_SNAP_MAX * sizeof(vmsig_wire_snap_info) <=
               1024, "a full LIST fits a REPLY body");

/* VMSIG_EV_SNAPSHOT payload. */
typedef struct vmsig_wire_snap_event {
    uint32_t what;       /* VMSIG_SNAP_SAVE, _RESTORE or _DELETE */
    uint32_t by;         /* principal of the control that sent the command */
    uint64_t generation; /* MEMCTX generation after it: after a RESTORE a new
                          * map was published, and every page may differ */
    char     name[VMSIG_SNAP_NAME_MAX];
} vmsig_wire_snap_event;
_Static_assert(sizeof(vmsig_wire_snap_event) == 48, "snap_event size");

/* CMD_MEMWRITE payload: this struct, then `len` data bytes (<= VMSIG_MEMWRITE_MAX). */
typedef struct vmsig_wire_memwrite {
    uint64_t gpa;
    uint32_t len;   /* data bytes that follow, 1..VMSIG_MEMWRITE_MAX */
    uint32_t flags; /* 0 (reserved: -EINVAL otherwise) */
} vmsig_wire_memwrite;
_Static_assert(sizeof(vmsig_wire_memwrite) == 16, "memwrite size");

#endif /* VMSIG_WIRE_H */
