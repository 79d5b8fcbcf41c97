/*
 * event.c - the vocabulary of the seam: grant check, names, payload sizes.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include "kinds.h"
#include "vmsig/vmsig_keys.h"

int vmsig_grant_check(const vmsig_grant *g)
{
    if (!g) {
        return -EINVAL;
    }
    if (g->caps & VMSIG_CAP_RETIRED) {
        return -EINVAL;
    }
    if (g->caps & ~(uint32_t)VMSIG_CAP_ALL) {
        return -EINVAL;
    }
    return 0;
}

#define NAME_AT(table, i) \
    ((i) < sizeof(table) / sizeof((table)[0]) && (table)[i] ? (table)[i] : "unknown")

/* QAPI RunState spellings, indexed by VMSIG_RS_*. */
static const char *const runstate_names[VMSIG_RS__COUNT] = {
    "debug", "inmigrate", "internal-error", "io-error", "paused", "postmigrate",
    "prelaunch", "finish-migrate", "restore-vm", "running", "save-vm", "shutdown",
    "suspended", "watchdog", "guest-panicked", "colo", "other",
};

/* QAPI ShutdownCause spellings, indexed by VMSIG_SC_*. */
static const char *const cause_names[VMSIG_SC__COUNT] = {
    "none", "host-error", "host-qmp-quit", "host-qmp-system-reset", "host-signal",
    "host-ui", "guest-shutdown", "guest-reset", "guest-panic", "subsystem-reset",
    "snapshot-load", "other",
};

static const char *const class_names[VMSIG_CLASS__COUNT] = {
    NULL, "input", "run", "power", "memwrite", "snapshot",
};

const char *vmsig_runstate_name(uint32_t rs)
{
    return rs < VMSIG_RS__COUNT ? runstate_names[rs] : "other";
}

const char *vmsig_cause_name(uint32_t sc)
{
    return sc < VMSIG_SC__COUNT ? cause_names[sc] : "other";
}

const char *vmsig_class_name(uint32_t cls)
{
    return NAME_AT(class_names, cls);
}

uint32_t vmsig_class_caps(uint32_t cls)
{
    switch (cls) {
    case VMSIG_CLASS_INPUT:    return VMSIG_CAP_INPUT;
    case VMSIG_CLASS_RUN:      return VMSIG_CAP_VM | VMSIG_CAP_LIFECYCLE;
    case VMSIG_CLASS_POWER:    return VMSIG_CAP_POWER;
    case VMSIG_CLASS_MEMWRITE: return VMSIG_CAP_MEMWRITE;
    case VMSIG_CLASS_SNAPSHOT: return VMSIG_CAP_SNAPSHOT;
    default:                   return 0;
    }
}

const char *vmsig_cap_name(uint32_t cap_bit)
{
#define CAP_CASE(name, bit) \
    case bit:               \
        return #name;
    switch (cap_bit) {
        VMSIG_CAPS(CAP_CASE)
    default:
        return "unknown";
    }
#undef CAP_CASE
}

uint32_t vmsig_token_principal(const char *token)
{
    uint32_t h = 2166136261u; /* FNV-1a 32 */
    size_t len = token ? strnlen(token, VMSIG_TOKEN_MAX + 1) : 0;

    if (len == 0 || len > VMSIG_TOKEN_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)token[i];
        h *= 16777619u;
    }
    return 0x80000000u | (h & 0x7fffffffu);
}

/* ---- key names (vmsig_keys.h) ---- */

static const struct {
    const char *name;
    uint16_t code;
} key_rows[] = {
#define KEY_ROW(name, code) { #name, code },
    VMSIG_KEYS(KEY_ROW)
#undef KEY_ROW
};

const char *vmsig_key_name(uint32_t code)
{
    for (size_t i = 0; i < sizeof(key_rows) / sizeof(key_rows[0]); i++) {
        if (key_rows[i].code == code) {
            return key_rows[i].name;
        }
    }
    return NULL;
}

int vmsig_key_by_name(const char *name)
{
    for (size_t i = 0; name && i < sizeof(key_rows) / sizeof(key_rows[0]); i++) {
        if (strcasecmp(key_rows[i].name, name) == 0) {
            return key_rows[i].code;
        }
    }
    return -1;
}

#define SZ(t) ((uint32_t)sizeof(t))
#define NOSRC VMSIG_SRC_NONE

/* The one table of kinds (kinds.h). Columns: kind, dir, fds, fixed, tail_max,
 * source, cap, class, feature, name. */
