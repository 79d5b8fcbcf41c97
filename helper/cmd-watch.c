/*
 * cmd-watch.c - vmsig-helper watch: stream UP events from one or more VMs,
 * one line (or JSON object) per event.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "helper.h"

static const char *arb_what(uint32_t what)
{
    switch (what) {
    case VMSIG_ARB_GRANTED: return "granted";
    case VMSIG_ARB_PREEMPTED: return "preempted";
    case VMSIG_ARB_RELEASED: return "released";
    }
    return "unknown";
}

const char *snap_what(uint32_t what)
{
    switch (what) {
    case VMSIG_SNAP_SAVE: return "saved";
    case VMSIG_SNAP_RESTORE: return "restored";
    case VMSIG_SNAP_DELETE: return "deleted";
    }
    return "unknown";
}

static void print_json(const hconn *h, const vmsig_msg *m)
{
    const vmsig_event *ev = &m->ev;
    const char *kind = up_kind_label(ev->kind);
    char kbuf[16];

    if (!kind) {
        snprintf(kbuf, sizeof(kbuf), "0x%04x", ev->kind);
        kind = kbuf;
    }
    printf("{\"socket\":%s,\"seq\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"ep\":%u,\"ts_ns\":%" PRIu64
           ",\"kind\":%s,\"snapshot\":%s",
           jstr(h->path), ev->seq, m->lost, ev->endpoint, ev->ts_ns, jstr(kind),
           ev->flags & VMSIG_F_SNAPSHOT ? "true" : "false");
    switch (ev->kind) {
    case VMSIG_EV_RUNSTATE: case VMSIG_EV_RESET: case VMSIG_EV_POWERDOWN:
    case VMSIG_EV_SUSPEND: case VMSIG_EV_WAKEUP: case VMSIG_EV_SHUTDOWN: {
        const vmsig_wire_seam *s = &ev->u.seam;
        printf(",\"state\":%s,\"running\":%s,\"cause\":%s,\"guest\":%s",
               jstr(vmsig_runstate_name(s->state)), s->running ? "true" : "false",
               jstr(vmsig_cause_name(s->cause)), s->guest ? "true" : "false");
        break;
    }
    case VMSIG_EV_MEMCTX: {
        const vmsig_wire_memctx *mc = &ev->u.memctx;
        char why[sizeof(mc->why) + 1];
        snprintf(why, sizeof(why), "%.*s", (int)sizeof(mc->why), mc->why);
        printf(",\"generation\":%" PRIu64 ",\"ram_size\":%" PRIu64 ",\"nseg\":%u,\"status\":%d",
               mc->generation, mc->ram_size, mc->nseg, mc->status);
        if (mc->status) {
            printf(",\"why\":%s", jstr(why));
        }
        printf(",\"segs\":[");
        const vmsig_wire_memseg *sg = ev->ool;
        for (uint32_t i = 0; sg && i < mc->nseg && (i + 1) * sizeof(*sg) <= ev->ool_len; i++) {
            printf("%s{\"gpa\":%" PRIu64 ",\"size\":%" PRIu64 ",\"offset\":%" PRIu64
                   ",\"fd_index\":%u}", i ? "," : "", sg[i].gpa, sg[i].size, sg[i].offset,
                   sg[i].fd_index);
        }
        printf("]");
        break;
    }
    case VMSIG_EV_MEMWRITE_DONE: {
        const vmsig_wire_memwrite_done *d = &ev->u.memdone;
        printf(",\"gpa\":%" PRIu64 ",\"len\":%" PRIu64 ",\"generation\":%" PRIu64
               ",\"writer\":%u", d->gpa, d->len, d->generation, d->writer);
        break;
    }
    case VMSIG_EV_SNAPSHOT: {
        const vmsig_wire_snap_event *s = &ev->u.snap;
        char name[VMSIG_SNAP_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%.*s", (int)sizeof(s->name), s->name);
        printf(",\"what\":%s,\"name\":%s,\"by\":%u,\"generation\":%" PRIu64,
               jstr(snap_what(s->what)), jstr(name), s->by, s->generation);
        break;
    }
    case VMSIG_EV_ARB: {
        const vmsig_wire_arb *a = &ev->u.arb;
        printf(",\"class\":%s,\"what\":%s,\"owner\":%u,\"by\":%u", jstr(class_label(a->cls)),
               jstr(arb_what(a->what)), a->owner, a->by);
        break;
    }
    }
    printf("}\n");
}

void print_event(const hconn *h, const vmsig_msg *m)
{
    const vmsig_event *ev = &m->ev;
    const char *kind = up_kind_label(ev->kind);
    const char *snap = ev->flags & VMSIG_F_SNAPSHOT ? " [snapshot]" : "";
    char head[64];

    if (G.json) {
        print_json(h, m);
        fflush(stdout);
        return;
    }
    if (m->lost) {
        /* A gap in this control's delivery seq: the server coalesced them. */
        out(h, "seq=%" PRIu64 " LOST %" PRIu64 " event%s before this one (slow reader)",
            ev->seq, m->lost, m->lost == 1 ? "" : "s");
    }
    snprintf(head, sizeof(head), "seq=%" PRIu64 " ep=%u", ev->seq, ev->endpoint);
    switch (ev->kind) {
    case VMSIG_EV_RUNSTATE: case VMSIG_EV_RESET: case VMSIG_EV_POWERDOWN:
    case VMSIG_EV_SUSPEND: case VMSIG_EV_WAKEUP: case VMSIG_EV_SHUTDOWN: {
        const vmsig_wire_seam *s = &ev->u.seam;
        char why[80] = "";
        if (s->cause || s->guest) {
            snprintf(why, sizeof(why), " (reason %s%s)", vmsig_cause_name(s->cause),
                     s->guest ? ", by guest" : "");
        }
        if (ev->kind == VMSIG_EV_RUNSTATE) {
            out(h, "%s RUNSTATE %s%s%s", head, vmsig_runstate_name(s->state), why, snap);
        } else {
            out(h, "%s %s%s state=%s%s", head, kind, why, vmsig_runstate_name(s->state), snap);
        }
        break;
    }
    case VMSIG_EV_MEMCTX: {
        const vmsig_wire_memctx *mc = &ev->u.memctx;
        if (mc->status) {
            out(h, "%s MEMCTX gen=%" PRIu64 " unavailable: %.*s (%s)%s", head, mc->generation,
                (int)sizeof(mc->why), mc->why, strerror(-mc->status), snap);
            break;
        }
        char segs[512];
        size_t n = 0;
        const vmsig_wire_memseg *sg = ev->ool;
        segs[0] = 0;
        for (uint32_t i = 0; sg && i < mc->nseg && (i + 1) * sizeof(*sg) <= ev->ool_len &&
                             n < sizeof(segs) - 64; i++) {
            n += (size_t)snprintf(segs + n, sizeof(segs) - n, "%s0x%" PRIx64 "+%s",
                                  i ? " " : " [", sg[i].gpa, human_size(sg[i].size));
        }
        out(h, "%s MEMCTX gen=%" PRIu64 " ram=%s segs=%u%s%s%s", head, mc->generation,
            human_size(mc->ram_size), mc->nseg, segs, n ? "]" : "", snap);
        break;
    }
    case VMSIG_EV_MEMWRITE_DONE: {
        const vmsig_wire_memwrite_done *d = &ev->u.memdone;
        out(h, "%s MEMWRITE_DONE gpa=0x%" PRIx64 " len=%" PRIu64 " by uid %u gen %" PRIu64 "%s",
            head, d->gpa, d->len, d->writer, d->generation, snap);
        break;
    }
    case VMSIG_EV_SNAPSHOT: {
        const vmsig_wire_snap_event *s = &ev->u.snap;
        out(h, "%s SNAPSHOT %s '%.*s' by %u gen %" PRIu64 "%s", head, snap_what(s->what),
            (int)sizeof(s->name), s->name, s->by, s->generation, snap);
        break;
    }
    case VMSIG_EV_ARB: {
        const vmsig_wire_arb *a = &ev->u.arb;
        if (a->what == VMSIG_ARB_PREEMPTED) {
            out(h, "%s ARB %s preempted owner=%u by=%u%s", head, class_label(a->cls), a->owner,
                a->by, snap);
        } else {
            out(h, "%s ARB %s %s owner=%u%s", head, class_label(a->cls), arb_what(a->what),
                a->owner, snap);
        }
        break;
    }
    default:
        out(h, "%s kind=0x%04x%s", head, ev->kind, snap);
        break;
    }
    fflush(stdout);
}

