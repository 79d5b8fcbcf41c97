/*
 * fuzz_wire.c - libFuzzer target: arbitrary bytes from a client into the
 * listening side's connection state machine (handshake, commands, garbage),
 * over a real UNIX socket to a core in this process.
 *
 * Input: a sequence of chunks. Each starts with a control byte:
 *   bits 0..5  chunk length - 1 (1..64 bytes follow)
 *   bit 6      publish a RUNSTATE event after this chunk (exercise deliver)
 *   bit 7      attach one fd (SCM_RIGHTS) to this chunk
 * Invariants checked after every run: no crash or sanitizer report, the
 * connection is gone and every fd the run created is closed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmsig/vmsig_core.h"

static vmsig_core *core;
static vmsig_grants *grants;
static char sock_path[108];

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        abort();
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1;
}

static int backend_cmd(void *opaque, const vmsig_event *cmd, uint32_t principal,
                       vmsig_reply *reply)
{
    if (cmd->kind == VMSIG_CMD_VM && cmd->u.cmd.op == VMSIG_VM_QUERY) {
        vmsig_wire_vminfo vi = { .state = VMSIG_RS_RUNNING, .running = 1 };
        memcpy(reply->body, &vi, sizeof(vi));
        reply->len = sizeof(vi);
    }
    return 0;
}

static const vmsig_backend_ops backend = { .command = backend_cmd };

static void run_core(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        vmsig_core_dispatch(core);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[] = "/tmp/vmsig-fuzz-XXXXXX";

/* libFuzzer ends with exit(): leave no socket or directory behind. */
static void fuzz_cleanup(void)
{
    unlink(sock_path);
    rmdir(fuzz_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int err;
    if (!mkdtemp(fuzz_dir)) {
        abort();
    }
    snprintf(sock_path, sizeof(sock_path), "%s/s", fuzz_dir);
    atexit(fuzz_cleanup);
    grants = vmsig_grants_parse("default endpoints=all caps=all\n", &err, NULL, 0);
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .queue_limit = 16,
                              .backend = &backend };
    core = vmsig_core_new(&cfg, &err);
    if (!grants || !core || vmsig_core_listen(core, sock_path, grants) < 0) {
        abort();
    }
    return 0;
}

static void drain(int fd)
{
    char buf[4096];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int before = count_fds();
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, sock_path, strlen(sock_path));
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        abort();
    }
    run_core(2);
    static uint64_t seq;
    size_t i = 0;
    while (i < size) {
        uint8_t ctl = data[i++];
        size_t n = (size_t)(ctl & 0x3f) + 1;
        if (n > size - i) {
            n = size - i;
        }
        if (n == 0) {
            break;
        }
        struct iovec iov = { (void *)(data + i), n };
        union {
            char c[CMSG_SPACE(sizeof(int))];
            struct cmsghdr a;
        } cm;
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        int extra = -1;
        if (ctl & 0x80) {
            extra = open("/dev/null", O_RDONLY | O_CLOEXEC);
            memset(&cm, 0, sizeof(cm));
            msg.msg_control = cm.c;
            msg.msg_controllen = sizeof(cm.c);
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &extra, sizeof(int));
        }
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (extra >= 0) {
            close(extra);
        }
        i += n;
        run_core(2);
        if (ctl & 0x40) {
            vmsig_event ev;
            memset(&ev, 0, sizeof(ev));
            ev.dir = VMSIG_DIR_UP;
            ev.kind = VMSIG_EV_RUNSTATE;
            ev.endpoint = (uint32_t)(seq++ % 3);
            ev.u.seam.state = (uint32_t)(seq % VMSIG_RS__COUNT);
            vmsig_core_publish(core, &ev);
            run_core(1);
        }
        drain(fd);
        if (w < 0 && errno != EAGAIN) {
            break; /* the server closed on us */
        }
    }
    close(fd);
    /* The server must notice and let go of everything. */
    for (int r = 0; r < 200; r++) {
        run_core(1);
        if (vmsig_core_control_count(core) == 0 && count_fds() == before) {
            return 0;
        }
        struct pollfd p = { .fd = vmsig_core_fd(core), .events = POLLIN };
        poll(&p, 1, 1);
    }
    fprintf(stderr, "fuzz-wire: leak: %u controls, fds %d -> %d\n",
            vmsig_core_control_count(core), before, count_fds());
    abort();
}
