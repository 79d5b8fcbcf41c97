/*
 * helper.h - shared state of vmsig-helper: the global options, the
 * connections (one per -s PATH), output labelling and the error -> exit code
 * mapping. Each subcommand lives in one of helper/cmd-*.c.
 */
#ifndef VMSIG_HELPER_H
#define VMSIG_HELPER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <vmsig/vmsig_client.h>

/* Exit codes (documented in --help and docs/helper.md). */
enum {
    EX_OK = 0,
    EX_USAGE = 1,   /* bad command line */
    EX_CONNECT = 2, /* no server at that path, connection refused */
    EX_GRANT = 3,   /* refused by grant (EPERM) */
    EX_BUSY = 4,    /* the class is owned by another control (EBUSY) */
    EX_GONE = 5,    /* the VM / server went away (EPIPE, BYE) */
    EX_NOMEM = 6,   /* MEMCTX unavailable (guest RAM not shareable) */
    EX_OTHER = 7,   /* anything else */
};

/* One server we talk to (one -s PATH). */
typedef struct hconn {
    const char *path;
    vmsig_client *c;               /* NULL until connected, or if that failed */
    const vmsig_wire_welcome *w;   /* borrowed from c */
    uint32_t ep;                   /* endpoint our commands go to */
    int rc;                        /* first failure on this connection (EX_*) */
    int gone;                      /* saw EPIPE */
    /* The last MEMCTX of ep seen while doing something else (acquire):
     * mapped if available, else mc says why. */
    int have_mc;
    vmsig_wire_memctx mc;
    vmsig_memmap *map;
} hconn;

typedef struct hopts {
    hconn *conns;
    unsigned nconn;
    const char *token;
    int json;
    int quiet;
    int timeout_ms;
    int has_ep;       /* -e given */
    uint32_t ep;
    int connected;    /* connect_all() already ran (acquire --then) */
} hopts;

extern hopts G;
extern volatile sig_atomic_t g_stop; /* SIGINT/SIGTERM seen */

/* A subcommand: argv[0] is its name. Returns an EX_* code. */
typedef struct hcmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;  /* one line for the overview */
    const char *brief;     /* what it does, a few words for the overview */
    const char *help;      /* `COMMAND --help` text, after the synopsis */
} hcmd;

extern const hcmd helper_cmds[];
const hcmd *find_cmd(const char *name);

/* Connect every -s PATH that is not connected yet, subscribing to
 * source_mask (VMSIG_SRC_* bits). Connections that fail get their rc set
 * and are skipped by the commands. Returns the number that are usable. */
unsigned connect_all(uint32_t source_mask);
/* The worst (first non-zero) exit code over all connections, or rc0. */
int final_rc(int rc0);

/* Print to stdout; with more than one socket every line starts "PATH: ". */
void out(const hconn *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An error message to stderr: "vmsig-helper: PATH: ...". */
void errmsg(const hconn *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Info on stderr unless -q. */
void note(const hconn *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Explain a failed operation and return its exit code (also stored in h->rc
 * if it is the first failure): -EPERM names the missing capability from the
 * WELCOME's grant (need = VMSIG_CAP_* the operation needs), -EBUSY the owned
 * class (cls = VMSIG_CLASS_*, 0 if none), -EPIPE prints the BYE text.
 * In --json mode a {"ok":false,...} object goes to stdout as well.
 */
int fail(hconn *h, int err, const char *what, uint32_t need, uint32_t cls);
/* fail() for a command's reply: a NUL-terminated text body (the VM side's
 * explanation, e.g. QEMU's error) is appended in parentheses. */
int fail_reply(hconn *h, int err, const char *what, uint32_t need, uint32_t cls,
               const vmsig_reply *rep);
/* Success of a one-shot command: a confirmation (unless -q) or a JSON object. */
void done(hconn *h, const char *what, const char *text);

/* Command-line values. Numbers: decimal or 0x hex. Sizes: numbers with an
 * optional K/M/G/T suffix (powers of 1024, "KiB"/"KB" accepted too). */
int parse_u64(const char *s, uint64_t *out);
int parse_i64(const char *s, int64_t *out);
int parse_size(const char *s, uint64_t *out);
/* "0x1f2e", "de ad be ef", "0xde,0xad" -> bytes in the order written. */
int parse_hex_bytes(const char *s, uint8_t **buf, size_t *len);
/* argv[0..argc) joined with single spaces (malloc'ed; NULL on OOM). */
char *join_args(int argc, char **argv);
/* "input" -> VMSIG_CLASS_INPUT, ...; 0 if unknown. */
uint32_t class_by_name(const char *s);
const char *class_label(uint32_t cls);
/* The capability a class's commands need. */
/* "OBSERVE,VM,MEMCTX" for a caps mask (static buffer). */
const char *caps_string(uint32_t caps);
/* "256MiB", "1.5GiB" (static buffer, rotates over 4). */
const char *human_size(uint64_t n);
/* JSON string with quotes and escapes (static buffer, rotates over 4). */
const char *jstr(const char *s);
/* Short upper-case name of an UP kind ("RUNSTATE"), or NULL. */
const char *up_kind_label(uint32_t kind);
uint32_t up_kind_by_name(const char *s);
int64_t now_ms(void);

/* If m is a MEMCTX of h->ep, keep it (mapped) for wait_memmap. */
void keep_memctx(hconn *h, const vmsig_msg *m);
/* Wait for the MEMCTX of h->ep and map it. Returns the map or NULL with the
 * exit code in *rc (already reported). */
vmsig_memmap *wait_memmap(hconn *h, int *rc);

/* Standard per-command --help handling: true if argv asks for help (and
 * prints it). */
int want_help(const hcmd *cmd, int argc, char **argv);
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Subcommands (helper/cmd-*.c). */
int cmd_status(int argc, char **argv);
int cmd_simple(int argc, char **argv); /* stop cont pause resume wakeup powerdown reset quit */
int cmd_watch(int argc, char **argv);
int cmd_read(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_find(int argc, char **argv);
int cmd_write(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_type(int argc, char **argv);
int cmd_mouse(int argc, char **argv);
int cmd_acquire(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_grants(int argc, char **argv); /* needs no socket */

/* Print len bytes like `xxd`: addresses from addr, `digits` hex digits wide
 * (8 for guest-physical, 16 for guest-virtual), 16 bytes a line. */
void hexdump(const hconn *h, uint64_t addr, int digits, const uint8_t *b, size_t len);
/* The bytes of read/vread: raw to stdout (every byte: partial writes
 * resumed), JSON objects {"KEY": addr, "len", "hex"} of 4 KiB, or hexdump.
 * 0, or -errno of writing stdout (reported, h->rc set). */
int print_bytes(hconn *h, const char *cmd, const char *key, uint64_t addr, int digits, int raw,
                const uint8_t *buf, size_t n);
int cmd_regs(int argc, char **argv);  /* cmd-intro.c */
int cmd_vread(int argc, char **argv);
int cmd_vtop(int argc, char **argv);
int cmd_linux(int argc, char **argv);

/* Print one UP event (text or JSON) as `watch` does. */
void print_event(const hconn *h, const vmsig_msg *m);
/* "saved" / "restored" / "deleted" for a VMSIG_SNAP_* op (EV_SNAPSHOT what). */
const char *snap_what(uint32_t what);
int cmd_snapshot(int argc, char **argv); /* cmd-snap.c */

#endif /* VMSIG_HELPER_H */
