/*
 * bench-proxy.c - SELF-TEST ONLY: a stand-in vmsig server outside QEMU, so
 * the vmsig half of `vmsig-bench vm` can be exercised before (or without)
 * the QEMU module. Never a measurement of vmsig-in-QEMU.
 *
 *   vmsig-bench proxy --pid QEMU_PID --path SOCK --ram-size BYTES
 *
 * A core listening on SOCK with a backend that answers CMD_VM query, fakes
 * stop/cont (publishes the RUNSTATE event without touching QEMU), writes
 * CMD_MEMWRITE through /proc/PID/mem, and publishes one MEMCTX: QEMU's RAM
 * memfd reopened read-only through /proc/PID/fd/N. Runs until SIGTERM.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmsig/vmsig_core.h>
#include "bench.h"

typedef struct proxy {
    vmsig_core *core;
    int memfd;       /* /proc/PID/mem */
    uint64_t hva;    /* guest RAM in QEMU */
    uint64_t ram_size;
    int running;
} proxy;

static volatile int stop_flag;

static void on_term(int sig)
{
    stop_flag = 1;
}

static int proxy_command(void *opaque, const vmsig_event *cmd, uint32_t principal,
                         vmsig_reply *reply)
{
    proxy *p = opaque;

    switch (cmd->kind) {
    case VMSIG_CMD_VM:
        if (cmd->u.cmd.op == VMSIG_VM_QUERY) {
            vmsig_wire_vminfo vi = { .state = p->running ? VMSIG_RS_RUNNING : VMSIG_RS_PAUSED,
                                     .running = (uint32_t)p->running, .vcpus = 1,
                                     .endpoint = cmd->endpoint, .ram_size = p->ram_size };
            snprintf(vi.name, sizeof(vi.name), "selftest-proxy");
            memcpy(reply->body, &vi, sizeof(vi));
            reply->len = sizeof(vi);
            return 0;
        } else {
            vmsig_event ev = { .dir = VMSIG_DIR_UP, .kind = VMSIG_EV_RUNSTATE,
                               .endpoint = cmd->endpoint };
            p->running = cmd->u.cmd.op == VMSIG_VM_CONT;
            ev.u.seam.state = p->running ? VMSIG_RS_RUNNING : VMSIG_RS_PAUSED;
            ev.u.seam.running = (uint32_t)p->running;
            vmsig_core_publish(p->core, &ev);
            return 0;
        }
    case VMSIG_CMD_MEMWRITE: {
        uint64_t gpa = cmd->u.memwrite.gpa, len = cmd->u.memwrite.len;
        if (len != cmd->ool_len || gpa + len > p->ram_size || gpa + len < gpa) {
            return -EINVAL;
        }
        ssize_t r = pwrite(p->memfd, cmd->ool, len, (off_t)(p->hva + gpa));
        return r == (ssize_t)len ? 0 : -EIO;
    }
    default:
        return -ENOSYS;
    }
}

static const vmsig_backend_ops proxy_ops = { .command = proxy_command };

int bench_proxy_main(const bench_opts *o, int argc, char **argv)
{
    const char *path = NULL;
    int pid = 0, ramfd = -1, err = 0;
    proxy p = { .memfd = -1 };
    char buf[512], link[512];

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--pid")) pid = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--path")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--ram-size")) p.ram_size = strtoull(argv[i + 1], NULL, 0);
    }
    if (!pid || !path || !p.ram_size) {
        blog("proxy: need --pid, --path, --ram-size");
        return 2;
    }
    /* QEMU's RAM: the memfd among its fds, and where it is mapped. */
    snprintf(buf, sizeof(buf), "/proc/%d/fd", pid);
    DIR *d = opendir(buf);
    struct dirent *de;
    while (d && (de = readdir(d)) && ramfd < 0) {
        snprintf(buf, sizeof(buf), "/proc/%d/fd/%s", pid, de->d_name);
        ssize_t n = readlink(buf, link, sizeof(link) - 1);
        if (n > 0 && (link[n] = 0, strstr(link, "memfd:memory-backend-memfd"))) {
            ramfd = open(buf, O_RDONLY | O_CLOEXEC);
        }
    }
    if (d) closedir(d);
    snprintf(buf, sizeof(buf), "/proc/%d/maps", pid);
    FILE *f = fopen(buf, "r");
    while (f && fgets(link, sizeof(link), f)) {
        unsigned long long lo, hi, off;
        if (strstr(link, "memfd:") && sscanf(link, "%llx-%llx %*s %llx", &lo, &hi, &off) == 3 &&
            hi - lo == p.ram_size && off == 0) {
            p.hva = lo;
        }
    }
    if (f) fclose(f);
    snprintf(buf, sizeof(buf), "/proc/%d/mem", pid);
    p.memfd = open(buf, O_RDWR | O_CLOEXEC);
    if (ramfd < 0 || !p.hva || p.memfd < 0) {
        blog("proxy: cannot find QEMU's RAM memfd");
        return 1;
    }
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .backend = &proxy_ops,
                              .backend_opaque = &p };
    char errbuf[256];
    vmsig_grants *gr = vmsig_grants_parse("default endpoints=all caps=all\n", &err, errbuf,
                                          sizeof(errbuf));
    p.core = gr ? vmsig_core_new(&cfg, &err) : NULL;
    if (!p.core || (err = vmsig_core_listen(p.core, path, gr)) < 0) {
        blog("proxy: %s", strerror(-err));
        return 1;
    }
    vmsig_event rs = { .dir = VMSIG_DIR_UP, .kind = VMSIG_EV_RUNSTATE };
    rs.u.seam.state = VMSIG_RS_PAUSED;
    vmsig_core_publish(p.core, &rs);
    vmsig_wire_memctx mc = { .generation = 1, .ram_size = p.ram_size, .nseg = 1 };
    vmsig_wire_memseg seg = { .gpa = 0, .size = p.ram_size, .offset = 0, .fd_index = 0 };
    if ((err = vmsig_core_publish_memctx(p.core, 0, &mc, &seg, &ramfd, 1)) < 0) {
        blog("proxy: publish_memctx: %s", strerror(-err));
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    vmsig_loop_run(p.core, &stop_flag, -1);
    vmsig_core_free(p.core);
    vmsig_grants_free(gr);
    close(ramfd);
    close(p.memfd);
    return 0;
}
