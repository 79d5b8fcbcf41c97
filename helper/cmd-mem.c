/*
 * cmd-mem.c - vmsig-helper: read, dump and find read guest RAM straight from
 * the read-only MEMCTX mapping (no round trip to QEMU); write goes through
 * CMD_MEMWRITE so QEMU applies it and tells every MEMCTX subscriber.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helper.h"

#define CHUNK (1u << 20)

static int usable(const hconn *h)
{
    return h->c && !h->gone;
}

void keep_memctx(hconn *h, const vmsig_msg *m)
{
    if (m->ev.kind != VMSIG_EV_MEMCTX || m->ev.endpoint != h->ep) {
        return;
    }
    vmsig_memmap_unref(h->map);
    h->map = NULL;
    h->mc = m->ev.u.memctx;
    h->have_mc = 1;
    if (!h->mc.status) {
        int err = 0;
        /* Our own map of exactly this endpoint; the fds stay the client's. */
        h->map = vmsig_memmap_new(&m->ev, m->fds, m->nfds, &err);
        if (!h->map) {
            h->mc.status = err;
            snprintf(h->mc.why, sizeof(h->mc.why), "cannot map it: %s", strerror(-err));
        }
    }
}

vmsig_memmap *wait_memmap(hconn *h, int *rc)
{
    int64_t deadline = G.timeout_ms < 0 ? -1 : now_ms() + G.timeout_ms;

    if (!(h->w->caps & VMSIG_CAP_MEMCTX)) {
        *rc = fail(h, -EPERM, "memctx", VMSIG_CAP_MEMCTX, 0);
        return NULL;
    }
    for (;;) {
        vmsig_msg m;
        if (h->have_mc) {
            break;
        }
        int64_t left = deadline < 0 ? -1 : deadline - now_ms();
        int r = vmsig_client_next(h->c, &m, deadline < 0 ? -1 : left < 0 ? 0 : (int)left);
        if (r == -ETIMEDOUT) {
            errmsg(h, "no MEMCTX for endpoint %u within %d ms (is the vmsig object attached to "
                      "this VM's memory?)", h->ep, G.timeout_ms);
            *rc = EX_OTHER;
            h->rc = h->rc ? h->rc : EX_OTHER;
            return NULL;
        }
        if (r < 0) {
            *rc = fail(h, r, "memctx", VMSIG_CAP_MEMCTX, 0);
            return NULL;
        }
        keep_memctx(h, &m);
    }
    if (h->mc.status) {
        char why[sizeof(h->mc.why) + 1];
        snprintf(why, sizeof(why), "%.*s", (int)sizeof(h->mc.why), h->mc.why);
        errmsg(h, "MEMCTX unavailable: %s", why);
        if (G.json) {
            printf("{\"socket\":%s,\"ep\":%u,\"ok\":false,\"exit\":%d,\"error\":%s}\n",
                   jstr(h->path), h->ep, EX_NOMEM, jstr(why));
        }
        *rc = EX_NOMEM;
        h->rc = h->rc ? h->rc : EX_NOMEM;
        return NULL;
    }
    return vmsig_memmap_ref(h->map);
}

