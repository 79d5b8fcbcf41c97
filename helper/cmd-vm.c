/*
 * cmd-vm.c - vmsig-helper: status, the one-shot run/power commands, acquire
 * and release.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "helper.h"

static int usable(const hconn *h)
{
    return h->c && !h->gone;
}

/* ---- status ---- */

int cmd_status(int argc, char **argv)
{
    if (argc > 1) {
        return usage_error("status", "unexpected argument '%s'", argv[1]);
    }
    connect_all(0);
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        vmsig_wire_vminfo vi;
        if (!usable(h)) {
            continue;
        }
        /* The raw call, for the VMINFO_HOST tail when it was negotiated. */
        vmsig_event q;
        vmsig_reply rep;
        memset(&q, 0, sizeof(q));
        q.dir = VMSIG_DIR_DOWN;
        q.kind = VMSIG_CMD_VM;
        q.endpoint = h->ep;
        q.u.cmd.op = VMSIG_VM_QUERY;
        int r = vmsig_client_call(h->c, &q, &rep, G.timeout_ms);
        if (r < 0) {
            fail(h, r, "status", VMSIG_CAP_VM, 0);
            continue;
        }
        memset(&vi, 0, sizeof(vi));
        memcpy(&vi, rep.body, rep.len < sizeof(vi) ? rep.len : sizeof(vi));
        vmsig_wire_vminfo_host host;
        int has_host = rep.len >= sizeof(vi) + sizeof(host);
        memset(&host, 0, sizeof(host));
        if (has_host) {
            memcpy(&host, rep.body + sizeof(vi), sizeof(host));
        }
        char accel[sizeof(host.accel) + 1];
        snprintf(accel, sizeof(accel), "%.*s", (int)sizeof(host.accel), host.accel);
        const vmsig_wire_welcome *wl = vmsig_client_welcome(h->c);
        /* Server strings are NUL padded, not necessarily terminated. */
        char ver[sizeof(vi.version) + 1], name[sizeof(vi.name) + 1];
        snprintf(ver, sizeof(ver), "%.*s", (int)sizeof(vi.version), vi.version);
        snprintf(name, sizeof(name), "%.*s", (int)sizeof(vi.name), vi.name);
        if (G.json) {
            printf("{\"socket\":%s,\"ep\":%u,\"state\":%s,\"running\":%s,\"vcpus\":%u,"
                   "\"ram_size\":%llu,\"version\":%s,\"name\":%s,\"memctx_gen\":%llu,"
                   "\"protocol\":\"%u.%u\",\"features\":%llu",
                   jstr(h->path), vi.endpoint, jstr(vmsig_runstate_name(vi.state)),
                   vi.running ? "true" : "false", vi.vcpus, (unsigned long long)vi.ram_size,
                   jstr(ver), jstr(name), (unsigned long long)vi.memctx_gen, wl->major,
                   wl->minor, (unsigned long long)wl->features);
            if (has_host) {
                printf(",\"pid\":%u,\"accel\":%s", host.pid, jstr(accel));
            }
            printf("}\n");
            continue;
        }
        out(h, "endpoint:   %u\n"
               "state:      %s\n"
               "running:    %s\n"
               "vcpus:      %u\n"
               "ram:        %s (%llu bytes)\n"
               "version:    %s\n"
               "name:       %s\n"
               "memctx gen: %llu%s",
            vi.endpoint, vmsig_runstate_name(vi.state), vi.running ? "yes" : "no", vi.vcpus,
            human_size(vi.ram_size), (unsigned long long)vi.ram_size, *ver ? ver : "-",
            *name ? name : "-", (unsigned long long)vi.memctx_gen,
            vi.memctx_gen ? "" : " (no MEMCTX: guest RAM not shareable?)");
        if (has_host) {
            out(h, "qemu pid:   %u\n"
                   "accel:      %s", host.pid, *accel ? accel : "-");
        }
        out(h, "protocol:   %u.%u, features 0x%llx", wl->major, wl->minor,
            (unsigned long long)wl->features);
    }
    fflush(stdout);
    return final_rc(0);
}

/* ---- stop cont pause resume wakeup powerdown reset quit ---- */

