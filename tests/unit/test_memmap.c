/*
 * test_memmap.c - MEMCTX over a real socket: a memfd-backed "guest RAM" with
 * a below/above-4G split plus a second fd, mapped read-only by the client;
 * what read-only means for the received descriptor; generations; who owns
 * the fds of a received MEMCTX; shrink seals.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmsig/vmsig_client.h"
#include "vmsig/vmsig_core.h"

#define LOW   (32u * 1024)  /* gpa 0..32K      -> fd0 offset 0 */
#define HIGH  (16u * 1024)  /* gpa 4G..4G+16K  -> fd0 offset 32K */
#define HIGH2 (16u * 1024)  /* gpa 4G+16K..+16K -> fd1 offset 0 */
#define G4    (1ull << 32)

typedef struct server {
    vmsig_core *core;
    GThread *th;
    volatile int stop;
    char *dir, *path;
    GMutex lock;
    GCond cond;
    int ready;
    int ram0, ram1;      /* the server's own read-write memfds */
    uint8_t *w0, *w1;    /* its writable mappings */
} server;

/* A read-only descriptor of the same memfd, as the QEMU side makes it. */
static int ro_fd(int fd)
{
    char p[64];
    g_snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    int r = open(p, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(r, >=, 0);
    return r;
}

static void publish_map(server *s, uint64_t gen, int split)
{
    vmsig_wire_memctx mc = { .generation = gen, .ram_size = LOW + HIGH + HIGH2 };
    vmsig_wire_memseg segs[3] = {
        { .gpa = 0, .size = LOW, .offset = 0, .fd_index = 0 },
        { .gpa = G4, .size = HIGH, .offset = LOW, .fd_index = 0 },
        { .gpa = G4 + HIGH, .size = HIGH2, .offset = 0, .fd_index = 1 },
    };
    int fds[2] = { ro_fd(s->ram0), ro_fd(s->ram1) };
    mc.nseg = split ? 3 : 1;
    if (!split) {
        mc.ram_size = LOW;
    }
    g_assert_cmpint(vmsig_core_publish_memctx(s->core, 0, &mc, segs, fds, split ? 2 : 1), ==, 0);
    close(fds[0]);
    close(fds[1]);
}

static int backend_cmd(void *opaque, const vmsig_event *cmd, uint32_t principal,
                       vmsig_reply *reply)
{
    server *s = opaque;
    if (cmd->kind == VMSIG_CMD_VM && cmd->u.cmd.op == VMSIG_VM_STOP) {
        /* Test hook: the memory map changes (generation 2, low RAM only). */
        publish_map(s, 2, 0);
    }
    return 0;
}

static const vmsig_backend_ops backend = { .command = backend_cmd };

static gpointer serve(gpointer data)
{
    server *s = data;
    int err;
    char *text = g_strdup_printf("uid:%u endpoints=0 caps=OBSERVE,MEMCTX,VM\n", (unsigned)getuid());
    vmsig_grants *g = vmsig_grants_parse(text, &err, NULL, 0);
    g_free(text);
    vmsig_core_config cfg = { .version = VMSIG_CORE_CONFIG_VERSION, .backend = &backend,
                              .backend_opaque = s };
    s->core = vmsig_core_new(&cfg, &err);
    g_assert_nonnull(s->core);
    g_assert_cmpint(vmsig_core_listen(s->core, s->path, g), ==, 0);
    /* A writable fd is refused: only read-only descriptions are handed out. */
    vmsig_wire_memctx mc = { .generation = 1, .ram_size = LOW, .nseg = 1 };
    vmsig_wire_memseg seg = { .size = LOW };
    g_assert_cmpint(vmsig_core_publish_memctx(s->core, 0, &mc, &seg, &s->ram0, 1), ==, -EACCES);
    publish_map(s, 1, 1);
    g_mutex_lock(&s->lock);
    s->ready = 1;
    g_cond_signal(&s->cond);
    g_mutex_unlock(&s->lock);
    vmsig_loop_run(s->core, &s->stop, -1);
    vmsig_core_free(s->core);
    vmsig_grants_free(g);
    return NULL;
}

static server *server_start(void)
{
    server *s = g_new0(server, 1);
    s->dir = g_dir_make_tmp("vmsig-memmap-XXXXXX", NULL);
    s->path = g_build_filename(s->dir, "s", NULL);
    s->ram0 = memfd_create("ram0", MFD_CLOEXEC);
    s->ram1 = memfd_create("ram1", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(s->ram0, LOW + HIGH), ==, 0);
    g_assert_cmpint(ftruncate(s->ram1, HIGH2), ==, 0);
    /* What the server does where it creates guest RAM: no reopening
     * read-write through /proc by other users. */
    g_assert_cmpint(fchmod(s->ram0, 0600), ==, 0);
    g_assert_cmpint(fchmod(s->ram1, 0600), ==, 0);
    s->w0 = mmap(NULL, LOW + HIGH, PROT_READ | PROT_WRITE, MAP_SHARED, s->ram0, 0);
    s->w1 = mmap(NULL, HIGH2, PROT_READ | PROT_WRITE, MAP_SHARED, s->ram1, 0);
    g_assert_true(s->w0 != MAP_FAILED && s->w1 != MAP_FAILED);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    s->th = g_thread_new("server", serve, s);
    g_mutex_lock(&s->lock);
    while (!s->ready) {
        g_cond_wait(&s->cond, &s->lock);
    }
    g_mutex_unlock(&s->lock);
    return s;
}

static void server_stop(server *s)
{
    s->stop = 1;
    g_thread_join(s->th);
    munmap(s->w0, LOW + HIGH);
    munmap(s->w1, HIGH2);
    close(s->ram0);
    close(s->ram1);
    rmdir(s->dir);
    g_free(s->path);
    g_free(s->dir);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
    g_free(s);
}

static vmsig_client *connect_to(server *s, int auto_map)
{
    int err;
    vmsig_client_config cfg = { .version = VMSIG_CLIENT_CONFIG_VERSION, .path = s->path,
                                .timeout_ms = 3000, .auto_map = auto_map };
    vmsig_client *c = vmsig_client_connect(&cfg, &err);
    g_assert_nonnull(c);
    return c;
}

static void next_memctx(vmsig_client *c, vmsig_msg *m)
{
    do {
        g_assert_cmpint(vmsig_client_next(c, m, 3000), ==, 0);
    } while (m->ev.kind != VMSIG_EV_MEMCTX);
}

static void test_map_and_read(void)
{
    server *s = server_start();
    vmsig_client *c = connect_to(s, 1);
    vmsig_msg m;
    next_memctx(c, &m);
    g_assert_cmpuint(m.nfds, ==, 0); /* consumed by auto_map */
    g_assert_cmpuint(m.ev.flags & VMSIG_F_SNAPSHOT, ==, VMSIG_F_SNAPSHOT);
    vmsig_memmap *map = vmsig_client_memmap(c);
    g_assert_nonnull(map);
    g_assert_cmpuint(vmsig_memmap_generation(map), ==, 1);
    g_assert_cmpuint(vmsig_memmap_nseg(map), ==, 3);
    g_assert_cmpuint(vmsig_memmap_ram_size(map), ==, LOW + HIGH + HIGH2);
    g_assert_cmpuint(vmsig_memmap_seg(map, 1)->gpa, ==, G4);

    /* Writes through the server's writable mappings are seen. */
    memcpy(s->w0 + 100, "below4G", 8);
    memcpy(s->w0 + LOW + HIGH - 4, "ABCD", 4); /* last bytes of gpa 4G.. */
    memcpy(s->w1, "EFGH", 4);                  /* first bytes of the 2nd fd */
    char buf[16] = "";
    g_assert_cmpint(vmsig_memmap_read(map, 100, buf, 8), ==, 0);
    g_assert_cmpstr(buf, ==, "below4G");
    const char *p = vmsig_memmap_ptr(map, 100, 8);
    g_assert_nonnull(p);
    g_assert_cmpstr(p, ==, "below4G");
    /* Across two segments (and two fds). */
    g_assert_cmpint(vmsig_memmap_read(map, G4 + HIGH - 4, buf, 8), ==, 0);
    g_assert_cmpmem(buf, 8, "ABCDEFGH", 8);
    g_assert_null(vmsig_memmap_ptr(map, G4 + HIGH - 4, 8)); /* not one segment */
    /* Outside RAM: the hole below 4G, past the end, wrap-around. */
    g_assert_cmpint(vmsig_memmap_read(map, LOW, buf, 1), ==, -EFAULT);
    g_assert_cmpint(vmsig_memmap_read(map, LOW - 4, buf, 8), ==, -EFAULT);
    g_assert_cmpint(vmsig_memmap_read(map, G4 + HIGH + HIGH2 - 1, buf, 2), ==, -EFAULT);
    g_assert_cmpint(vmsig_memmap_read(map, UINT64_MAX - 2, buf, 8), ==, -EFAULT);
    g_assert_null(vmsig_memmap_ptr(map, LOW, 1));

    /* A new generation replaces the map; the old reference stays valid. */
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_STOP, NULL), ==, 0);
    next_memctx(c, &m);
    g_assert_cmpuint(m.ev.u.memctx.generation, ==, 2);
    vmsig_memmap *map2 = vmsig_client_memmap(c);
    g_assert_true(map2 != map);
    g_assert_cmpuint(vmsig_memmap_generation(map2), ==, 2);
    g_assert_cmpuint(vmsig_memmap_nseg(map2), ==, 1);
    g_assert_cmpint(vmsig_memmap_read(map2, G4, buf, 1), ==, -EFAULT);
    g_assert_cmpint(vmsig_memmap_read(map, G4 + HIGH - 4, buf, 8), ==, 0);
    g_assert_cmpmem(buf, 8, "ABCDEFGH", 8);
    vmsig_memmap_unref(map);
    g_assert_cmpint(vmsig_memmap_read(map2, 100, buf, 8), ==, 0);
    g_assert_cmpstr(buf, ==, "below4G");
    vmsig_memmap_unref(map2);
    vmsig_client_close(c);
    server_stop(s);
}

