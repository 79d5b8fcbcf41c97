/*
 * cmd-snap.c - vmsig-helper snapshot: save, restore, delete and list a VM's
 * in-memory snapshots (CMD_SNAPSHOT), optionally followed by another command
 * on the same connection (--then).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "helper.h"

static const struct {
    const char *name;
    uint32_t op;
} snap_ops[] = {
    { "save", VMSIG_SNAP_SAVE },
    { "restore", VMSIG_SNAP_RESTORE },
    { "delete", VMSIG_SNAP_DELETE },
    { "list", VMSIG_SNAP_LIST },
};

static void print_info(hconn *h, const vmsig_wire_snap_info *in)
{
    char name[VMSIG_SNAP_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%.*s", (int)sizeof(in->name), in->name);
    if (G.json) {
        printf("{\"socket\":%s,\"ep\":%u,\"name\":%s,\"ram_bytes\":%" PRIu64
               ",\"state_bytes\":%u,\"age_ms\":%" PRIu64 ",\"restores\":%u}\n",
               jstr(h->path), h->ep, jstr(name), in->ram_bytes, in->state_bytes, in->age_ms,
               in->restores);
    } else {
        out(h, "%-31s ram %s  state %u B  age %" PRIu64 ".%03" PRIu64 " s  restores %u\n", name,
            human_size(in->ram_bytes), in->state_bytes, in->age_ms / 1000, in->age_ms % 1000,
            in->restores);
    }
}

static void print_list(hconn *h, const vmsig_reply *rep)
{
    vmsig_wire_snap_list head;
    if (rep->len < sizeof(head)) {
        errmsg(h, "snapshot list: short reply (%u bytes)", rep->len);
        h->rc = h->rc ? h->rc : EX_OTHER;
        return;
    }
    memcpy(&head, rep->body, sizeof(head));
    if (!G.json) {
        out(h, "%u snapshot%s (at most %u), %s of %s used\n", head.count,
            head.count == 1 ? "" : "s", head.max, human_size(head.used), human_size(head.limit));
    }
    for (uint32_t i = 0; i < head.count; i++) {
        vmsig_wire_snap_info in;
        size_t off = sizeof(head) + (size_t)i * sizeof(in);
        if (off + sizeof(in) > rep->len) {
            break;
        }
        memcpy(&in, rep->body + off, sizeof(in));
        print_info(h, &in);
    }
}

static void print_result(hconn *h, const char *opname, const vmsig_reply *rep)
{
    vmsig_wire_snap_result res;
    memset(&res, 0, sizeof(res));
    memcpy(&res, rep->body, rep->len < sizeof(res) ? rep->len : sizeof(res));
    char name[VMSIG_SNAP_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%.*s", (int)sizeof(res.info.name), res.info.name);
    if (G.json) {
        printf("{\"socket\":%s,\"ep\":%u,\"ok\":true,\"op\":%s,\"name\":%s,\"generation\":%" PRIu64
               ",\"pages\":%" PRIu64 ",\"stopped_ns\":%" PRIu64 ",\"full\":%s,\"ram_bytes\":%" PRIu64
               ",\"state_bytes\":%u,\"restores\":%u}\n",
               jstr(h->path), h->ep, jstr(opname), jstr(name), res.generation, res.pages,
               res.stopped_ns, res.full ? "true" : "false", res.info.ram_bytes,
               res.info.state_bytes, res.info.restores);
        return;
    }
    if (G.quiet) {
        return;
    }
    if (!strcmp(opname, "delete")) {
        out(h, "deleted '%s' (%s freed)\n", name, human_size(res.info.ram_bytes));
    } else if (!strcmp(opname, "save")) {
        out(h, "saved '%s': %s RAM + %u B device state, vCPUs stopped %" PRIu64 ".%03" PRIu64
               " ms\n", name, human_size(res.info.ram_bytes), res.info.state_bytes,
            res.stopped_ns / 1000000, res.stopped_ns / 1000 % 1000);
    } else {
        out(h, "restored '%s': %" PRIu64 " page%s copied back%s, vCPUs stopped %" PRIu64
               ".%03" PRIu64 " ms, map generation %" PRIu64 "\n", name, res.pages,
            res.pages == 1 ? "" : "s", res.full ? " (full)" : "", res.stopped_ns / 1000000,
            res.stopped_ns / 1000 % 1000, res.generation);
    }
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "run", no_argument, NULL, 'r' },
        { "pause", no_argument, NULL, 'p' },
        { "full", no_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    uint32_t then_state = VMSIG_SNAP_THEN_KEEP, flags = 0;
    int then = 0, opt;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--then")) {
            then = i;
            break;
        }
    }
    int nargs = then ? then : argc;
    while ((opt = getopt_long(nargs, argv, "", lopts, NULL)) != -1) {
        switch (opt) {
        case 'r':
            then_state = VMSIG_SNAP_THEN_RUN;
            break;
        case 'p':
            then_state = VMSIG_SNAP_THEN_PAUSE;
            break;
        case 'f':
            flags |= VMSIG_SNAP_F_FULL;
            break;
        default:
            return usage_error("snapshot", "bad option");
        }
    }
    if (optind >= nargs) {
        return usage_error("snapshot", "expected save, restore, delete or list");
    }
    const char *opname = argv[optind];
    uint32_t op = 0;
    for (size_t i = 0; i < sizeof(snap_ops) / sizeof(snap_ops[0]); i++) {
        if (!strcmp(opname, snap_ops[i].name)) {
            op = snap_ops[i].op;
        }
    }
    if (!op) {
        return usage_error("snapshot", "unknown operation '%s' (save, restore, delete, list)",
                           opname);
    }
    const char *name = optind + 1 < nargs ? argv[optind + 1] : NULL;
    if (op == VMSIG_SNAP_LIST ? name != NULL : (!name || optind + 2 != nargs)) {
        return usage_error("snapshot", op == VMSIG_SNAP_LIST ? "list takes no NAME"
                                                             : "%s needs exactly one NAME",
                           opname);
    }
    if (name) {
        size_t n = strlen(name);
        if (n == 0 || n >= VMSIG_SNAP_NAME_MAX ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                n) {
            return usage_error("snapshot", "bad NAME '%s' (1..%u of A-Z a-z 0-9 . _ -)", name,
                               VMSIG_SNAP_NAME_MAX - 1);
        }
    }
    if ((then_state || flags) && op != VMSIG_SNAP_SAVE && op != VMSIG_SNAP_RESTORE) {
        return usage_error("snapshot", "--run/--pause/--full go with save or restore");
    }
    if (flags && op != VMSIG_SNAP_RESTORE) {
        return usage_error("snapshot", "--full goes with restore");
    }
    const hcmd *next = NULL;
    if (then) {
        if (then + 1 >= argc || !(next = find_cmd(argv[then + 1])) ||
            next->run == cmd_watch) {
            return usage_error("snapshot", "--then needs a command other than watch");
        }
    }

    connect_all(next ? (1u << VMSIG_SRC_MEMCTX) : 0);
    unsigned ok = 0;
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        if (!h->c || h->gone) {
            continue;
        }
        if (!(h->w->features & VMSIG_FEAT_SNAPSHOT)) {
            errmsg(h, "snapshot: the server does not offer snapshots (protocol %u.%u, "
                      "feature SNAPSHOT missing: a vmsig module older than 1.2)",
                   h->w->major, h->w->minor);
            h->rc = h->rc ? h->rc : EX_OTHER;
            continue;
        }
        vmsig_event cmd = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_SNAPSHOT, .endpoint = h->ep };
        cmd.u.snapshot.op = op;
        cmd.u.snapshot.then = then_state;
        cmd.u.snapshot.flags = flags;
        if (name) {
            memcpy(cmd.u.snapshot.name, name, strlen(name));
        }
        vmsig_reply rep = { 0 };
        int r = vmsig_client_call(h->c, &cmd, &rep, G.timeout_ms);
        if (r < 0) {
            fail_reply(h, r, "snapshot", VMSIG_CAP_SNAPSHOT,
                       op == VMSIG_SNAP_LIST ? 0 : VMSIG_CLASS_SNAPSHOT, &rep);
            continue;
        }
        ok++;
        if (op == VMSIG_SNAP_LIST) {
            print_list(h, &rep);
        } else {
            print_result(h, opname, &rep);
        }
        /* MEMCTX (a RESTORE's new map) for a --then read/dump/find */
        vmsig_msg m;
        while (next && vmsig_client_next(h->c, &m, 0) == 0) {
            keep_memctx(h, &m);
        }
    }
    if (next && ok) {
        optind = 0;
        int rc = next->run(argc - then - 1, argv + then + 1);
        if (rc == EX_USAGE) {
            return rc;
        }
    }
    return final_rc(0);
}
