/*
 * kinds.h - the one table of frame kinds (internal to lib/). Each row says,
 * for one kind: its name, who sends it, its descriptor rule, the size of its
 * fixed payload and the cap of its variable tail, the event source and the
 * capability it needs, its exclusive class and the feature that enables it.
 * The codec (wire.c), the core's checks (core.c), the names (event.c, which
 * the helper prints) all read this table; docs/protocol.rst lists the same
 * rows, and tests/unit/test_wire.c checks the table against the spec's rules.
 */
#ifndef VMSIG_LIB_KINDS_H
#define VMSIG_LIB_KINDS_H

#include <stdint.h>
#include "vmsig/vmsig_event.h"

/* Who may send a kind. */
#define VMSIG_WIRE_C2S 1u /* client -> server (HELLO, SUBSCRIBE, CMD_*) */
#define VMSIG_WIRE_S2C 2u /* server -> client (WELCOME, REPLY, BYE, EV_*) */

/* Descriptor rule of a kind. */
#define VMSIG_WIRE_FDS_NONE   0u /* nfds must be 0 */
#define VMSIG_WIRE_FDS_MEMCTX 1u /* 0..VMSIG_WIRE_MAX_FDS read-only fds, fd_index < nfds */

#define VMSIG_SRC_NONE 0xffu /* not an UP event */

typedef struct vmsig_kind_row {
    uint16_t kind;
    uint8_t  dir;      /* VMSIG_WIRE_C2S or VMSIG_WIRE_S2C */
    uint8_t  fds;      /* VMSIG_WIRE_FDS_* */
    uint32_t fixed;    /* fixed payload bytes */
    uint32_t tail_max; /* variable bytes allowed after the fixed part; 0 = none */
    uint8_t  source;   /* UP: VMSIG_SRC_*; else VMSIG_SRC_NONE */
    uint32_t cap;      /* UP: needed to receive; CMD: needed to send (any bit;
                        * ACQUIRE/RELEASE: by class, vmsig_class_caps); 0 none */
    uint32_t cls;      /* CMD: exclusive class (CMD_VM: not for query); 0 none */
    uint64_t feature;  /* VMSIG_FEAT_* that must be negotiated; 0 = base protocol */
    const char *name;
} vmsig_kind_row;

#define VMSIG__KIND_ROWS 25u
extern const vmsig_kind_row vmsig__kind_rows[VMSIG__KIND_ROWS];

/*
 * The row of a kind, NULL if unknown. Rows are grouped by the kind's high
 * byte (0x00 connection, 0x01 SEAM, 0x02 MEMCTX, 0x03 ARB, 0x10 commands)
 * and numbered without holes inside a group, so a lookup is an index,
 * checked against the row it lands on (tests/unit/test_wire.c checks every
 * kind number). Inline: the core looks up every event it publishes.
 */
static inline const vmsig_kind_row *vmsig__kind(uint32_t kind)
{
    /* group -> index of its first row, rows in it, kind number of the first */
    static const struct {
        uint8_t first, count;
        uint16_t base;
    } groups[0x11] = {
        [0x00] = { 0, 5, VMSIG_MSG_HELLO },
        [0x01] = { 5, 7, VMSIG_EV_RUNSTATE },
        [0x02] = { 12, 2, VMSIG_EV_MEMCTX },
        [0x03] = { 14, 1, VMSIG_EV_ARB },
        [0x10] = { 15, 10, VMSIG_CMD_NOP },
    };
    uint32_t g = kind >> 8, off;

    if (g >= sizeof(groups) / sizeof(groups[0]) || kind < groups[g].base) {
        return NULL;
    }
    off = kind - groups[g].base;
    if (off >= groups[g].count || vmsig__kind_rows[groups[g].first + off].kind != kind) {
        return NULL;
    }
    return &vmsig__kind_rows[groups[g].first + off];
}
/* The whole table. */
const vmsig_kind_row *vmsig__kinds(unsigned *n);

/* 1 if kind is in the DOWN command range (0x1000..0x1fff), known or not. */
static inline int vmsig__kind_is_cmd_range(uint32_t kind)
{
    return (kind & 0xf000u) == 0x1000u;
}

#endif /* VMSIG_LIB_KINDS_H */