static void test_read_only(void)
{
    server *s = server_start();
    vmsig_client *c = connect_to(s, 0);
    vmsig_msg m;
    next_memctx(c, &m);
    g_assert_cmpuint(m.nfds, ==, 2);
    int fd = m.fds[0];
    g_assert_cmpint(fcntl(fd, F_GETFL) & O_ACCMODE, ==, O_RDONLY);
    g_assert_cmpint(fcntl(fd, F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
    struct stat a, b;
    fstat(fd, &a);
    fstat(s->ram0, &b);
    g_assert_true(a.st_ino == b.st_ino);

    errno = 0;
    g_assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
    g_assert_cmpint(errno, ==, EACCES);
    void *ro = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    g_assert_true(ro != MAP_FAILED);
    errno = 0;
    g_assert_cmpint(mprotect(ro, 4096, PROT_READ | PROT_WRITE), ==, -1);
    g_assert_cmpint(errno, ==, EACCES);
    munmap(ro, 4096);
    errno = 0;
    g_assert_cmpint(write(fd, "x", 1), ==, -1);
    g_assert_cmpint(errno, ==, EBADF);
    errno = 0;
    g_assert_cmpint(ftruncate(fd, 0), ==, -1);
    g_assert_cmpint(errno, ==, EINVAL); /* Linux: not open for writing */
    g_assert_cmpint(fstat(fd, &a), ==, 0);
    g_assert_cmpint(a.st_size, ==, LOW + HIGH);
    /* Reopening through /proc: the mode the server set decides (root
     * bypasses it; see docs/protocol.rst "Read-only memory"). */
    char path[64];
    g_snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    g_assert_cmpuint(a.st_mode & 0777, ==, 0600);
    if (geteuid() != 0) {
        errno = 0;
        int rw = open(path, O_RDWR);
        g_assert_cmpint(rw, ==, -1);
        g_assert_cmpint(errno, ==, EACCES);
    } else {
        g_test_message("running as root: the inode mode does not stop a read-write reopen");
    }

    /* The fds are the client's: taking one keeps it past the next call. */
    int kept = vmsig_client_take_fd(c, 1);
    g_assert_cmpint(kept, ==, m.fds[1]);
    g_assert_cmpint(vmsig_client_take_fd(c, 1), ==, -EBADF); /* taken already */
    g_assert_cmpint(vmsig_client_take_fd(c, 2), ==, -EBADF); /* no such fd */
    vmsig_memmap *map = vmsig_memmap_new(&m.ev, m.fds, 1, NULL);
    g_assert_null(map); /* segment 2 needs fd 1, which we withheld */
    int err;
    int fds2[2] = { m.fds[0], -1 };
    fds2[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    map = vmsig_memmap_new(&m.ev, fds2, 2, &err);
    g_assert_null(map);
    g_assert_cmpint(err, ==, -EINVAL); /* segment outside its fd */
    close(fds2[1]);
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, NULL), ==, 0); /* fds[0] closed now */
    g_assert_cmpint(fcntl(fd, F_GETFD), ==, -1);
    g_assert_cmpint(fcntl(kept, F_GETFD), >=, 0);                       /* taken: still open */
    g_assert_cmpint(vmsig_client_take_fd(c, 0), ==, -EBADF);            /* too late */
    close(kept);
    vmsig_client_close(c);
    server_stop(s);
}

/*
 * The client keeps its own record of the fds it handed out: what the caller
 * does with its vmsig_msg afterwards (reuse it, let it go out of scope) does
 * not decide which fds get closed.
 */
static void test_fds_stay_clients(void)
{
    server *s = server_start();
    vmsig_client *c = connect_to(s, 0);
    vmsig_msg *m = g_new0(vmsig_msg, 1);
    next_memctx(c, m);
    g_assert_cmpuint(m->nfds, ==, 2);
    int fd0 = m->fds[0], fd1 = m->fds[1];
    /* The caller reuses its struct: writing -1 is no longer "taking". */
    memset(m, 0xff, sizeof(*m));
    g_free(m);
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, NULL), ==, 0);
    g_assert_cmpint(fcntl(fd0, F_GETFD), ==, -1); /* closed by the client */
    g_assert_cmpint(fcntl(fd1, F_GETFD), ==, -1);

    /* A new map; the message struct is gone before the next call again. */
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_STOP, NULL), ==, 0);
    vmsig_msg m2;
    next_memctx(c, &m2);
    g_assert_cmpuint(m2.nfds, ==, 1);
    fd0 = m2.fds[0];
    int kept = vmsig_client_take_fd(c, 0);
    g_assert_cmpint(kept, ==, fd0);
    memset(&m2, 0, sizeof(m2)); /* slot "0": nothing to do with fd 0 */
    vmsig_client_close(c);
    g_assert_cmpint(fcntl(kept, F_GETFD), >=, 0); /* taken: ours, still open */
    close(kept);
    g_assert_cmpint(fcntl(0, F_GETFD), >=, 0);    /* stdin untouched */
    server_stop(s);
}