static int read_failed(hconn *h, const vmsig_memmap *map, uint64_t gpa, uint64_t len)
{
    errmsg(h, "[0x%" PRIx64 ", 0x%" PRIx64 ") is not guest RAM in MEMCTX generation %" PRIu64,
           gpa, gpa + len, vmsig_memmap_generation(map));
    h->rc = h->rc ? h->rc : EX_OTHER;
    return EX_OTHER;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- read ---- */

int print_bytes(hconn *h, const char *cmd, const char *key, uint64_t addr, int digits, int raw,
                const uint8_t *buf, size_t n)
{
    if (raw) {
        int r = write_all(1, buf, n);
        if (r < 0) {
            errmsg(h, "%s: writing stdout: %s", cmd, strerror(-r));
            h->rc = h->rc ? h->rc : EX_OTHER;
        }
        return r;
    }
    if (G.json) {
        /* One object per 4 KiB or less: {"gpa"|"va":..,"len":..,"hex":".."} */
        for (size_t o = 0; o < n; o += 4096) {
            size_t k = n - o < 4096 ? n - o : 4096;
            printf("{\"socket\":%s,\"ep\":%u,\"%s\":%" PRIu64 ",\"len\":%zu,\"hex\":\"",
                   jstr(h->path), h->ep, key, addr + o, k);
            for (size_t j = 0; j < k; j++) {
                printf("%02x", buf[o + j]);
            }
            printf("\"}\n");
        }
        return 0;
    }
    hexdump(h, addr, digits, buf, n);
    return 0;
}

void hexdump(const hconn *h, uint64_t addr, int digits, const uint8_t *b, size_t len)
{
    for (size_t off = 0; off < len; off += 16) {
        char line[160];
        size_t n = (size_t)snprintf(line, sizeof(line), "%0*" PRIx64 ": ", digits, addr + off);
        for (size_t i = 0; i < 16; i++) {
            if (off + i < len) {
                n += (size_t)snprintf(line + n, sizeof(line) - n, "%02x", b[off + i]);
            } else {
                n += (size_t)snprintf(line + n, sizeof(line) - n, "  ");
            }
            if (i % 2) {
                line[n++] = ' ';
            }
        }
        line[n++] = ' ';
        for (size_t i = 0; i < 16 && off + i < len; i++) {
            uint8_t c = b[off + i];
            line[n++] = c >= 0x20 && c < 0x7f ? (char)c : '.';
        }
        line[n] = 0;
        out(h, "%s", line);
    }
}

int cmd_read(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "raw", no_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    int raw = 0, opt;
    uint64_t gpa, len;

    while ((opt = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        if (opt != 'r') {
            return usage_error("read", "bad option");
        }
        raw = 1;
    }
    if (argc - optind != 2) {
        return usage_error("read", "expected GPA LEN");
    }
    if (parse_u64(argv[optind], &gpa) < 0) {
        return usage_error("read", "bad GPA '%s'", argv[optind]);
    }
    if (parse_size(argv[optind + 1], &len) < 0 || !len || gpa + len < gpa) {
        return usage_error("read", "bad LEN '%s'", argv[optind + 1]);
    }
    connect_all(1u << VMSIG_SRC_MEMCTX);
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        return EX_OTHER;
    }
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        int rc;
        if (!usable(h)) {
            continue;
        }
        vmsig_memmap *map = wait_memmap(h, &rc);
        if (!map) {
            continue;
        }
        for (uint64_t off = 0; off < len; off += CHUNK) {
            size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
            if (vmsig_memmap_read(map, gpa + off, buf, n) < 0) {
                read_failed(h, map, gpa + off, n);
                break;
            }
            if (print_bytes(h, "read", "gpa", gpa + off, 8, raw, buf, n) < 0) {
                break;
            }
        }
        vmsig_memmap_unref(map);
    }
    free(buf);
    fflush(stdout);
    return final_rc(0);
}

/* ---- dump ---- */


/* The map's segments sorted by GPA (malloc'ed). */
/* A copy of the map's segments (ascending GPA, as vmsig_memmap_seg gives them). */
static vmsig_wire_memseg *sorted_segs(const vmsig_memmap *map, unsigned *n)
{
    *n = vmsig_memmap_nseg(map);
    vmsig_wire_memseg *s = calloc(*n ? *n : 1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    for (unsigned i = 0; i < *n; i++) {
        s[i] = *vmsig_memmap_seg(map, i);
    }
    return s;
}

static void progress(const char *file, uint64_t done_bytes, uint64_t total, int *last)
{
    int pct = total ? (int)(done_bytes * 100 / total) : 100;
    if (pct == *last) {
        return;
    }
    *last = pct;
    char bar[41];
    int fill = pct * 40 / 100;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(40 - fill));
    bar[40] = 0;
    fprintf(stderr, "\r%s [%s] %3d%% %s/%s ", file, bar, pct, human_size(done_bytes),
            human_size(total));
    if (done_bytes >= total) {
        fprintf(stderr, "\n");
    }
}

