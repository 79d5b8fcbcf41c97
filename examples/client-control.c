/*
 * client-control.c - a control in its own process, through the client
 * library: attach to a VM's vmsig socket, show our grant, print the first
 * events, query the VM and peek at guest RAM through the read-only mapping.
 *
 *   qemu-system-x86_64 ... -object vmsig,id=vs0,path=/tmp/vm.sock
 *   client-control /tmp/vm.sock [NEVENTS [GPA]]
 *
 * Exits non-zero on any error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vmsig/vmsig_client.h>

static int die(const char *what, int err)
{
    fprintf(stderr, "client-control: %s: %s\n", what, strerror(-err));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOCKET [NEVENTS [GPA]]\n", argv[0]);
        return 1;
    }
    int nevents = argc > 2 ? atoi(argv[2]) : 3;
    unsigned long long gpa = argc > 3 ? strtoull(argv[3], NULL, 0) : 0;

    /* Connect: an all-zero subscription asks for everything our grant
     * allows; auto_map keeps the newest MEMCTX mapped for us. */
    vmsig_client_config cfg = {
        .version = VMSIG_CLIENT_CONFIG_VERSION,
        .path = argv[1],
        .auto_map = 1,
    };
    int err = 0;
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    if (!c) {
        return die("connect", err);
    }

    /* The WELCOME says who the server thinks we are and what we may do. */
    const vmsig_wire_welcome *w = vmsig_client_welcome(c);
    printf("principal %u, endpoints 0x%llx, caps:", w->principal,
           (unsigned long long)w->endpoint_mask);
    for (uint32_t bit = 1; bit <= VMSIG_CAP_ALL; bit <<= 1) {
        if (w->caps & bit) {
            printf(" %s", vmsig_cap_name(bit));
        }
    }
    printf("\n");
    uint32_t ep = w->endpoint_mask ? (uint32_t)__builtin_ctzll(w->endpoint_mask) : 0;

    /* The first events: a snapshot of the current state comes first
     * (VMSIG_F_SNAPSHOT), then live ones. Stop early after 1 s of quiet. */
    for (int i = 0; i < nevents; i++) {
        vmsig_msg m;
        int r = vmsig_client_next(c, &m, 1000);
        if (r == -ETIMEDOUT) {
            break;
        }
        if (r < 0) {
            vmsig_client_close(c);
            return die("next event", r);
        }
        printf("event seq=%llu ep=%u %s%s", (unsigned long long)m.ev.seq, m.ev.endpoint,
               vmsig_kind_name(m.ev.kind), m.ev.flags & VMSIG_F_SNAPSHOT ? " (snapshot)" : "");
        if (m.ev.kind == VMSIG_EV_RUNSTATE) {
            printf(" %s", vmsig_runstate_name(m.ev.u.seam.state));
        } else if (m.ev.kind == VMSIG_EV_MEMCTX) {
            printf(" gen=%llu segs=%u", (unsigned long long)m.ev.u.memctx.generation,
                   m.ev.u.memctx.nseg);
        }
        printf("\n");
    }

    /* A command and its reply: CMD_VM query. */
    vmsig_wire_vminfo vi;
    err = vmsig_client_vm(c, ep, VMSIG_VM_QUERY, &vi);
    if (err < 0) {
        vmsig_client_close(c);
        return die("query", err);
    }
    printf("vm: %s, %u vcpus, %llu MiB RAM, QEMU %.32s\n", vmsig_runstate_name(vi.state),
           vi.vcpus, (unsigned long long)(vi.ram_size >> 20), vi.version);

    /* Guest RAM, read straight from our read-only mapping: no round trip. */
    if (w->caps & VMSIG_CAP_MEMCTX) {
        vmsig_memmap *map;
        unsigned char buf[16];
        while (!(map = vmsig_client_memmap(c))) { /* MEMCTX not read yet: wait for it */
            vmsig_msg m;
            err = vmsig_client_next(c, &m, 2000);
            if (!err && m.ev.kind == VMSIG_EV_MEMCTX && m.ev.u.memctx.status)
                fprintf(stderr, "MEMCTX unavailable: %.104s\n", m.ev.u.memctx.why);
            if (err < 0 || (m.ev.kind == VMSIG_EV_MEMCTX && m.ev.u.memctx.status)) {
                vmsig_client_close(c);
                return die("waiting for MEMCTX", err < 0 ? err : m.ev.u.memctx.status);
            }
        }
        err = vmsig_memmap_read(map, gpa, buf, sizeof(buf));
        vmsig_memmap_unref(map);
        if (err < 0) {
            vmsig_client_close(c);
            return die("read", err);
        }
        printf("%08llx:", gpa);
        for (size_t i = 0; i < sizeof(buf); i++) {
            printf(" %02x", buf[i]);
        }
        printf("\n");
    }
    vmsig_client_close(c);
    return 0;
}
