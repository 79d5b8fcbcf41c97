/*
 * test_wire.c - the validation table, the codec, and the reader/writer over
 * a socketpair: partial writes, frames split and merged, fds tied to frames.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmsig/vmsig_event.h"
#include "../../lib/wire.h"

static void test_table(void)
{
    unsigned n;
    const vmsig_wire_kind *k = vmsig__wire_kinds(&n);
    g_assert_cmpuint(n, ==, 25);
    for (unsigned i = 0; i < n; i++) {
        int sz = vmsig_kind_payload_size(k[i].kind);
        g_assert_cmpint(sz, >=, 0);
        g_assert_cmpuint(vmsig__wire_fixed(&k[i]), ==, (unsigned)sz);
        g_assert_true(vmsig__wire_kind(k[i].kind) == &k[i]);
        g_assert_cmpuint(vmsig__wire_fixed(&k[i]) + k[i].tail_max, <=, VMSIG_WIRE_MAX_PAYLOAD);
        /* Only MEMCTX carries fds. */
        g_assert_cmpuint(k[i].fds, ==,
                         k[i].kind == VMSIG_EV_MEMCTX ? VMSIG_WIRE_FDS_MEMCTX : VMSIG_WIRE_FDS_NONE);
        unsigned dir = (k[i].kind >= VMSIG_CMD_NOP || k[i].kind == VMSIG_MSG_HELLO ||
                        k[i].kind == VMSIG_MSG_SUBSCRIBE) ? VMSIG_WIRE_C2S : VMSIG_WIRE_S2C;
        g_assert_cmpuint(k[i].dir, ==, dir);
    }
    g_assert_null(vmsig__wire_kind(0x7777));
    /* Every kind number finds its own row or none (the grouped lookup). */
    unsigned found = 0;
    for (uint32_t kind = 0; kind <= 0xffff; kind++) {
        const vmsig_wire_kind *r = vmsig__wire_kind(kind);
        if (r) {
            g_assert_cmpuint(r->kind, ==, kind);
            found++;
        }
    }
    g_assert_cmpuint(found, ==, n);
    /* UP kinds name a source and the capability that receives it; the
     * rest name none. Every row has a name and is base protocol (feature 0)
     * until a feature adds a kind. */
    for (unsigned i = 0; i < n; i++) {
        int up = k[i].kind >= 0x0100 && k[i].kind < 0x1000;
        g_assert_cmpuint(k[i].source != VMSIG_SRC_NONE, ==, up);
        g_assert_cmpuint(up ? k[i].cap != 0 : 1, ==, 1);
        g_assert_cmpstr(vmsig_kind_name(k[i].kind), ==, k[i].name);
        g_assert_cmphex(k[i].feature & ~VMSIG_FEATURES_KNOWN, ==, 0);
    }
    g_assert_cmpuint(vmsig_kind_payload_size(VMSIG_CMD_VM), ==, sizeof(vmsig_wire_cmd));
    g_assert_cmpuint(vmsig_kind_payload_size(VMSIG_EV_MEMCTX), ==, sizeof(vmsig_wire_memctx));
}

static void test_check_hdr(void)
{
    char why[128];
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_VM, .len = 8 };
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, 0);
    h.len = VMSIG_WIRE_MAX_PAYLOAD + 1;
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, -EMSGSIZE);
    h.len = 8;
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_S2C, why, sizeof(why)), ==, -EPROTO);
    h.len = 7;
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, -EBADMSG);
    h.len = 9;
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, -EBADMSG);
    h.len = 8;
    h.nfds = 1;
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, -EPROTO);
    h = (vmsig_wire_hdr){ .kind = 0x2222 };
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, -EPROTO);
    g_assert_nonnull(strstr(why, "0x2222"));
    /* Tails: up to their cap. */
    h = (vmsig_wire_hdr){ .kind = VMSIG_CMD_INPUT, .len = 16 + VMSIG_TEXT_MAX };
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, 0);
    h.len++;
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_C2S, why, sizeof(why)), ==, -EBADMSG);
    h = (vmsig_wire_hdr){ .kind = VMSIG_EV_MEMCTX, .len = 128, .nfds = VMSIG_WIRE_MAX_FDS + 1 };
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_S2C, why, sizeof(why)), ==, -EPROTO);
    h.nfds = VMSIG_WIRE_MAX_FDS;
    g_assert_cmpint(vmsig__wire_check_hdr(&h, VMSIG_WIRE_S2C, why, sizeof(why)), ==, 0);
}

