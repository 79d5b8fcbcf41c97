/*
 * event.c - the vocabulary of the seam: grant check, names, payload sizes.
 */
#include <errno.h>
#include <stddef.h>
#include "vmsig/vmsig_event.h"

int vmsig_grant_check(const vmsig_grant *g)
{
    if (!g) {
        return -EINVAL;
    }
    if (g->caps & VMSIG_CAP_RETIRED) {
        return -EINVAL;
    }
    if (g->caps & ~VMSIG_CAP_ALL) {
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
    "suspended", "watchdog", "guest-panicked", "colo",
};

/* QAPI ShutdownCause spellings, indexed by VMSIG_SC_*. */
static const char *const cause_names[VMSIG_SC__COUNT] = {
    "none", "host-error", "host-qmp-quit", "host-qmp-system-reset", "host-signal",
    "host-ui", "guest-shutdown", "guest-reset", "guest-panic", "subsystem-reset",
    "snapshot-load",
};

static const char *const class_names[VMSIG_CLASS__COUNT] = {
    NULL, "input", "run", "power", "memwrite",
};

const char *vmsig_runstate_name(uint32_t rs)
{
    return NAME_AT(runstate_names, rs);
}

const char *vmsig_cause_name(uint32_t sc)
{
    return NAME_AT(cause_names, sc);
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
    default:                   return 0;
    }
}

const char *vmsig_cap_name(uint32_t cap_bit)
{
    switch (cap_bit) {
    case VMSIG_CAP_OBSERVE:   return "OBSERVE";
    case VMSIG_CAP_INPUT:     return "INPUT";
    case VMSIG_CAP_LIFECYCLE: return "LIFECYCLE";
    case VMSIG_CAP_POWER:     return "POWER";
    case VMSIG_CAP_VM:        return "VM";
    case VMSIG_CAP_MEMCTX:    return "MEMCTX";
    case VMSIG_CAP_MEMWRITE:  return "MEMWRITE";
    default:                  return "unknown";
    }
}

const char *vmsig_kind_name(uint32_t kind)
{
    switch (kind) {
    case VMSIG_MSG_HELLO:        return "hello";
    case VMSIG_MSG_WELCOME:      return "welcome";
    case VMSIG_MSG_REPLY:        return "reply";
    case VMSIG_MSG_BYE:          return "bye";
    case VMSIG_MSG_SUBSCRIBE:    return "subscribe";
    case VMSIG_EV_RUNSTATE:      return "runstate";
    case VMSIG_EV_RESET:         return "reset";
    case VMSIG_EV_POWERDOWN:     return "powerdown";
    case VMSIG_EV_SUSPEND:       return "suspend";
    case VMSIG_EV_WAKEUP:        return "wakeup";
    case VMSIG_EV_SHUTDOWN:      return "shutdown";
    case VMSIG_EV_MEMCTX:        return "memctx";
    case VMSIG_EV_MEMWRITE_DONE: return "memwrite-done";
    case VMSIG_EV_ARB:           return "arb";
    case VMSIG_CMD_NOP:          return "nop";
    case VMSIG_CMD_VM:           return "vm";
    case VMSIG_CMD_LIFECYCLE:    return "lifecycle";
    case VMSIG_CMD_POWER:        return "power";
    case VMSIG_CMD_INPUT:        return "input";
    case VMSIG_CMD_MEMWRITE:     return "memwrite";
    case VMSIG_CMD_ACQUIRE:      return "acquire";
    case VMSIG_CMD_RELEASE:      return "release";
    default:                     return "unknown";
    }
}

int vmsig_kind_payload_size(uint32_t kind)
{
    switch (kind) {
    case VMSIG_MSG_HELLO:        return (int)sizeof(vmsig_wire_hello);
    case VMSIG_MSG_WELCOME:      return (int)sizeof(vmsig_wire_welcome);
    case VMSIG_MSG_REPLY:        return 0; /* the body is variable */
    case VMSIG_MSG_BYE:          return (int)sizeof(vmsig_wire_bye);
    case VMSIG_MSG_SUBSCRIBE:    return (int)sizeof(vmsig_wire_sub);
    case VMSIG_EV_RUNSTATE:
    case VMSIG_EV_RESET:
    case VMSIG_EV_POWERDOWN:
    case VMSIG_EV_SUSPEND:
    case VMSIG_EV_WAKEUP:
    case VMSIG_EV_SHUTDOWN:      return (int)sizeof(vmsig_wire_seam);
    case VMSIG_EV_MEMCTX:        return (int)sizeof(vmsig_wire_memctx);
    case VMSIG_EV_MEMWRITE_DONE: return (int)sizeof(vmsig_wire_memwrite_done);
    case VMSIG_EV_ARB:           return (int)sizeof(vmsig_wire_arb);
    case VMSIG_CMD_NOP:          return 0;
    case VMSIG_CMD_VM:
    case VMSIG_CMD_LIFECYCLE:
    case VMSIG_CMD_POWER:
    case VMSIG_CMD_ACQUIRE:
    case VMSIG_CMD_RELEASE:      return (int)sizeof(vmsig_wire_cmd);
    case VMSIG_CMD_INPUT:        return (int)sizeof(vmsig_wire_input);
    case VMSIG_CMD_MEMWRITE:     return (int)sizeof(vmsig_wire_memwrite);
    default:                     return -1;
    }
}