static int dump_one(hconn *h, const char *file, int have_range, uint64_t gpa, uint64_t len,
                    uint8_t *buf)
{
    int rc;
    vmsig_memmap *map = wait_memmap(h, &rc);
    if (!map) {
        return rc;
    }
    unsigned nseg;
    vmsig_wire_memseg one = { .gpa = gpa, .size = len };
    vmsig_wire_memseg *segs = have_range ? &one : sorted_segs(map, &nseg);
    if (have_range) {
        nseg = 1;
    }
    if (!segs) {
        vmsig_memmap_unref(map);
        return EX_OTHER;
    }
    uint64_t total = 0, written = 0;
    for (unsigned i = 0; i < nseg; i++) {
        total += segs[i].size;
    }
    /* Note whether we create the file: only then is it ours to remove on
     * failure (never an existing file, a device or a FIFO). */
    int created = 0, fd = 1;
    if (strcmp(file, "-")) {
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        created = fd >= 0;
        if (fd < 0 && errno == EEXIST) {
            fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        }
    }
    int show = isatty(2) && !G.quiet && fd != 1, last = -1;
    struct stat ost;
    /* A regular output file gets the guest's holes as its own holes. */
    int seekable = fd >= 0 && fstat(fd, &ost) == 0 && S_ISREG(ost.st_mode), extend = 0;
    rc = EX_OK;
    if (fd < 0) {
        errmsg(h, "dump: %s: %s", file, strerror(errno));
        rc = EX_OTHER;
    }
    for (unsigned i = 0; i < nseg && rc == EX_OK; i++) {
        for (uint64_t off = 0; off < segs[i].size && rc == EX_OK; off += CHUNK) {
            if (g_stop) {
                errmsg(h, "dump: interrupted; %s %s", file,
                       created ? "removed" : "is incomplete");
                rc = EX_OTHER;
                break;
            }
            uint64_t a = segs[i].gpa + off, ds, de;
            size_t n = segs[i].size - off < CHUNK ? (size_t)(segs[i].size - off) : CHUNK;
            int r = 0;
            /* Holes are never read (reading one through the mapping makes
             * the host allocate it): a chunk without data becomes a hole of
             * a regular output file, zeros elsewhere; a chunk with data is
             * copied with its holes as zeros. */
            if (vmsig_memmap_ptr(map, a, n) && vmsig_memmap_data(map, a, a + n, &ds, &de) == 0) {
                if (seekable && lseek(fd, (off_t)n, SEEK_CUR) >= 0) {
                    extend = 1;
                } else {
                    seekable = 0;
                    memset(buf, 0, n);
                    r = write_all(fd, buf, n);
                }
            } else if (vmsig_memmap_read_sparse(map, a, buf, n) < 0) {
                rc = read_failed(h, map, a, n);
                break;
            } else {
                r = write_all(fd, buf, n);
                extend = 0;
            }
            if (r < 0) {
                errmsg(h, "dump: writing %s: %s", file, strerror(-r));
                rc = EX_OTHER;
                break;
            }
            written += n;
            if (show) {
                progress(file, written, total, &last);
            }
        }
    }
    if (extend && rc == EX_OK) { /* the file ends in a hole: give it its size */
        off_t end = lseek(fd, 0, SEEK_CUR);
        if (end < 0 || ftruncate(fd, end) < 0) {
            errmsg(h, "dump: extending %s: %s", file, strerror(errno));
            rc = EX_OTHER;
        }
    }
    if (show && written < total && last >= 0) {
        fprintf(stderr, "\n");
    }
    if (fd > 1 && close(fd) < 0 && rc == EX_OK) {
        errmsg(h, "dump: closing %s: %s", file, strerror(errno));
        rc = EX_OTHER;
    }
    if (rc != EX_OK && created && unlink(file) < 0) {
        errmsg(h, "dump: removing %s: %s", file, strerror(errno));
    }
    if (rc == EX_OK) {
        if (G.json) {
            printf("{\"socket\":%s,\"ep\":%u,\"command\":\"dump\",\"ok\":true,\"file\":%s,"
                   "\"bytes\":%" PRIu64 ",\"segments\":%u,\"generation\":%" PRIu64 "}\n",
                   jstr(h->path), h->ep, jstr(file), written, nseg,
                   vmsig_memmap_generation(map));
        } else if (fd != 1) {
            note(h, "wrote %" PRIu64 " bytes (%s, %u segment%s, MEMCTX gen %" PRIu64 ") to %s",
                 written, human_size(written), nseg, nseg == 1 ? "" : "s",
                 vmsig_memmap_generation(map), file);
        }
    } else if (!h->rc) {
        h->rc = rc;
    }
    if (!have_range) {
        free(segs);
    }
    vmsig_memmap_unref(map);
    return rc;
}