static void test_check_payload(void)
{
    uint8_t buf[4096] = { 0 };
    vmsig_wire_input in = { .op = VMSIG_INPUT_TEXT, .len = 3 };
    memcpy(buf, &in, sizeof(in));
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_INPUT, .len = 16 + 3 };
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 0, NULL, 0), ==, 0);
    h.len = 16 + 2;
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 0, NULL, 0), ==, -EBADMSG);
    in = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .len = 2 };
    memcpy(buf, &in, sizeof(in));
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 0, NULL, 0), ==, -EBADMSG);

    vmsig_wire_memwrite mw = { .gpa = 0, .len = 100 };
    memcpy(buf, &mw, sizeof(mw));
    h = (vmsig_wire_hdr){ .kind = VMSIG_CMD_MEMWRITE, .len = 16 + 100 };
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 0, NULL, 0), ==, 0);
    h.len = 16 + 99;
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 0, NULL, 0), ==, -EBADMSG);

    vmsig_wire_memctx mc = { .generation = 1, .nseg = 2 };
    vmsig_wire_memseg segs[2] = { { .size = 4096, .fd_index = 0 }, { .gpa = 1 << 20, .size = 4096, .fd_index = 1 } };
    memcpy(buf, &mc, sizeof(mc));
    memcpy(buf + sizeof(mc), segs, sizeof(segs));
    h = (vmsig_wire_hdr){ .kind = VMSIG_EV_MEMCTX, .len = 128 + 64, .nfds = 2 };
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 2, NULL, 0), ==, 0);
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 1, NULL, 0), ==, -EPROTO);
    h.nfds = 1;
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 1, NULL, 0), ==, -EBADMSG); /* fd_index 1 */
    h.nfds = 2;
    h.len = 128 + 32;
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 2, NULL, 0), ==, -EBADMSG); /* nseg */
    mc.status = -ENODEV;
    mc.nseg = 0;
    memcpy(buf, &mc, sizeof(mc));
    h.len = 128;
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 2, NULL, 0), ==, -EBADMSG);
    h.nfds = 0;
    g_assert_cmpint(vmsig__wire_check_payload(&h, buf, 0, NULL, 0), ==, 0);
}

static void test_codec(void)
{
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.dir = VMSIG_DIR_DOWN;
    ev.kind = VMSIG_CMD_INPUT;
    ev.endpoint = 3;
    ev.seq = 99;
    ev.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_TEXT, .len = 5 };
    ev.ool = "hello";
    ev.ool_len = 5;
    vmsig_wire_hdr h;
    g_assert_cmpint(vmsig__wire_event_hdr(&ev, 0, &h), ==, 0);
    g_assert_cmpuint(h.kind, ==, VMSIG_CMD_INPUT);
    g_assert_cmpuint(h.len, ==, 21);
    g_assert_cmpuint(h.id, ==, 99);
    g_assert_cmpuint(h.endpoint, ==, 3);
    g_assert_cmpint(vmsig__wire_event_hdr(&ev, 1, &h), ==, -EINVAL); /* fds on INPUT */
    uint8_t pl[64];
    memcpy(pl, &ev.u.input, 16);
    memcpy(pl + 16, "hello", 5);
    g_assert_cmpint(vmsig__wire_event_hdr(&ev, 0, &h), ==, 0);
    vmsig_event back;
    vmsig__wire_frame_event(&h, pl, &back);
    g_assert_cmpuint(back.dir, ==, VMSIG_DIR_DOWN);
    g_assert_cmpuint(back.kind, ==, VMSIG_CMD_INPUT);
    g_assert_cmpuint(back.seq, ==, 99);
    g_assert_cmpuint(back.u.input.len, ==, 5);
    g_assert_cmpuint(back.ool_len, ==, 5);
    g_assert_cmpmem(back.ool, 5, "hello", 5);
    ev.kind = VMSIG_MSG_HELLO;
    g_assert_cmpint(vmsig__wire_event_hdr(&ev, 0, &h), ==, -EINVAL);
}

/* ---- reader and writer over a socketpair ---- */