static int parse_sources(const char *s, uint32_t *mask)
{
    char *copy = strdup(s), *save = NULL;
    *mask = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcasecmp(t, "seam")) {
            *mask |= 1u << VMSIG_SRC_SEAM;
        } else if (!strcasecmp(t, "memctx")) {
            *mask |= 1u << VMSIG_SRC_MEMCTX;
        } else if (!strcasecmp(t, "arb")) {
            *mask |= 1u << VMSIG_SRC_ARB;
        } else if (!strcasecmp(t, "all")) {
            *mask |= VMSIG_SRC_ALL;
        } else {
            free(copy);
            return -EINVAL;
        }
    }
    free(copy);
    return *mask ? 0 : -EINVAL;
}

int cmd_watch(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "count", required_argument, NULL, 'n' },
        { "until", required_argument, NULL, 'u' },
        { "live", no_argument, NULL, 'l' },
        { "source", required_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t count = 0, seen = 0;
    uint32_t until = 0, sources = VMSIG_SRC_ALL;
    int live = 0, opt, reached = 0;

    while ((opt = getopt_long(argc, argv, "n:", lopts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            if (parse_u64(optarg, &count) < 0 || !count) {
                return usage_error("watch", "bad --count '%s'", optarg);
            }
            break;
        case 'u':
            if (!(until = up_kind_by_name(optarg))) {
                return usage_error("watch", "unknown event kind '%s' (RUNSTATE, RESET, POWERDOWN, "
                                   "SUSPEND, WAKEUP, SHUTDOWN, MEMCTX, MEMWRITE_DONE, ARB)", optarg);
            }
            break;
        case 'l':
            live = 1;
            break;
        case 'S':
            if (parse_sources(optarg, &sources) < 0) {
                return usage_error("watch", "bad --source '%s' (seam,memctx,arb)", optarg);
            }
            break;
        default:
            return usage_error("watch", "bad option");
        }
    }
    if (optind < argc) {
        return usage_error("watch", "unexpected argument '%s'", argv[optind]);
    }

    unsigned live_conns = connect_all(sources);
    for (unsigned i = 0; i < G.nconn; i++) {
        const hconn *h = &G.conns[i];
        if (h->c && !(h->w->caps & (VMSIG_CAP_OBSERVE | VMSIG_CAP_MEMCTX))) {
            note(h, "note: the grant (%s) has neither OBSERVE nor MEMCTX: no events will come",
                 caps_string(h->w->caps));
        }
    }
    struct pollfd *pfd = calloc(G.nconn ? G.nconn : 1, sizeof(*pfd));
    if (!pfd) {
        return EX_OTHER;
    }
    while (live_conns && !g_stop && !reached) {
        for (unsigned i = 0; i < G.nconn && !reached; i++) {
            hconn *h = &G.conns[i];
            vmsig_msg m;
            int r;
            pfd[i].fd = -1;
            pfd[i].events = POLLIN;
            if (!h->c || h->gone) {
                continue;
            }
            /* The client may hold several frames from one read(): drain. */
            while (!reached && (r = vmsig_client_next(h->c, &m, 0)) == 0) {
                int snap = !!(m.ev.flags & VMSIG_F_SNAPSHOT);
                if (snap && live) {
                    continue;
                }
                print_event(h, &m);
                seen++;
                if ((count && seen >= count) || (until && !snap && m.ev.kind == until)) {
                    reached = 1;
                }
            }
            if (reached) {
                break;
            }
            if (r == -EPIPE) {
                const char *text = "";
                int st = vmsig_client_bye(h->c, &text);
                h->gone = 1;
                live_conns--;
                errmsg(h, "VM gone: %s%s%s%s", text && *text ? text : "connection closed",
                       st ? " (" : "", st ? strerror(-st) : "", st ? ")" : "");
                if (G.json) {
                    printf("{\"socket\":%s,\"ep\":%u,\"kind\":\"BYE\",\"status\":%d,\"text\":%s}\n",
                           jstr(h->path), h->ep, st, jstr(text));
                    fflush(stdout);
                }
                if (!h->rc) {
                    h->rc = EX_GONE;
                }
            } else if (r != -ETIMEDOUT) {
                fail(h, r, "watch", 0, 0);
                h->gone = 1;
                live_conns--;
            } else {
                pfd[i].fd = vmsig_client_fd(h->c);
            }
        }
        if (!reached && live_conns && !g_stop) {
            poll(pfd, G.nconn, -1);
        }
    }
    free(pfd);
    if (reached || g_stop) {
        /* Stopped as asked: VMs that left on the way are not a failure, a
         * socket we never reached still is. */
        for (unsigned i = 0; i < G.nconn; i++) {
            if (G.conns[i].rc && G.conns[i].rc != EX_GONE) {
                return G.conns[i].rc;
            }
        }
        return EX_OK;
    }
    return final_rc(0);
}