int cmd_dump(int argc, char **argv)
{
    uint64_t gpa = 0, len = 0;
    int have_range = 0;

    if (argc != 2 && argc != 4) {
        return usage_error("dump", "expected FILE [GPA LEN]");
    }
    if (argc == 4) {
        if (parse_u64(argv[2], &gpa) < 0) {
            return usage_error("dump", "bad GPA '%s'", argv[2]);
        }
        if (parse_size(argv[3], &len) < 0 || !len || gpa + len < gpa) {
            return usage_error("dump", "bad LEN '%s'", argv[3]);
        }
        have_range = 1;
    }
    if (!strcmp(argv[1], "-") && G.nconn > 1) {
        return usage_error("dump", "FILE \"-\" takes one socket only");
    }
    connect_all(1u << VMSIG_SRC_MEMCTX);
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        return EX_OTHER;
    }
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        if (!usable(h)) {
            continue;
        }
        char *file = NULL;
        if (G.nconn > 1 ? asprintf(&file, "%s.%u", argv[1], i) < 0 : !(file = strdup(argv[1]))) {
            free(buf);
            return EX_OTHER;
        }
        dump_one(h, file, have_range, gpa, len, buf);
        free(file);
    }
    free(buf);
    fflush(stdout);
    return final_rc(0);
}

/* ---- find ---- */

int cmd_find(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "hex", no_argument, NULL, 'x' },
        { "max", required_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 },
    };
    int hex = 0, opt;
    uint64_t max = 0;
    uint8_t *pat = NULL;
    size_t plen;

    while ((opt = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        if (opt == 'x') {
            hex = 1;
        } else if (opt != 'm' || parse_u64(optarg, &max) < 0 || !max) {
            return usage_error("find", opt == 'm' ? "bad --max" : "bad option");
        }
    }
    /* PATTERN may be split over arguments ("find --hex de ad"): join them. */
    char *text = join_args(argc - optind, argv + optind);
    if (!text || !*text) {
        free(text);
        return usage_error("find", "expected a non-empty PATTERN");
    }
    if (hex) {
        int r = parse_hex_bytes(text, &pat, &plen);
        if (r < 0) {
            usage_error("find", "bad hex bytes '%s'", text);
        }
        free(text);
        if (r < 0) {
            return EX_USAGE;
        }
    } else {
        pat = (uint8_t *)text;
        plen = strlen(text);
    }
    if (!pat || plen > 4096) {
        free(pat);
        return usage_error("find", "PATTERN longer than 4096 bytes");
    }
    int zero_pat = 1;
    for (size_t k = 0; k < plen; k++) {
        zero_pat &= pat[k] == 0;
    }
    connect_all(1u << VMSIG_SRC_MEMCTX);
    uint8_t *buf = malloc(CHUNK + plen);
    for (unsigned c = 0; buf && c < G.nconn; c++) {
        hconn *h = &G.conns[c];
        unsigned nseg;
        uint64_t hits = 0;
        int rc;
        if (!usable(h)) {
            continue;
        }
        vmsig_memmap *map = wait_memmap(h, &rc);
        if (!map) {
            continue;
        }
        vmsig_wire_memseg *segs = sorted_segs(map, &nseg);
        for (unsigned i = 0; segs && i < nseg && !(max && hits >= max); ) {
            /* A run of GPA-contiguous segments is scanned as one range, so a
             * match may cross segment boundaries inside it. */
            uint64_t start = segs[i].gpa, end = segs[i].gpa + segs[i].size;
            for (i++; i < nseg && segs[i].gpa == end; i++) {
                end += segs[i].size;
            }
            for (uint64_t a = start; a < end && !(max && hits >= max) && !g_stop; a += CHUNK) {
                /* Read CHUNK plus plen-1 bytes of overlap; report only
                 * matches that start inside this CHUNK. */
                size_t n = end - a < CHUNK + plen - 1 ? (size_t)(end - a) : CHUNK + plen - 1;
                if (n < plen) {
                    break;
                }
                /* Holes are never read (see dump): a chunk without data
                 * cannot hold a pattern with a nonzero byte; one with data is
                 * read with its holes as zeros. */
                uint64_t ds, de;
                if (!zero_pat && vmsig_memmap_data(map, a, a + n, &ds, &de) == 0) {
                    continue;
                }
                if (vmsig_memmap_read_sparse(map, a, buf, n) < 0) {
                    read_failed(h, map, a, n);
                    break;
                }
                const uint8_t *p = buf, *lim = buf + n;
                while ((p = memmem(p, (size_t)(lim - p), pat, plen)) &&
                       (size_t)(p - buf) < CHUNK) {
                    uint64_t at = a + (uint64_t)(p - buf);
                    if (G.json) {
                        printf("{\"socket\":%s,\"ep\":%u,\"gpa\":%" PRIu64 "}\n", jstr(h->path),
                               h->ep, at);
                    } else {
                        out(h, "0x%" PRIx64, at);
                    }
                    if (max && ++hits >= max) {
                        break;
                    }
                    hits += !max;
                    p++;
                }
            }
        }
        note(h, "%" PRIu64 " match%s in MEMCTX gen %" PRIu64 "%s", hits, hits == 1 ? "" : "es",
             vmsig_memmap_generation(map), max && hits >= max ? " (--max reached)" : "");
        free(segs);
        vmsig_memmap_unref(map);
    }
    free(buf);
    free(pat);
    fflush(stdout);
    return final_rc(0);
}