static void pair(int sv[2], int sndbuf)
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), ==, 0);
    if (sndbuf) {
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
    }
}

static int next_frame(vmsig_wire_reader *r, int fd, vmsig_wire_frame *f)
{
    for (;;) {
        int rc = vmsig__wire_reader_next(r, f);
        if (rc != 0) {
            return rc;
        }
        rc = vmsig__wire_reader_fill(r, fd);
        if (rc < 0) {
            return rc;
        }
    }
}

static void push_event(vmsig_wire_writer *w, const vmsig_event *ev, const int *fds, unsigned nfds)
{
    vmsig_wire_hdr h;
    g_assert_cmpint(vmsig__wire_event_hdr(ev, nfds, &h), ==, 0);
    const vmsig_wire_kind *k = vmsig__wire_kind(ev->kind);
    int dups[VMSIG_WIRE_MAX_FDS];
    for (unsigned i = 0; i < nfds; i++) {
        dups[i] = dup(fds[i]);
    }
    g_assert_cmpint(vmsig__wire_writer_push(w, &h, ev->u.raw, vmsig__wire_fixed(k), ev->ool,
                                            ev->ool_len, dups, nfds, 0), ==, 0);
}

static void test_roundtrip_fds(void)
{
    int sv[2];
    pair(sv, 0);
    vmsig_wire_writer *w = vmsig__wire_writer_new();
    vmsig_wire_reader *r = vmsig__wire_reader_new(VMSIG_WIRE_S2C);
    int mfd = memfd_create("t", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(mfd, 8192), ==, 0);

    vmsig_event rs;
    memset(&rs, 0, sizeof(rs));
    rs.kind = VMSIG_EV_RUNSTATE;
    rs.seq = 1;
    rs.u.seam.state = VMSIG_RS_RUNNING;
    vmsig_event mc;
    memset(&mc, 0, sizeof(mc));
    mc.kind = VMSIG_EV_MEMCTX;
    mc.seq = 2;
    mc.u.memctx.generation = 1;
    mc.u.memctx.nseg = 2;
    vmsig_wire_memseg segs[2] = { { .gpa = 0, .size = 4096, .offset = 0, .fd_index = 0 },
                                  { .gpa = 1ull << 32, .size = 4096, .offset = 4096, .fd_index = 1 } };
    mc.ool = segs;
    mc.ool_len = sizeof(segs);
    int fds[2] = { mfd, mfd };
    /* A frame without fds, one with, one without: all in one flush. */
    push_event(w, &rs, NULL, 0);
    push_event(w, &mc, fds, 2);
    rs.seq = 3;
    push_event(w, &rs, NULL, 0);
    g_assert_cmpuint(vmsig__wire_writer_count(w), ==, 3);
    g_assert_cmpint(vmsig__wire_writer_flush(w, sv[0]), ==, 0);
    g_assert_cmpuint(vmsig__wire_writer_count(w), ==, 0);

    vmsig_wire_frame f;
    g_assert_cmpint(next_frame(r, sv[1], &f), ==, 1);
    g_assert_cmpuint(f.hdr.kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(f.nfds, ==, 0);
    g_assert_cmpint(next_frame(r, sv[1], &f), ==, 1);
    g_assert_cmpuint(f.hdr.kind, ==, VMSIG_EV_MEMCTX);
    g_assert_cmpuint(f.nfds, ==, 2);
    vmsig_event back;
    vmsig__wire_frame_event(&f.hdr, f.payload, &back);
    g_assert_cmpuint(back.u.memctx.nseg, ==, 2);
    g_assert_cmpmem(back.ool, back.ool_len, segs, sizeof(segs));
    struct stat a, b;
    fstat(mfd, &a);
    fstat(f.fds[1], &b);
    g_assert_true(a.st_ino == b.st_ino);
    g_assert_cmpint(fcntl(f.fds[0], F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
    close(f.fds[0]);
    close(f.fds[1]);
    g_assert_cmpint(next_frame(r, sv[1], &f), ==, 1);
    g_assert_cmpuint(f.hdr.id, ==, 3);
    /* Nothing more: -EAGAIN, never a spin. */
    g_assert_cmpint(vmsig__wire_reader_next(r, &f), ==, 0);
    g_assert_cmpint(vmsig__wire_reader_fill(r, sv[1]), ==, -EAGAIN);
    /* EOF in the middle of a frame. */
    vmsig_wire_hdr h = { .kind = VMSIG_EV_RUNSTATE, .len = 16 };
    g_assert_cmpint(write(sv[0], &h, 20), ==, 20);
    close(sv[0]);
    g_assert_cmpint(next_frame(r, sv[1], &f), ==, -EPIPE);
    g_assert_nonnull(strstr(vmsig__wire_reader_error(r), "middle of a frame"));
    close(sv[1]);
    close(mfd);
    vmsig__wire_reader_free(r);
    vmsig__wire_writer_free(w);
}

/* A 1 MiB MEMWRITE through a small socket buffer: partial writes resumed,
 * the frame reassembled from many reads. */
static void test_partial(void)
{
    int sv[2];
    pair(sv, 4096);
    vmsig_wire_writer *w = vmsig__wire_writer_new();
    vmsig_wire_reader *r = vmsig__wire_reader_new(VMSIG_WIRE_C2S);
    uint8_t *data = g_malloc(VMSIG_MEMWRITE_MAX);
    for (unsigned i = 0; i < VMSIG_MEMWRITE_MAX; i++) {
        data[i] = (uint8_t)(i * 7);
    }
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_CMD_MEMWRITE;
    ev.seq = 5;
    ev.u.memwrite.gpa = 0x1000;
    ev.u.memwrite.len = VMSIG_MEMWRITE_MAX;
    ev.ool = data;
    ev.ool_len = VMSIG_MEMWRITE_MAX;
    push_event(w, &ev, NULL, 0);
    ev.kind = VMSIG_CMD_NOP;
    ev.seq = 6;
    ev.ool = NULL;
    ev.ool_len = 0;
    push_event(w, &ev, NULL, 0);
    int partial = 0, frames = 0;
    vmsig_wire_frame f;
    while (frames < 2) {
        int rc = vmsig__wire_writer_flush(w, sv[0]);
        if (rc == -EAGAIN) {
            partial++;
            g_assert_true(vmsig__wire_writer_midframe(w) || vmsig__wire_writer_count(w));
        } else {
            g_assert_cmpint(rc, ==, 0);
        }
        for (;;) {
            rc = vmsig__wire_reader_next(r, &f);
            g_assert_cmpint(rc, >=, 0);
            if (rc == 1) {
                frames++;
                if (frames == 1) {
                    g_assert_cmpuint(f.hdr.len, ==, 16 + VMSIG_MEMWRITE_MAX);
                    g_assert_cmpmem(f.payload + 16, VMSIG_MEMWRITE_MAX, data, VMSIG_MEMWRITE_MAX);
                } else {
                    g_assert_cmpuint(f.hdr.id, ==, 6);
                }
                continue;
            }
            rc = vmsig__wire_reader_fill(r, sv[1]);
            if (rc == -EAGAIN) {
                break;
            }
            g_assert_cmpint(rc, >, 0);
        }
    }
    g_assert_cmpint(partial, >, 10);
    close(sv[0]);
    close(sv[1]);
    g_free(data);
    vmsig__wire_reader_free(r);
    vmsig__wire_writer_free(w);
}

/* Coalescing support: drop the queued frame of a kind+endpoint. */
static void test_writer_drop(void)
{
    vmsig_wire_writer *w = vmsig__wire_writer_new();
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_EV_RUNSTATE;
    ev.endpoint = 1;
    push_event(w, &ev, NULL, 0);
    ev.endpoint = 2;
    push_event(w, &ev, NULL, 0);
    ev.kind = VMSIG_EV_RESET;
    push_event(w, &ev, NULL, 0);
    g_assert_cmpint(vmsig__wire_writer_drop(w, VMSIG_EV_RUNSTATE, 2), ==, 1);
    g_assert_cmpint(vmsig__wire_writer_drop(w, VMSIG_EV_RUNSTATE, 2), ==, 0);
    g_assert_cmpuint(vmsig__wire_writer_count(w), ==, 2);
    vmsig__wire_writer_drop_unstarted(w);
    g_assert_cmpuint(vmsig__wire_writer_count(w), ==, 0);
    vmsig__wire_writer_free(w);
}

/* A client sends no fds: the server's reader closes them as they arrive (the
 * pipe sees its last writer go) instead of keeping them for a frame. */
static void test_reader_c2s_fds(void)
{
    int sv[2], pfd[2];
    pair(sv, 0);
    g_assert_cmpint(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), ==, 0);
    vmsig_wire_reader *r = vmsig__wire_reader_new(VMSIG_WIRE_C2S);
    char byte = 'x';
    struct iovec iov = { &byte, 1 };
    union {
        char c[CMSG_SPACE(sizeof(int))];
        struct cmsghdr a;
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.c,
                          .msg_controllen = sizeof(cm.c) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pfd[1], sizeof(int));
    g_assert_cmpint(sendmsg(sv[0], &msg, 0), ==, 1);
    close(pfd[1]);
    g_assert_cmpint(vmsig__wire_reader_fill(r, sv[1]), ==, -EPROTO);
    g_assert_nonnull(strstr(vmsig__wire_reader_error(r), "1 fds on a client frame"));
    char b;
    g_assert_cmpint(read(pfd[0], &b, 1), ==, 0); /* no writer left anywhere */
    close(pfd[0]);
    close(sv[0]);
    close(sv[1]);
    vmsig__wire_reader_free(r);
}

/* A reader that expects one kind refuses another from its header alone,
 * before reserving room for its payload; 0 lifts the restriction. */
static void test_reader_expect(void)
{
    int sv[2];
    pair(sv, 0);
    vmsig_wire_reader *r = vmsig__wire_reader_new(VMSIG_WIRE_C2S);
    vmsig__wire_reader_expect(r, VMSIG_MSG_HELLO);
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_MEMWRITE,
                         .len = sizeof(vmsig_wire_memwrite) + VMSIG_MEMWRITE_MAX };
    g_assert_cmpint(write(sv[0], &h, sizeof(h)), ==, sizeof(h));
    vmsig_wire_frame f;
    g_assert_cmpint(next_frame(r, sv[1], &f), ==, -EPROTO);
    g_assert_nonnull(strstr(vmsig__wire_reader_error(r), "expected HELLO first, got memwrite"));
    g_assert_cmpuint(vmsig__wire_reader_pending(r), ==, sizeof(h));
    vmsig__wire_reader_free(r);

    /* The expected kind passes; after expect(0) any client kind does. */
    r = vmsig__wire_reader_new(VMSIG_WIRE_C2S);
    vmsig__wire_reader_expect(r, VMSIG_MSG_HELLO);
    vmsig_wire_hello hello = { .major = VMSIG_WIRE_MAJOR };
    h = (vmsig_wire_hdr){ .kind = VMSIG_MSG_HELLO, .len = sizeof(hello), .id = 1 };
    g_assert_cmpint(write(sv[0], &h, sizeof(h)), ==, sizeof(h));
    g_assert_cmpint(write(sv[0], &hello, sizeof(hello)), ==, sizeof(hello));
    g_assert_cmpint(next_frame(r, sv[1], &f), ==, 1);
    g_assert_cmpuint(f.hdr.kind, ==, VMSIG_MSG_HELLO);
    vmsig__wire_reader_expect(r, 0);
    h = (vmsig_wire_hdr){ .kind = VMSIG_CMD_NOP, .id = 2 };
    g_assert_cmpint(write(sv[0], &h, sizeof(h)), ==, sizeof(h));
    g_assert_cmpint(next_frame(r, sv[1], &f), ==, 1);
    g_assert_cmpuint(f.hdr.kind, ==, VMSIG_CMD_NOP);
    close(sv[0]);
    close(sv[1]);
    vmsig__wire_reader_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/wire/table", test_table);
    g_test_add_func("/wire/check-hdr", test_check_hdr);
    g_test_add_func("/wire/check-payload", test_check_payload);
    g_test_add_func("/wire/codec", test_codec);
    g_test_add_func("/wire/roundtrip-fds", test_roundtrip_fds);
    g_test_add_func("/wire/partial-writes", test_partial);
    g_test_add_func("/wire/writer-drop", test_writer_drop);
    g_test_add_func("/wire/reader-c2s-fds", test_reader_c2s_fds);
    g_test_add_func("/wire/reader-expect", test_reader_expect);
    return g_test_run();
}