static const struct simple_cmd {
    const char *name;
    uint32_t kind, op, cap, cls;
    const char *done;
} simple_cmds[] = {
    { "stop", VMSIG_CMD_VM, VMSIG_VM_STOP, VMSIG_CAP_VM, VMSIG_CLASS_RUN, "stopped" },
    { "cont", VMSIG_CMD_VM, VMSIG_VM_CONT, VMSIG_CAP_VM, VMSIG_CLASS_RUN, "continued" },
    { "pause", VMSIG_CMD_LIFECYCLE, VMSIG_LC_PAUSE, VMSIG_CAP_LIFECYCLE, VMSIG_CLASS_RUN, "paused" },
    { "resume", VMSIG_CMD_LIFECYCLE, VMSIG_LC_RESUME, VMSIG_CAP_LIFECYCLE, VMSIG_CLASS_RUN, "resumed" },
    { "wakeup", VMSIG_CMD_LIFECYCLE, VMSIG_LC_WAKEUP, VMSIG_CAP_LIFECYCLE, VMSIG_CLASS_RUN, "woken up" },
    { "powerdown", VMSIG_CMD_POWER, VMSIG_PWR_POWERDOWN, VMSIG_CAP_POWER, VMSIG_CLASS_POWER,
      "powerdown requested" },
    { "reset", VMSIG_CMD_POWER, VMSIG_PWR_RESET, VMSIG_CAP_POWER, VMSIG_CLASS_POWER, "reset" },
    { "quit", VMSIG_CMD_POWER, VMSIG_PWR_QUIT, VMSIG_CAP_POWER, VMSIG_CLASS_POWER, "quit" },
};

int cmd_simple(int argc, char **argv)
{
    const struct simple_cmd *sc = NULL;
    for (size_t i = 0; i < sizeof(simple_cmds) / sizeof(simple_cmds[0]); i++) {
        if (!strcmp(argv[0], simple_cmds[i].name)) {
            sc = &simple_cmds[i];
        }
    }
    if (!sc) {
        return usage_error(NULL, "unknown command '%s'", argv[0]);
    }
    if (argc > 1) {
        return usage_error(sc->name, "unexpected argument '%s'", argv[1]);
    }
    connect_all(0);
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        if (!usable(h)) {
            continue;
        }
        vmsig_event cmd = { .dir = VMSIG_DIR_DOWN, .kind = sc->kind, .endpoint = h->ep };
        cmd.u.cmd.op = sc->op;
        vmsig_reply rep = { 0 };
        int r = vmsig_client_call(h->c, &cmd, &rep, G.timeout_ms);
        if (r == -EPIPE && sc->kind == VMSIG_CMD_POWER && sc->op == VMSIG_PWR_QUIT) {
            /* QEMU may close before its reply: that is the quit we asked for. */
            h->gone = 1;
            r = 0;
        }
        if (r < 0) {
            fail_reply(h, r, sc->name, sc->cap, sc->cls, &rep);
            continue;
        }
        done(h, sc->name, sc->done);
    }
    return final_rc(0);
}

/* ---- acquire / release ---- */

static int release_one(hconn *h, uint32_t cls, int quiet_enoent)
{
    int r = vmsig_client_release(h->c, h->ep, cls);
    if (r == -ENOENT) {
        if (!quiet_enoent) {
            errmsg(h, "release: not the owner of %s on endpoint %u (ownership belongs to the "
                      "connection that acquired it)", class_label(cls), h->ep);
            if (!h->rc) {
                h->rc = EX_OTHER;
            }
        }
        return EX_OTHER;
    }
    if (r < 0) {
        return fail(h, r, "release", vmsig_class_caps(cls), cls);
    }
    return 0;
}

int cmd_release(int argc, char **argv)
{
    if (argc != 2) {
        return usage_error("release", "expected one CLASS (input, run, power, memwrite, snapshot)");
    }
    uint32_t cls = class_by_name(argv[1]);
    if (!cls) {
        return usage_error("release", "unknown class '%s' (input, run, power, memwrite, snapshot)", argv[1]);
    }
    connect_all(0);
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        if (usable(h) && !release_one(h, cls, 0)) {
            done(h, "release", "released");
        }
    }
    return final_rc(0);
}

/* Drain what arrived on h; note it if we lost cls. Returns 1 if lost/gone. */
static int hold_check(hconn *h, uint32_t cls)
{
    vmsig_msg m;
    int r;
    while ((r = vmsig_client_next(h->c, &m, 0)) == 0) {
        const vmsig_wire_arb *a = &m.ev.u.arb;
        if (m.ev.kind == VMSIG_EV_ARB && m.ev.endpoint == h->ep && a->cls == cls &&
            a->what == VMSIG_ARB_PREEMPTED && !(m.ev.flags & VMSIG_F_SNAPSHOT)) {
            errmsg(h, "lost %s on endpoint %u: preempted by principal %u", class_label(cls),
                   h->ep, a->by);
            if (!h->rc) {
                h->rc = EX_BUSY;
            }
            return 1;
        }
    }
    if (r != -ETIMEDOUT) {
        fail(h, r, "acquire", 0, 0);
        return 1;
    }
    return 0;
}