/* ---- write ---- */

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = -errno;
        if (fd >= 0) {
            close(fd);
        }
        return e;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 4096, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (!b) {
            close(fd);
            return -ENOMEM;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            int e = -errno;
            free(b);
            close(fd);
            return e;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
        if (n == cap) {
            uint8_t *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
            }
            b = nb;
        }
    }
    close(fd);
    *buf = b;
    *len = n;
    return 0;
}

int cmd_write(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "string", no_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    int str = 0, opt;
    uint64_t gpa;
    uint8_t *data = NULL;
    size_t len = 0;

    while ((opt = getopt_long(argc, argv, "+", lopts, NULL)) != -1) {
        if (opt != 'S') {
            return usage_error("write", "bad option");
        }
        str = 1;
    }
    if (argc - optind < 2) {
        return usage_error("write", "expected GPA DATA");
    }
    if (parse_u64(argv[optind], &gpa) < 0) {
        return usage_error("write", "bad GPA '%s'", argv[optind]);
    }
    /* DATA may be split over several arguments: join them with spaces. */
    char *text = join_args(argc - optind - 1, argv + optind + 1);
    if (!text) {
        return EX_OTHER;
    }
    if (str) {
        data = (uint8_t *)text;
        len = strlen(text);
        text = NULL;
    } else if (text[0] == '@') {
        int r = read_file(text + 1, &data, &len);
        if (r < 0) {
            fprintf(stderr, "vmsig-helper: write: %s: %s\n", text + 1, strerror(-r));
            free(text);
            return EX_OTHER;
        }
    } else if (parse_hex_bytes(text, &data, &len) < 0) {
        usage_error("write", "bad hex DATA '%s' (e.g. 0xdeadbeef, \"de ad be ef\", @FILE, "
                    "--string TEXT)", text);
        free(text);
        return EX_USAGE;
    }
    free(text);
    if (!len || gpa + len < gpa) {
        free(data);
        return usage_error("write", "nothing to write");
    }
    connect_all(0);
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        int r = 0;
        if (!usable(h)) {
            continue;
        }
        /* Each CMD_MEMWRITE is atomic; larger data goes in 1 MiB pieces. */
        for (size_t off = 0; off < len && r == 0; off += VMSIG_MEMWRITE_MAX) {
            uint32_t n = len - off < VMSIG_MEMWRITE_MAX ? (uint32_t)(len - off) : VMSIG_MEMWRITE_MAX;
            r = vmsig_client_memwrite(h->c, h->ep, gpa + off, data + off, n);
        }
        if (r < 0) {
            char what[64];
            snprintf(what, sizeof(what), "write at 0x%" PRIx64, gpa);
            fail(h, r, what, VMSIG_CAP_MEMWRITE, VMSIG_CLASS_MEMWRITE);
            continue;
        }
        char msg[96];
        snprintf(msg, sizeof(msg), "wrote %zu byte%s at 0x%" PRIx64, len, len == 1 ? "" : "s", gpa);
        done(h, "write", msg);
    }
    free(data);
    return final_rc(0);
}