/* A one-segment MEMCTX over fd 0 of `size` bytes. */
static vmsig_memmap *map_one(int fd, uint64_t size, int *err)
{
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_EV_MEMCTX;
    vmsig_wire_memseg seg = { .gpa = 0x1000, .size = size, .offset = 0, .fd_index = 0 };
    ev.u.memctx = (vmsig_wire_memctx){ .generation = 1, .ram_size = size, .nseg = 1 };
    ev.ool = &seg;
    ev.ool_len = sizeof(seg);
    return vmsig_memmap_new(&ev, &fd, 1, err);
}

/*
 * Shrink seals: a memfd sealed with F_SEAL_SHRINK (what QEMU's memfd
 * backend does unless seal=off) cannot shrink under the map; an unsealed one
 * can, and then a read of the lost range faults. Both are mapped; the map
 * says which it is.
 */
static void test_sealed(void)
{
    const uint64_t sz = 64 * 1024;
    int err = 1;

    int sealed = memfd_create("sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    g_assert_cmpint(ftruncate(sealed, sz), ==, 0);
    g_assert_cmpint(fcntl(sealed, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), ==, 0);
    vmsig_memmap *m = map_one(sealed, sz, &err);
    g_assert_nonnull(m);
    g_assert_cmpint(err, ==, 0);
    g_assert_cmpint(vmsig_memmap_sealed(m), ==, 1);
    errno = 0;
    g_assert_cmpint(ftruncate(sealed, 4096), ==, -1); /* the seal holds */
    g_assert_cmpint(errno, ==, EPERM);
    char buf[8];
    g_assert_cmpint(vmsig_memmap_read(m, 0x1000 + sz - 8, buf, 8), ==, 0);
    vmsig_memmap_unref(m);

    /* Sealable but not sealed (seal=off), and not sealable at all. */
    int open_ = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    int plain = memfd_create("plain", MFD_CLOEXEC); /* seals = F_SEAL_SEAL only */
    g_assert_cmpint(ftruncate(open_, sz), ==, 0);
    g_assert_cmpint(ftruncate(plain, sz), ==, 0);
    g_assert_cmpint(fcntl(open_, F_ADD_SEALS, F_SEAL_GROW), ==, 0); /* not SHRINK */
    m = map_one(open_, sz, &err);
    g_assert_nonnull(m);
    g_assert_cmpint(vmsig_memmap_sealed(m), ==, 0);
    vmsig_memmap_unref(m);
    m = map_one(plain, sz, &err);
    g_assert_nonnull(m);
    g_assert_cmpint(vmsig_memmap_sealed(m), ==, 0);
    vmsig_memmap_unref(m);

    /* Two fds, one sealed and one not: not sealed. */
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_EV_MEMCTX;
    vmsig_wire_memseg segs[2] = {
        { .gpa = 0, .size = sz, .offset = 0, .fd_index = 0 },
        { .gpa = sz, .size = sz, .offset = 0, .fd_index = 1 },
    };
    ev.u.memctx = (vmsig_wire_memctx){ .generation = 1, .ram_size = 2 * sz, .nseg = 2 };
    ev.ool = segs;
    ev.ool_len = sizeof(segs);
    int fds[2] = { sealed, plain };
    m = vmsig_memmap_new(&ev, fds, 2, &err);
    g_assert_nonnull(m);
    g_assert_cmpint(vmsig_memmap_sealed(m), ==, 0);
    vmsig_memmap_unref(m);
    fds[1] = sealed;
    m = vmsig_memmap_new(&ev, fds, 2, &err);
    g_assert_nonnull(m);
    g_assert_cmpint(vmsig_memmap_sealed(m), ==, 1);
    vmsig_memmap_unref(m);

    /* What "unsealed" risks: the file shrinks and the read faults. Done in a
     * child, which must die of SIGBUS. */
    m = map_one(plain, sz, &err);
    g_assert_nonnull(m);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        signal(SIGBUS, SIG_DFL); /* not a sanitizer's handler */
        if (ftruncate(plain, 0) != 0) {
            _exit(2);
        }
        vmsig_memmap_read(m, 0x1000, buf, 8);
        _exit(0);
    }
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGBUS);
    vmsig_memmap_unref(m);
    close(sealed);
    close(open_);
    close(plain);
}

