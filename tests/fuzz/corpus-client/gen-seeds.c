/*
 * gen-seeds.c - writes the seed corpus of fuzz-client: valid server-to-client
 * sessions as a conforming server sends them, in the input format of
 * ../fuzz_client.h.
 *
 *   gen-seeds-client DIR    writes DIR/welcome, DIR/runstate, ... (the names
 *                           in meson.build)
 *
 * Run at build time (meson.build here): the seeds live in the build tree,
 * never in the source tree. Every frame is built from the structs of
 * include/vmsig/vmsig_wire.h and its length is their sizeof, so a change of a
 * payload's layout changes the seeds with it on the next build; nothing here
 * counts bytes by hand. To look at one: od -Ax -tx1 BUILD/tests/fuzz/corpus-client/memctx
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsig/vmsig_event.h"
#include "vmsig/vmsig_wire.h"
#include "../fuzz_client.h"

/* A session: the fuzz input's mode, control bytes and stream. */
typedef struct seed {
    uint8_t mode;
    uint8_t ctl[255];
    unsigned nctl;
    uint8_t s[16384];
    size_t len;
    unsigned nframes;
} seed;

static void frame(seed *sd, uint16_t kind, uint8_t flags, uint64_t id, uint32_t endpoint,
                  int32_t status, unsigned nfds, const void *p1, size_t l1, const void *p2,
                  size_t l2)
{
    vmsig_wire_hdr h;
    memset(&h, 0, sizeof(h));
    h.kind = kind;
    h.nfds = (uint8_t)nfds;
    h.flags = flags;
    h.len = (uint32_t)(l1 + l2);
    h.id = id;
    h.ts_ns = kind >= VMSIG_EV_RUNSTATE ? 1000000000ull + id : 0;
    h.endpoint = endpoint;
    h.status = status;
    if (sd->len + sizeof(h) + l1 + l2 > sizeof(sd->s)) {
        fprintf(stderr, "gen-seeds: seed too large\n");
        exit(1);
    }
    memcpy(sd->s + sd->len, &h, sizeof(h));
    sd->len += sizeof(h);
    if (l1) {
        memcpy(sd->s + sd->len, p1, l1);
        sd->len += l1;
    }
    if (l2) {
        memcpy(sd->s + sd->len, p2, l2);
        sd->len += l2;
    }
    sd->nframes++;
}

static void welcome(seed *sd)
{
    vmsig_wire_welcome w;
    memset(&w, 0, sizeof(w));
#ifdef VMSIG_WIRE_MAJOR
    w.major = VMSIG_WIRE_MAJOR;
    w.minor = VMSIG_WIRE_MINOR;
#else
    w.version = VMSIG_WIRE_VERSION;
#endif
    w.principal = 1000;
    w.endpoint_mask = 1;
    w.caps = VMSIG_CAP_OBSERVE | VMSIG_CAP_VM | VMSIG_CAP_MEMCTX;
    w.sub.source_mask = VMSIG_SRC_ALL;
    w.sub.endpoint_mask = 1;
    w.max_payload = VMSIG_WIRE_MAX_PAYLOAD;
    w.max_fds = VMSIG_WIRE_MAX_FDS;
    w.queue_limit = 256;
    frame(sd, VMSIG_MSG_WELCOME, 0, 1, 0, 0, 0, &w, sizeof(w), NULL, 0);
}

static void seam(seed *sd, uint16_t kind, uint8_t flags, uint64_t seq, uint32_t state,
                 uint32_t cause, uint32_t running)
{
    vmsig_wire_seam e = { .state = state, .cause = cause, .running = running,
                          .guest = cause == VMSIG_SC_GUEST_RESET };
    frame(sd, kind, flags, seq, 0, 0, 0, &e, sizeof(e), NULL, 0);
}