int cmd_acquire(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "hold", required_argument, NULL, 'H' },
        { NULL, 0, NULL, 0 },
    };
    int then = 0, opt;
    int64_t hold_ms = -1;
    uint64_t v;

    /* Everything after --then is another command line. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--then")) {
            then = i;
            break;
        }
    }
    int nargs = then ? then : argc;
    while ((opt = getopt_long(nargs, argv, "", lopts, NULL)) != -1) {
        if (opt != 'H' || parse_u64(optarg, &v) < 0 || v > INT32_MAX / 1000) {
            return usage_error("acquire", opt == 'H' ? "bad --hold '%s' (seconds)" : "bad option%s",
                               opt == 'H' ? optarg : "");
        }
        hold_ms = (int64_t)v * 1000;
    }
    if (optind != nargs - 1) {
        return usage_error("acquire", "expected one CLASS (input, run, power, memwrite, snapshot)");
    }
    uint32_t cls = class_by_name(argv[optind]);
    if (!cls) {
        return usage_error("acquire", "unknown class '%s' (input, run, power, memwrite, snapshot)",
                           argv[optind]);
    }
    const hcmd *next = NULL;
    if (then) {
        if (hold_ms >= 0) {
            return usage_error("acquire", "--hold and --then exclude each other");
        }
        if (then + 1 >= argc || !(next = find_cmd(argv[then + 1])) ||
            next->run == cmd_acquire || next->run == cmd_watch) {
            return usage_error("acquire", "--then needs a command other than acquire or watch");
        }
    }

    /* ARB tells us if we are preempted; MEMCTX serves a --then read/dump/find. */
    connect_all((1u << VMSIG_SRC_ARB) | (1u << VMSIG_SRC_MEMCTX));
    unsigned held = 0;
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        if (!usable(h)) {
            continue;
        }
        int r = vmsig_client_acquire(h->c, h->ep, cls);
        if (r < 0) {
            fail(h, r, "acquire", vmsig_class_caps(cls), cls);
            /* No --then command without ownership on this VM. */
            vmsig_client_close(h->c);
            h->c = NULL;
            continue;
        }
        /* The ARB events of our own acquisition (GRANTED, or PREEMPTED by
         * us) come ahead of the reply: skip them, so that a later PREEMPTED
         * can only mean that we lost it. */
        vmsig_msg m;
        while (vmsig_client_next(h->c, &m, 0) == 0) {
            keep_memctx(h, &m); /* for a --then read/dump/find */
        }
        held++;
        if (G.json) {
            done(h, "acquire", NULL);
        }
    }
    if (!held) {
        return final_rc(0);
    }

    if (next) {
        optind = 0;
        int rc = next->run(argc - then - 1, argv + then + 1);
        if (rc == EX_USAGE) {
            return rc;
        }
    } else {
        note(NULL, "acquired %s on %u VM%s; holding %s", class_label(cls), held,
             held > 1 ? "s" : "", hold_ms >= 0 ? "for the given time" : "until interrupted (^C)");
        int64_t deadline = hold_ms >= 0 ? now_ms() + hold_ms : -1;
        struct pollfd *pfd = calloc(G.nconn, sizeof(*pfd));
        if (!pfd) {
            return EX_OTHER;
        }
        while (!g_stop && held) {
            int64_t left = deadline < 0 ? -1 : deadline - now_ms();
            if (deadline >= 0 && left <= 0) {
                break;
            }
            for (unsigned i = 0; i < G.nconn; i++) {
                pfd[i].fd = usable(&G.conns[i]) ? vmsig_client_fd(G.conns[i].c) : -1;
                pfd[i].events = POLLIN;
            }
            /* Buffered events do not show on the fd: drain before sleeping. */
            for (unsigned i = 0; i < G.nconn; i++) {
                if (pfd[i].fd >= 0 && hold_check(&G.conns[i], cls)) {
                    G.conns[i].gone = 1;
                    held--;
                }
            }
            if (held) {
                poll(pfd, G.nconn, left > INT32_MAX ? INT32_MAX : (int)left);
            }
        }
        free(pfd);
    }
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        if (usable(h) && !h->rc) {
            /* Closing would free it as well; releasing says so to observers
             * at once, and tells us if we still owned it. */
            if (!release_one(h, cls, 1) && !next) {
                note(h, "released %s", class_label(cls));
            }
        }
    }
    return final_rc(0);
}