static void test_unavailable(void)
{
    vmsig_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = VMSIG_EV_MEMCTX;
    ev.u.memctx.status = -ENODEV;
    g_strlcpy(ev.u.memctx.why, "guest RAM is anonymous", sizeof(ev.u.memctx.why));
    int err = 0;
    g_assert_null(vmsig_memmap_new(&ev, NULL, 0, &err));
    g_assert_cmpint(err, ==, -ENODEV);
}

static blkcnt_t blocks(int fd)
{
    struct stat st;
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    return st.st_blocks;
}

/*
 * Holes: a 64 MiB memfd with data in two pages only. vmsig_memmap_data finds
 * exactly those, a scan that reads only data (and read_sparse) leaves the
 * memfd's allocated size as it was, while a plain read of the same range
 * allocates the holes it touches (what the scans did before).
 */
static void test_holes(void)
{
    const uint64_t sz = 64ull << 20, a = 0x200000, b = 0x3000000;
    int fd = memfd_create("holes", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(fd, (off_t)sz), ==, 0);
    g_assert_cmpint(pwrite(fd, "first", 5, (off_t)a), ==, 5);
    g_assert_cmpint(pwrite(fd, "second", 6, (off_t)b + 100), ==, 6);
    int err = 1;
    vmsig_memmap *m = map_one(fd, sz, &err); /* gpa 0x1000 = offset 0 */
    g_assert_nonnull(m);
    blkcnt_t before = blocks(fd);

    uint64_t ds, de, n = 0, at = 0x1000, end = 0x1000 + sz;
    uint64_t found[4];
    while (vmsig_memmap_data(m, at, end, &ds, &de) == 1 && n < 4) {
        found[n++] = ds;
        g_assert_cmpuint(de, >, ds);
        g_assert_cmpuint(de - ds, <=, 2u << 20); /* a page, or a huge page at most */
        at = de;
    }
    g_assert_cmpuint(n, ==, 2);
    g_assert_cmpuint(found[0], <=, 0x1000 + a);
    g_assert_cmpuint(found[1], <=, 0x1000 + b + 100);
    g_assert_cmpint(vmsig_memmap_data(m, 0x1000, 0x1000 + a - 4096, &ds, &de), ==, 0);
    g_assert_cmpint(vmsig_memmap_data(m, 0, 0x1000, &ds, &de), ==, 0); /* not RAM */

    /* read_sparse of everything: the bytes, zeros elsewhere, nothing allocated */
    uint8_t *buf = g_malloc(sz);
    memset(buf, 0xff, sz);
    g_assert_cmpint(vmsig_memmap_read_sparse(m, 0x1000, buf, sz), ==, 0);
    g_assert_cmpmem(buf + a, 5, "first", 5);
    g_assert_cmpmem(buf + b + 100, 6, "second", 6);
    g_assert_cmpint(buf[a - 1], ==, 0);
    g_assert_cmpint(buf[sz - 1], ==, 0);
    g_assert_cmpint(vmsig_memmap_read_sparse(m, 0x1000 + sz - 4, buf, 8), ==, -EFAULT);
    g_assert_cmpint(blocks(fd), ==, before);

    /* the old way, a plain read, allocates the holes it reads */
    g_assert_cmpint(vmsig_memmap_read(m, 0x1000, buf, 16u << 20), ==, 0);
    g_assert_cmpint(blocks(fd), >, before + (8 << 20) / 512);
    g_free(buf);
    vmsig_memmap_unref(m);
    close(fd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/memmap/map-and-read", test_map_and_read);
    g_test_add_func("/memmap/read-only", test_read_only);
    g_test_add_func("/memmap/unavailable", test_unavailable);
    g_test_add_func("/memmap/fds-stay-clients", test_fds_stay_clients);
    g_test_add_func("/memmap/sealed", test_sealed);
    g_test_add_func("/memmap/holes", test_holes);
    return g_test_run();
}