/* A MEMCTX of nseg segments over nfds fds (segment i in fd i % nfds). */
static void memctx(seed *sd, uint64_t seq, uint64_t gen, unsigned nseg, unsigned nfds)
{
    vmsig_wire_memctx mc;
    vmsig_wire_memseg sg[VMSIG_MEMCTX_MAX_SEGS];
    memset(&mc, 0, sizeof(mc));
    memset(sg, 0, sizeof(sg));
    mc.generation = gen;
    mc.nseg = nseg;
    for (unsigned i = 0; i < nseg; i++) {
        sg[i].gpa = (uint64_t)i << 20;
        sg[i].size = 4096;
        sg[i].offset = (uint64_t)i * 4096;
        sg[i].fd_index = nfds ? i % nfds : 0;
        mc.ram_size += sg[i].size;
    }
    frame(sd, VMSIG_EV_MEMCTX, 0, seq, 0, 0, nfds, &mc, sizeof(mc), sg,
          nseg * sizeof(vmsig_wire_memseg));
}

static void memctx_unavailable(seed *sd, uint64_t seq)
{
    vmsig_wire_memctx mc;
    memset(&mc, 0, sizeof(mc));
    mc.generation = 2;
    mc.status = -ENODEV;
    snprintf(mc.why, sizeof(mc.why), "guest RAM is not shared: -object memory-backend-memfd,share=on");
    frame(sd, VMSIG_EV_MEMCTX, 0, seq, 0, 0, 0, &mc, sizeof(mc), NULL, 0);
}

static void reply_vminfo(seed *sd, uint64_t id)
{
    vmsig_wire_vminfo vi;
    memset(&vi, 0, sizeof(vi));
    vi.state = VMSIG_RS_RUNNING;
    vi.running = 1;
    vi.vcpus = 2;
    vi.ram_size = 256u << 20;
    vi.memctx_gen = 1;
    snprintf(vi.version, sizeof(vi.version), "7.2.22");
    snprintf(vi.name, sizeof(vi.name), "vm0");
    frame(sd, VMSIG_MSG_REPLY, 0, id, 0, 0, 0, &vi, sizeof(vi), NULL, 0);
}

static void reply_text(seed *sd, uint64_t id, int32_t status, const char *text)
{
    frame(sd, VMSIG_MSG_REPLY, 0, id, 0, status, 0, text, strlen(text) + 1, NULL, 0);
}

static void bye(seed *sd, int32_t status, const char *text)
{
    vmsig_wire_bye b;
    memset(&b, 0, sizeof(b));
    snprintf(b.text, sizeof(b.text), "%s", text);
    frame(sd, VMSIG_MSG_BYE, 0, 0, 0, status, 0, &b, sizeof(b), NULL, 0);
}

/* Mode 0 (fds where the control bytes say): chunks that cover the next
 * `len` stream bytes, the first carrying nfds (0..3) fds. */
static void chunks(seed *sd, size_t len, unsigned nfds)
{
    while (len) {
        unsigned n = len > 62 ? 62 : (unsigned)len;
        if (sd->nctl == sizeof(sd->ctl)) {
            fprintf(stderr, "gen-seeds: too many chunks\n");
            exit(1);
        }
        sd->ctl[sd->nctl++] = FZC_CTL(n, nfds);
        nfds = 0;
        len -= n;
    }
}

