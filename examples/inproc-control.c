/*
 * inproc-control.c - the smallest vmsig setup: a core, a toy "VM" that
 * publishes events and carries out commands, and an in-process control that
 * sees those events and sends a command. No QEMU, no sockets.
 *
 * Expected: RUNSTATE running, a MEMCTX, then after our CMD_VM stop a
 * RUNSTATE paused; a query then says "paused". Exit 0 if all were seen.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vmsig/vmsig_core.h>

static vmsig_core *core;
static int vm_running = 1; /* the toy VM's whole state */
static int saw_running, saw_paused, saw_memctx;

static int die(const char *what, int err)
{
    fprintf(stderr, "inproc-control: %s: %s\n", what, strerror(-err));
    return 1;
}

/* The toy VM tells the core its run state changed (QEMU's glue does this
 * from its run-state hook). */
static void vm_publish_state(void)
{
    vmsig_event ev = { .dir = VMSIG_DIR_UP, .kind = VMSIG_EV_RUNSTATE, .endpoint = 0 };
    ev.u.seam.state = vm_running ? VMSIG_RS_RUNNING : VMSIG_RS_PAUSED;
    ev.u.seam.running = vm_running;
    vmsig_core_publish(core, &ev);
}

/* The VM side: carries out commands that passed grant and arbitration. */
static int vm_command(void *opaque, const vmsig_event *cmd, uint32_t principal,
                      vmsig_reply *reply)
{
    if (cmd->kind != VMSIG_CMD_VM) {
        return -ENOTSUP;
    }
    switch (cmd->u.cmd.op) {
    case VMSIG_VM_STOP: vm_running = 0; vm_publish_state(); return 0;
    case VMSIG_VM_CONT: vm_running = 1; vm_publish_state(); return 0;
    case VMSIG_VM_QUERY: {
        vmsig_wire_vminfo vi = { .state = vm_running ? VMSIG_RS_RUNNING : VMSIG_RS_PAUSED,
                                 .running = (uint32_t)vm_running, .vcpus = 1,
                                 .ram_size = 65536, .version = "toy", .name = "example" };
        memcpy(reply->body, &vi, sizeof(vi));
        reply->len = sizeof(vi);
        return 0;
    }
    }
    return -EINVAL;
}

/* The control: every UP event but MEMCTX lands here (borrowed for the call). */
static int on_event(void *opaque, const vmsig_event *up)
{
    printf("control: seq=%llu %s", (unsigned long long)up->seq, vmsig_kind_name(up->kind));
    if (up->kind == VMSIG_EV_RUNSTATE) {
        printf(" %s", vmsig_runstate_name(up->u.seam.state));
        saw_running |= up->u.seam.state == VMSIG_RS_RUNNING;
        saw_paused |= up->u.seam.state == VMSIG_RS_PAUSED;
    }
    printf("\n");
    return 0;
}

/* MEMCTX comes with read-only fds (borrowed: mmap or dup what you keep). */
static int on_memctx(void *opaque, const vmsig_event *ev, const int *fds, unsigned nfds)
{
    const vmsig_wire_memseg *seg = ev->ool;
    printf("control: MEMCTX gen=%llu segs=%u fds=%u\n",
           (unsigned long long)ev->u.memctx.generation, ev->u.memctx.nseg, nfds);
    const char *ram = nfds == 1 ? mmap(NULL, seg->size, PROT_READ, MAP_SHARED, fds[0], 0)
                                : MAP_FAILED;
    if (ram != MAP_FAILED) {
        printf("control: guest RAM says \"%s\"\n", ram);
        saw_memctx = ram[0] == 'h';
        munmap((void *)ram, seg->size);
    }
    return 0;
}

int main(void)
{
    int err = 0;
    static const vmsig_backend_ops vm_ops = { .command = vm_command };
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .backend = &vm_ops };
    if (!(core = vmsig_core_new(&cfg, &err))) {
        return die("vmsig_core_new", err);
    }

    /* Attach the control: everything on endpoint 0, allowed to observe,
     * see memory and stop/cont the VM. */
    vmsig_inproc_cfg icfg = { .on_event = on_event, .on_memctx = on_memctx,
                              .sub = { VMSIG_SRC_ALL, 1 } };
    vmsig_grant grant = { .principal = 1000, .endpoint_mask = 1,
                          .caps = VMSIG_CAP_OBSERVE | VMSIG_CAP_MEMCTX | VMSIG_CAP_VM };
    vmsig_inproc *ctl = vmsig_inproc_new(core, &icfg, &grant, &err);
    if (!ctl) {
        return die("vmsig_inproc_new", err);
    }

    /* The toy VM starts, then publishes its 64 KiB of "RAM": a memfd, handed
     * over through a read-only descriptor of it. */
    vm_publish_state();
    int ram = memfd_create("toy-ram", MFD_CLOEXEC);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", ram);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    if (ro < 0 || ftruncate(ram, 65536) < 0 || pwrite(ram, "hello from the toy VM", 22, 0) != 22) {
        return die("toy RAM", -errno);
    }
    vmsig_wire_memctx mc = { .generation = 1, .ram_size = 65536, .nseg = 1 };
    vmsig_wire_memseg seg = { .gpa = 0, .size = 65536, .offset = 0, .fd_index = 0 };
    err = vmsig_core_publish_memctx(core, 0, &mc, &seg, &ro, 1);
    close(ro); /* the core keeps its own copy */
    close(ram);
    if (err < 0) {
        return die("vmsig_core_publish_memctx", err);
    }

    /* DOWN: stop the VM, then ask how it is. */
    vmsig_event stop = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_VM, .endpoint = 0 };
    stop.u.cmd.op = VMSIG_VM_STOP;
    vmsig_reply reply;
    printf("control: stop -> %d\n", vmsig_inproc_send(ctl, &stop, &reply));
    vmsig_event query = stop;
    query.u.cmd.op = VMSIG_VM_QUERY;
    vmsig_wire_vminfo vi = { 0 };
    if (vmsig_inproc_send(ctl, &query, &reply) == 0 && reply.len >= sizeof(vi)) {
        memcpy(&vi, reply.body, sizeof(vi));
    }
    printf("control: query -> %s, vcpus=%u, name=%.32s\n", vmsig_runstate_name(vi.state),
           vi.vcpus, vi.name);

    vmsig_inproc_free(ctl);
    vmsig_core_free(core);
    int ok = saw_running && saw_paused && saw_memctx && vi.state == VMSIG_RS_PAUSED;
    printf("%s\n", ok ? "ok: saw everything expected" : "FAILED: something was missing");
    return ok ? 0 : 1;
}