const vmsig_kind_row vmsig__kind_rows[VMSIG__KIND_ROWS] = {
    { VMSIG_MSG_HELLO, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_hello), 0,
      NOSRC, 0, 0, 0, "hello" },
    { VMSIG_MSG_WELCOME, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_welcome), 0,
      NOSRC, 0, 0, 0, "welcome" },
    { VMSIG_MSG_REPLY, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, 0, VMSIG_REPLY_BODY_MAX,
      NOSRC, 0, 0, 0, "reply" },
    { VMSIG_MSG_BYE, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_bye), 0,
      NOSRC, 0, 0, 0, "bye" },
    { VMSIG_MSG_SUBSCRIBE, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_sub), 0,
      NOSRC, 0, 0, 0, "subscribe" },
    { VMSIG_EV_RUNSTATE, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_seam), 0,
      VMSIG_SRC_SEAM, VMSIG_CAP_OBSERVE, 0, 0, "runstate" },
    { VMSIG_EV_RESET, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_seam), 0,
      VMSIG_SRC_SEAM, VMSIG_CAP_OBSERVE, 0, 0, "reset" },
    { VMSIG_EV_POWERDOWN, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_seam), 0,
      VMSIG_SRC_SEAM, VMSIG_CAP_OBSERVE, 0, 0, "powerdown" },
    { VMSIG_EV_SUSPEND, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_seam), 0,
      VMSIG_SRC_SEAM, VMSIG_CAP_OBSERVE, 0, 0, "suspend" },
    { VMSIG_EV_WAKEUP, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_seam), 0,
      VMSIG_SRC_SEAM, VMSIG_CAP_OBSERVE, 0, 0, "wakeup" },
    { VMSIG_EV_SHUTDOWN, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_seam), 0,
      VMSIG_SRC_SEAM, VMSIG_CAP_OBSERVE, 0, 0, "shutdown" },
    { VMSIG_EV_SNAPSHOT, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_snap_event), 0,
      VMSIG_SRC_SEAM, VMSIG_CAP_OBSERVE, 0, VMSIG_FEAT_SNAPSHOT, "snapshot" },
    { VMSIG_EV_MEMCTX, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_MEMCTX, SZ(vmsig_wire_memctx),
      VMSIG_MEMCTX_MAX_SEGS * SZ(vmsig_wire_memseg), VMSIG_SRC_MEMCTX, VMSIG_CAP_MEMCTX, 0, 0,
      "memctx" },
    { VMSIG_EV_MEMWRITE_DONE, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE,
      SZ(vmsig_wire_memwrite_done), 0, VMSIG_SRC_MEMCTX, VMSIG_CAP_MEMCTX, 0, 0,
      "memwrite-done" },
    { VMSIG_EV_ARB, VMSIG_WIRE_S2C, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_arb), 0,
      VMSIG_SRC_ARB, VMSIG_CAP_OBSERVE, 0, 0, "arb" },
    { VMSIG_CMD_NOP, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, 0, 0, NOSRC, 0, 0, 0, "nop" },
    { VMSIG_CMD_VM, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_cmd), 0, NOSRC,
      VMSIG_CAP_VM, VMSIG_CLASS_RUN, 0, "vm" },
    { VMSIG_CMD_LIFECYCLE, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_cmd), 0, NOSRC,
      VMSIG_CAP_LIFECYCLE, VMSIG_CLASS_RUN, 0, "lifecycle" },
    { VMSIG_CMD_POWER, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_cmd), 0, NOSRC,
      VMSIG_CAP_POWER, VMSIG_CLASS_POWER, 0, "power" },
    { VMSIG_CMD_INPUT, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_input),
      VMSIG_TEXT_MAX, NOSRC, VMSIG_CAP_INPUT, VMSIG_CLASS_INPUT, 0, "input" },
    { VMSIG_CMD_MEMWRITE, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_memwrite),
      VMSIG_MEMWRITE_MAX, NOSRC, VMSIG_CAP_MEMWRITE, VMSIG_CLASS_MEMWRITE, 0, "memwrite" },
    { VMSIG_CMD_ACQUIRE, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_cmd), 0, NOSRC,
      0, 0, 0, "acquire" },
    { VMSIG_CMD_RELEASE, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_cmd), 0, NOSRC,
      0, 0, 0, "release" },
    { VMSIG_CMD_CPU, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_cpu), 0, NOSRC,
      VMSIG_CAP_CPU, 0, VMSIG_FEAT_CPU, "cpu" },
    { VMSIG_CMD_SNAPSHOT, VMSIG_WIRE_C2S, VMSIG_WIRE_FDS_NONE, SZ(vmsig_wire_snapshot), 0,
      NOSRC, VMSIG_CAP_SNAPSHOT, VMSIG_CLASS_SNAPSHOT, VMSIG_FEAT_SNAPSHOT, "snapshot" },
};

_Static_assert(sizeof(vmsig__kind_rows) / sizeof(vmsig__kind_rows[0]) == VMSIG__KIND_ROWS,
               "kinds.h's row count matches the table");

const vmsig_kind_row *vmsig__kinds(unsigned *n)
{
    *n = VMSIG__KIND_ROWS;
    return vmsig__kind_rows;
}

const char *vmsig_kind_name(uint32_t kind)
{
    const vmsig_kind_row *k = vmsig__kind(kind);
    return k ? k->name : "unknown";
}

int vmsig_kind_payload_size(uint32_t kind)
{
    const vmsig_kind_row *k = vmsig__kind(kind);
    return k ? (int)k->fixed : -1;
}

_Static_assert(VMSIG_CAP_ALL_1_0 == (VMSIG_CAP_OBSERVE | VMSIG_CAP_INPUT | VMSIG_CAP_LIFECYCLE |
                                     VMSIG_CAP_POWER | VMSIG_CAP_VM | VMSIG_CAP_MEMCTX |
                                     VMSIG_CAP_MEMWRITE),
               "caps=all is pinned to the capabilities of protocol 1.0");
_Static_assert((VMSIG_CAP_ALL & VMSIG_CAP_RETIRED) == 0, "retired bits are never reused");