static void write_seed(const char *dir, const char *name, const seed *sd)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    uint8_t head[2] = { sd->mode, (uint8_t)sd->nctl };
    if (!f || fwrite(head, 1, 2, f) != 2 || fwrite(sd->ctl, 1, sd->nctl, f) != sd->nctl ||
        fwrite(sd->s, 1, sd->len, f) != sd->len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 1;
    }
    const char *dir = argv[1];
    static seed sd;

    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_ALIGNED;
    welcome(&sd);
    write_seed(dir, "welcome", &sd);

    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_ALIGNED;
    welcome(&sd);
    seam(&sd, VMSIG_EV_RUNSTATE, VMSIG_F_SNAPSHOT, 1, VMSIG_RS_RUNNING, 0, 1);
    write_seed(dir, "runstate", &sd);

    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_ALIGNED;
    welcome(&sd);
    memctx(&sd, 1, 1, 1, 1);
    write_seed(dir, "memctx", &sd);

    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_ALIGNED;
    welcome(&sd);
    reply_vminfo(&sd, 2);
    write_seed(dir, "reply", &sd);

    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_ALIGNED;
    welcome(&sd);
    bye(&sd, -ENOBUFS, "slow reader: over 256 frames queued");
    write_seed(dir, "bye", &sd);

    /* A map with an fd and no segments yet (valid: every fd_index of none is
     * below nfds); one flip of status from an unavailable map with fds. */
    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_ALIGNED;
    welcome(&sd);
    memctx(&sd, 1, 1, 0, 1);
    write_seed(dir, "memctx-empty", &sd);

    /* The same MEMCTX with its fd placed by control bytes, in 62-byte reads. */
    memset(&sd, 0, sizeof(sd));
    welcome(&sd);
    chunks(&sd, sd.len, 0);
    size_t at = sd.len;
    memctx(&sd, 1, 1, 1, 1);
    chunks(&sd, sd.len - at, 1);
    write_seed(dir, "memctx-ctl", &sd);

    /* A whole session read in odd pieces (7, 32, 1, 50 bytes). */
    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_ALIGNED;
    sd.ctl[sd.nctl++] = FZC_CTL(7, 0);
    sd.ctl[sd.nctl++] = FZC_CTL(32, 0);
    sd.ctl[sd.nctl++] = FZC_CTL(1, 0);
    sd.ctl[sd.nctl++] = FZC_CTL(50, 0);
    welcome(&sd);
    seam(&sd, VMSIG_EV_RUNSTATE, VMSIG_F_SNAPSHOT, 1, VMSIG_RS_RUNNING, 0, 1);
    memctx(&sd, 2, 1, 3, 2);
    reply_vminfo(&sd, 2);
    vmsig_wire_arb arb = { .cls = VMSIG_CLASS_INPUT, .what = VMSIG_ARB_GRANTED, .owner = 1000 };
    frame(&sd, VMSIG_EV_ARB, 0, 3, 0, 0, 0, &arb, sizeof(arb), NULL, 0);
    reply_text(&sd, 3, 0, "");
    vmsig_wire_memwrite_done md = { .gpa = 0x1000, .len = 8, .generation = 1, .writer = 1000 };
    frame(&sd, VMSIG_EV_MEMWRITE_DONE, 0, 4, 0, 0, 0, &md, sizeof(md), NULL, 0);
    seam(&sd, VMSIG_EV_RUNSTATE, 0, 5, VMSIG_RS_PAUSED, 0, 0);
    seam(&sd, VMSIG_EV_RESET, 0, 6, VMSIG_RS_PAUSED, VMSIG_SC_GUEST_RESET, 0);
    memctx(&sd, 7, 2, 1, 1);
    reply_text(&sd, 4, -EINVAL, "Unable to wake up: guest is not in suspended state");
    memctx_unavailable(&sd, 8);
    seam(&sd, VMSIG_EV_SHUTDOWN, 0, 9, VMSIG_RS_SHUTDOWN, VMSIG_SC_HOST_QMP_QUIT, 0);
    bye(&sd, -ESHUTDOWN, "server going away");
    write_seed(dir, "session", &sd);

    /* The same session through the client library, mapping each MEMCTX. */
    sd.mode = FZC_ALIGNED | FZC_CLIENT | FZC_AUTOMAP;
    write_seed(dir, "session-client", &sd);

    /* Events without fds through the client library (compared one by one). */
    memset(&sd, 0, sizeof(sd));
    sd.mode = FZC_CLIENT;
    sd.ctl[sd.nctl++] = FZC_CTL(40, 0);
    welcome(&sd);
    seam(&sd, VMSIG_EV_RUNSTATE, VMSIG_F_SNAPSHOT, 1, VMSIG_RS_RUNNING, 0, 1);
    reply_vminfo(&sd, 2);
    frame(&sd, VMSIG_EV_ARB, 0, 2, 0, 0, 0, &arb, sizeof(arb), NULL, 0);
    memctx_unavailable(&sd, 3);
    seam(&sd, VMSIG_EV_SUSPEND, 0, 4, VMSIG_RS_SUSPENDED, 0, 0);
    bye(&sd, -ESHUTDOWN, "server going away");
    write_seed(dir, "events-client", &sd);
    return 0;
}
