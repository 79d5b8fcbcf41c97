/*
 * vmsig-helper - command-line control for a VM served by
 * `qemu-system-x86_64 -object vmsig,id=vs0,path=SOCK` (or any vmsig core
 * listening on a UNIX socket).
 *
 *   vmsig-helper [GLOBAL OPTIONS] COMMAND [ARGS]
 *
 * This file: global options, the command table and help, connecting, output
 * and the error -> exit code mapping. Subcommands are in helper/cmd-*.c.
 * User guide: docs/helper.md.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "helper.h"

hopts G = { .timeout_ms = 5000 };
volatile sig_atomic_t g_stop;

/* ---- the command table ---- */

#define CONTROL_HELP \
    "Sends the command to the endpoint (-e, default: the lowest one in the grant)\n" \
    "and waits for the reply (--timeout). Prints a confirmation unless -q.\n"

const hcmd helper_cmds[] = {
    { "status", cmd_status, "status", "VM state, vCPUs, RAM, QEMU version, MEMCTX generation",
      "Query the VM (CMD_VM query): run state, vCPUs, RAM size, QEMU version,\n"
      "name, endpoint and current MEMCTX generation. Needs capability VM.\n" },
    { "watch", cmd_watch, "watch [--count N] [--until KIND] [--live] [--source LIST]", "stream UP events",
      "Stream UP events until SIGINT/SIGTERM, N events (--count) or the first live\n"
      "event of KIND (--until RUNSTATE|RESET|POWERDOWN|SUSPEND|WAKEUP|SHUTDOWN|\n"
      "MEMCTX|MEMWRITE_DONE|ARB). Events re-sent as current state on attach are\n"
      "marked [snapshot] (\"snapshot\":true in JSON); --live hides them, and\n"
      "--until never matches them. --source seam,memctx,arb narrows what is\n"
      "subscribed (default: all the grant allows).\n"
      "Exit 0 when stopped as asked, 5 when every VM went away first.\n" },
    { "stop", cmd_simple, "stop", "stop the vCPUs (CMD_VM)", "Stop the vCPUs (CMD_VM stop). Needs VM; class run.\n" CONTROL_HELP },
    { "cont", cmd_simple, "cont", "continue the vCPUs (CMD_VM)", "Continue the vCPUs (CMD_VM cont). Needs VM; class run.\n" CONTROL_HELP },
    { "pause", cmd_simple, "pause", "pause the VM (LIFECYCLE)", "Pause the VM (CMD_LIFECYCLE pause). Needs LIFECYCLE; class run.\n" CONTROL_HELP },
    { "resume", cmd_simple, "resume", "resume the VM (LIFECYCLE)", "Resume the VM (CMD_LIFECYCLE resume). Needs LIFECYCLE; class run.\n" CONTROL_HELP },
    { "wakeup", cmd_simple, "wakeup", "wake a suspended guest (LIFECYCLE)", "Wake a suspended guest (CMD_LIFECYCLE wakeup). Needs LIFECYCLE; class run.\n" CONTROL_HELP },
    { "powerdown", cmd_simple, "powerdown", "ACPI power button (POWER)", "ACPI power button (CMD_POWER powerdown). Needs POWER; class power.\n" CONTROL_HELP },
    { "reset", cmd_simple, "reset", "reset the machine (POWER)", "Reset the machine (CMD_POWER reset). Needs POWER; class power.\n" CONTROL_HELP },
    { "quit", cmd_simple, "quit", "make QEMU quit (POWER)", "Make QEMU quit (CMD_POWER quit). Needs POWER; class power.\n" CONTROL_HELP },
    { "read", cmd_read, "read [--raw] GPA LEN", "hexdump guest RAM from the read-only mapping",
      "Read LEN bytes of guest RAM at guest-physical address GPA from the\n"
      "read-only MEMCTX mapping (no round trip to QEMU) and print them like\n"
      "`xxd`, or write them unchanged to stdout with --raw. Needs MEMCTX.\n" },
    { "dump", cmd_dump, "dump FILE [GPA LEN]", "save all guest RAM, or a range, to a file",
      "Write all guest RAM (segments in GPA order, concatenated) or the range\n"
      "[GPA, GPA+LEN) to FILE (\"-\" = stdout). A progress bar is drawn on stderr\n"
      "when stderr is a terminal. With several sockets FILE gets a suffix .0, .1,\n"
      "... in the order of -s. Needs MEMCTX.\n" },
    { "find", cmd_find, "find [--hex] [--max N] PATTERN", "GPAs where a string or bytes occur",
      "Print every GPA where PATTERN occurs in guest RAM, including matches that\n"
      "cross a boundary between GPA-contiguous segments. PATTERN is a string, or\n"
      "bytes with --hex (\"de ad be ef\", \"0xdeadbeef\"). --max N stops after N\n"
      "matches. Needs MEMCTX.\n" },
    { "regs", cmd_regs, "regs [--cpu N]", "a vCPU's registers (CMD_CPU REGS)",
      "Print vCPU N's registers (default 0): general registers, rip, rflags,\n"
      "CR0/CR2/CR3/CR4, EFER, segments with their bases, FS/GS/KERNEL_GS base,\n"
      "GDTR/IDTR, whether it is halted, and its paging mode. They are read on\n"
      "the vCPU's own thread, from a running or a paused VM. Needs capability CPU\n"
      "(granted by name: caps=...,CPU; caps=all does not include it) and a server\n"
      "with the CPU protocol feature. A vCPU index past the last is an error (7).\n" },
    { "vread", cmd_vread, "vread [--cpu N | --cr3 X] [--mode M] [--raw] VA LEN",
      "hexdump guest-virtual memory",
      "Read LEN bytes at guest-virtual address VA: each page is translated by\n"
      "walking the guest's page tables in the read-only mapping, then copied.\n"
      "The page-table root is vCPU N's CR3 (--cpu N, through CMD_CPU REGS; the\n"
      "paging mode from its CR0/CR4/EFER), a CR3 value (--cr3 X, 4-level unless\n"
      "--mode), or by default the Linux kernel's own (swapper_pg_dir from\n"
      "VMCOREINFO, see `linux`). --mode 4-level|5-level|pae|32-bit|off overrides\n"
      "the mode. Output like `read` with VAs, --raw for the bytes. A VA that is\n"
      "not mapped stops the read: the bytes before it are printed, then which\n"
      "level's entry is not present (exit 7). Holes of guest RAM are never read\n"
      "(they read as zeros). Needs MEMCTX (and CPU for --cpu).\n" },
    { "vtop", cmd_vtop, "vtop [--cpu N | --cr3 X] [--mode M] VA", "translate a guest-virtual address",
      "Translate VA to its guest-physical address, with the page size, the leaf\n"
      "entry and where it is, and the access rights; a VA that is not mapped\n"
      "names the level whose entry is not present (exit 7). Roots as for vread.\n" },
    { "linux", cmd_linux, "linux [--symbol NAME]... [--text]", "the Linux guest's release, KASLR offset, page tables",
      "Find the kernel's VMCOREINFO in guest RAM (data only, never a hole) and\n"
      "print the kernel release, the KASLR offset, phys_base, the kernel's\n"
      "page-table root (swapper_pg_dir's physical address: no vCPU needed),\n"
      "init_uts_ns's release string read through its VIRTUAL address (checked\n"
      "against VMCOREINFO's), and the banner (linux_banner, found through the\n"
      "kernel's kallsyms tables and read through its virtual address).\n"
      "--symbol NAME looks up a symbol (VMCOREINFO, then kallsyms) and its GPA;\n"
      "--text prints the whole VMCOREINFO text. Needs MEMCTX.\n" },
    { "write", cmd_write, "write [--string] GPA DATA...", "write guest RAM (MEMWRITE)",
      "Write DATA to guest RAM at GPA (CMD_MEMWRITE; atomic per 1 MiB piece).\n"
      "DATA is hex bytes in the order written (\"0xdeadbeef\", \"de ad be ef\"),\n"
      "@FILE for a file's contents, or text with --string. Every MEMCTX\n"
      "subscriber then sees MEMWRITE_DONE. Needs MEMWRITE; class memwrite.\n" },
    { "key", cmd_key, "key [--hold-time MS] KEY...", "press+release keys by name",
      "Press and release keys by name, QEMU's qcode spellings (a, ret, shift, f1,\n"
      "kp_add, ...;\n"
      "aliases enter, return, space, escape, del, control, win, super, pageup,\n"
      "pagedown, capslock). A combo like ctrl-alt-delete presses every key in\n"
      "order, then releases them in reverse. Each argument is one press+release.\n"
      "--hold-time waits MS between press and release.\n"
      "`key --list` prints every name with its vmsig key code (the Linux input\n"
      "event code, KEY_* in <linux/input-event-codes.h>). Needs INPUT; class input.\n" },
    { "type", cmd_type, "type TEXT...", "type US-ASCII text",
      "Type US-ASCII text (CMD_INPUT text; arguments joined by spaces).\n"
      "Needs INPUT; class input.\n" },
    { "mouse", cmd_mouse,
      "mouse move DX DY | abs X Y | click [BTN] | down BTN | up BTN", "pointer motion and buttons",
      "Pointer input. move: relative motion; abs: absolute position, 0..32767 on\n"
      "each axis; click: press+release (default left); BTN is left, middle,\n"
      "right, wheel-up, wheel-down, side or extra. Needs INPUT; class input.\n" },
    { "acquire", cmd_acquire, "acquire CLASS [--hold SECONDS | --then COMMAND [ARGS]]", "own an input/run/power/memwrite class while connected",
      "Take exclusive ownership of CLASS (input, run, power, memwrite) on the\n"
      "endpoint. Ownership belongs to the connection: it ends when the helper\n"
      "exits, is interrupted, or closes the socket. So `acquire` keeps the\n"
      "connection open: until SIGINT/SIGTERM (default), for SECONDS (--hold), or\n"
      "while it runs one COMMAND on the same connection (--then), then releases.\n"
      "If another control preempts us, exit 4. Needs the class's capability.\n"
      "  vmsig-helper acquire input --hold 10\n"
      "  vmsig-helper acquire input --then type 'hello'\n" },
    { "release", cmd_release, "release CLASS", "give a class back",
      "Release CLASS. Ownership is per connection, so this is only useful after\n"
      "`acquire` on the same connection (`acquire run --then release run`);\n"
      "on a fresh connection it reports \"not the owner\" (exit 7).\n" },
    { "snapshot", cmd_snapshot, "snapshot save|restore|delete NAME | list [--run|--pause] [--full] [--then COMMAND [ARGS]]",
      "in-memory snapshots: save, restore (reset), delete, list",
      "Keep the VM's state (guest RAM + device state) in QEMU's memory under NAME,\n"
      "put the VM back into it, free it, or list them (CMD_SNAPSHOT). RESTORE copies\n"
      "back only the pages written since the snapshot (--full: every page) and\n"
      "publishes a new MEMCTX generation. The VM is left running or paused as it\n"
      "was, or --run / --pause. --then runs one more command on the same connection\n"
      "(`snapshot restore s0 --then cont`). Disks are not part of a snapshot: a VM\n"
      "with a writable disk is refused. Needs SNAPSHOT (granted by name, not by\n"
      "caps=all); class snapshot. See docs/snapshot.md.\n"
      "  vmsig-helper snapshot save s0\n"
      "  vmsig-helper snapshot restore --run s0\n"
      "  vmsig-helper snapshot list\n" },
    { "grants", cmd_grants, "grants FILE", "check a grants file, print each entry's principal",
      "Read a grants file as the server will (the same parser: a file it would\n"
      "refuse is refused here, with the line and the reason) and print the\n"
      "principal of every entry: the number WELCOME, ARB owner/by and\n"
      "MEMWRITE_DONE writer carry. A uid entry's principal is the uid; a token\n"
      "entry's is 0x80000000 | (FNV-1a-32(token) & 0x7fffffff) (tokens are not\n"
      "printed); the default entry speaks for many uids, its principal is the\n"
      "peer's own uid. Needs no socket.\n" },
    { NULL, NULL, NULL, NULL, NULL },
};

const hcmd *find_cmd(const char *name)
{
    for (const hcmd *c = helper_cmds; c->name; c++) {
        if (!strcmp(c->name, name)) {
            return c;
        }
    }
    return NULL;
}

static const char exit_codes_help[] =
    "Exit codes:\n"
    "  0  ok\n"
    "  1  usage error\n"
    "  2  cannot connect (no socket at PATH, connection refused, no answer)\n"
    "  3  refused by grant (EPERM): the missing capability is named\n"
    "  4  busy (EBUSY): another control owns the command's class\n"
    "  5  VM gone (EPIPE): the server said BYE or closed; its text is printed\n"
    "  6  MEMCTX unavailable: guest RAM is not shareable (the fix is printed)\n"
    "  7  other error (the reason is printed)\n"
    "With several sockets the command runs against each; the exit code is that\n"
    "of the first socket that failed.\n";

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: vmsig-helper [GLOBAL OPTIONS] COMMAND [ARGS]\n"
        "       vmsig-helper COMMAND --help\n"
        "\n"
        "Control a VM through its vmsig socket (qemu -object vmsig,id=vs0,path=SOCK).\n"
        "\n"
        "Global options:\n"
        "  -s, --socket PATH   server socket; repeat to run the command against several\n"
        "                      VMs (output lines are then prefixed \"PATH: \").\n"
        "                      Default: $VMSIG_SOCKET\n"
        "  -e, --endpoint N    endpoint (VM) on that server; default: the lowest one\n"
        "                      the grant allows\n"
        "      --token TOKEN   identify with a token instead of the uid\n"
        "      --json          JSON output, one object per line\n"
        "      --timeout MS    connect, reply and MEMCTX wait limit (default 5000;\n"
        "                      0 = no limit)\n"
        "  -q, --quiet         no confirmations, notes or progress\n"
        "  -h, --help          this text\n"
        "\n"
        "Commands:\n");
    for (const hcmd *c = helper_cmds; c->name; c++) {
        if (strlen(c->synopsis) <= 22) {
            fprintf(f, "  %-22s  %s\n", c->synopsis, c->brief);
        } else {
            fprintf(f, "  %s\n  %-22s  %s\n", c->synopsis, "", c->brief);
        }
    }
    fprintf(f,
        "\nNumbers are decimal or 0x hex; sizes take K/M/G/T suffixes (1024-based;\n"
        "KiB/MiB/GiB/TiB and KB/MB/... forms too).\n\n%s",
        exit_codes_help);
}

int want_help(const hcmd *cmd, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--") || !strcmp(argv[i], "--then")) {
            break;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("Usage: vmsig-helper [GLOBAL OPTIONS] %s\n\n%s\n%s", cmd->synopsis,
                   cmd->help, exit_codes_help);
            return 1;
        }
    }
    return 0;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vmsig-helper: %s%s", cmd ? cmd : "", cmd ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'vmsig-helper %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return EX_USAGE;
}

/* ---- output ---- */

static void vemit(FILE *f, const char *prefix, const char *label, const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        return;
    }
    /* Label every line so that output of several VMs can be told apart. */
    char *line = s;
    while (*line) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        fprintf(f, "%s%s%s%.*s\n", prefix, label ? label : "", label ? ": " : "", (int)n, line);
        if (!nl) {
            break;
        }
        line = nl + 1;
    }
    free(s);
}

void out(const hconn *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(stdout, "", h && G.nconn > 1 && !G.json ? h->path : NULL, fmt, ap);
    va_end(ap);
}

void errmsg(const hconn *h, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    vemit(stderr, "vmsig-helper: ", h ? h->path : NULL, fmt, ap);
    va_end(ap);
}

void note(const hconn *h, const char *fmt, ...)
{
    va_list ap;
    if (G.quiet) {
        return;
    }
    fflush(stdout);
    va_start(ap, fmt);
    vemit(stderr, "", G.nconn > 1 && h ? h->path : NULL, fmt, ap);
    va_end(ap);
}

static int set_rc(hconn *h, int rc)
{
    if (h && !h->rc) {
        h->rc = rc;
    }
    return rc;
}

static void json_fail(hconn *h, const char *what, int rc, const char *msg)
{
    if (G.json) {
        /* "write at 0x1000" -> "write": the command, the context is in msg */
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "%.*s", (int)strcspn(what, " "), what);
        printf("{\"socket\":%s,\"ep\":%u,\"command\":%s,\"ok\":false,\"exit\":%d,\"error\":%s}\n",
               jstr(h->path), h->ep, jstr(cmd), rc, jstr(msg));
        fflush(stdout);
    }
}

int fail(hconn *h, int err, const char *what, uint32_t need, uint32_t cls)
{
    return fail_reply(h, err, what, need, cls, NULL);
}

int fail_reply(hconn *h, int err, const char *what, uint32_t need, uint32_t cls,
               const vmsig_reply *rep)
{
    char msg[512];
    int rc;
    const vmsig_wire_welcome *w = h->w;
    /* A command's -ENOENT (no such snapshot) is the server's answer, not a
     * connection failure: only a REPLY carries a status. */
    int replied = rep && rep->status == err;

    switch (replied && err == -ENOENT ? 0 : err) {
    case -EPERM:
        rc = EX_GRANT;
        if (!w) {
            snprintf(msg, sizeof(msg), "refused by grant: the server has no grant for %s",
                     G.token ? "this token" : "this uid");
        } else if (h->ep >= 64 || !(w->endpoint_mask & (1ull << h->ep))) {
            snprintf(msg, sizeof(msg),
                     "refused by grant: endpoint %u is not in the grant (endpoint mask 0x%llx)",
                     h->ep, (unsigned long long)w->endpoint_mask);
        } else if (need && !(need & w->caps)) {
            /* need lists alternatives (a class is acquired with any of its
             * capabilities); a command needs exactly one. */
            char miss[128];
            size_t n = 0;
            miss[0] = 0;
            for (uint32_t bit = 1; bit && bit <= VMSIG_CAP_ALL && n < sizeof(miss); bit <<= 1) {
                if (need & bit) {
                    n += (size_t)snprintf(miss + n, sizeof(miss) - n, "%s%s", n ? " or " : "",
                                          vmsig_cap_name(bit));
                }
            }
            snprintf(msg, sizeof(msg), "refused by grant: missing capability %s (grant has %s)",
                     miss, caps_string(w->caps));
        } else {
            snprintf(msg, sizeof(msg), "refused by grant (grant has %s)", caps_string(w->caps));
        }
        break;
    case -EBUSY:
        rc = EX_BUSY;
        if (cls) {
            snprintf(msg, sizeof(msg),
                     "busy: class %s on endpoint %u is owned by another control",
                     class_label(cls), h->ep);
        } else {
            snprintf(msg, sizeof(msg), "busy: owned by another control");
        }
        break;
    case -EPIPE: {
        const char *text = "";
        int st = h->c ? vmsig_client_bye(h->c, &text) : 0;
        rc = EX_GONE;
        h->gone = 1;
        snprintf(msg, sizeof(msg), "VM gone: %s%s%s%s", text && *text ? text : "connection closed",
                 st ? " (" : "", st ? strerror(-st) : "", st ? ")" : "");
        break;
    }
    case -ENOENT:
    case -ECONNREFUSED:
    case -ENOTSOCK:
    case -EACCES:
        rc = EX_CONNECT;
        snprintf(msg, sizeof(msg), "cannot connect: %s", strerror(-err));
        break;
    default:
        rc = EX_OTHER;
        snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err < 0 ? -err : err));
        break;
    }
    /* The VM side's explanation (QEMU's error text), if the body is one. */
    if (rep && rep->status < 0 && rep->len > 1 && rep->len <= sizeof(rep->body) &&
        memchr(rep->body, 0, rep->len)) {
        size_t n = strlen(msg);
        size_t room = sizeof(msg) - n;
        if (room > 4) { /* " (" body ")" NUL, the body cut to fit */
            size_t k = strnlen((const char *)rep->body, room - 4);
            msg[n] = ' ';
            msg[n + 1] = '(';
            memcpy(msg + n + 2, rep->body, k);
            msg[n + 2 + k] = ')';
            msg[n + 3 + k] = '\0';
        }
    }
    /* Keep the context for grant/busy/gone too, for logs of several commands. */
    if (rc != EX_OTHER) {
        errmsg(h, "%s: %s", what, msg);
    } else {
        errmsg(h, "%s", msg);
    }
    json_fail(h, what, rc, msg);
    return set_rc(h, rc);
}

void done(hconn *h, const char *what, const char *text)
{
    if (G.json) {
        printf("{\"socket\":%s,\"ep\":%u,\"command\":%s,\"ok\":true}\n", jstr(h->path), h->ep,
               jstr(what));
        fflush(stdout);
    } else if (!G.quiet && text) {
        out(h, "%s", text);
    }
}

/* ---- connecting ---- */

static uint32_t lowest_ep(uint64_t mask)
{
    return mask ? (uint32_t)__builtin_ctzll(mask) : 0;
}

unsigned connect_all(uint32_t source_mask)
{
    unsigned ok = 0;
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        if (h->c || h->rc) {
            ok += h->c != NULL;
            continue;
        }
        char why[sizeof(vmsig_wire_bye) + 64] = "";
        vmsig_client_config cfg = {
            .version = VMSIG_CLIENT_CONFIG_VERSION,
            .path = h->path,
            .token = G.token,
            /* Ask for what the command needs (the server narrows it by the
             * grant); the endpoint is picked from the grant after WELCOME. */
            .sub = { .source_mask = source_mask,
                     .endpoint_mask = G.has_ep ? 1ull << G.ep : ~0ull },
            /* --timeout 0 is -1 here: no limit (the config's < 0). */
            .timeout_ms = G.timeout_ms,
            .why = why,
            .whylen = sizeof(why),
        };
        int err = 0;
        h->ep = G.has_ep ? G.ep : 0;
        h->c = vmsig_client_connect(&cfg, &err);
        if (!h->c) {
            switch (err) {
            case -EPERM:
                fail(h, err, "connect", 0, 0);
                break;
            case -ETIMEDOUT:
                errmsg(h, "cannot connect: no answer within %d ms", G.timeout_ms);
                json_fail(h, "connect", EX_CONNECT, "no answer");
                set_rc(h, EX_CONNECT);
                break;
            case -EPROTONOSUPPORT:
            case -EPROTO:
            case -ENOMEM:
                errmsg(h, "connect: %s (%s)", why, strerror(-err));
                json_fail(h, "connect", EX_OTHER, why);
                set_rc(h, EX_OTHER);
                break;
            case -ECONNRESET: /* closed before WELCOME, nothing said */
            case -EMFILE:     /* the server is full */
            case -ESHUTDOWN:  /* the server is going away */
                errmsg(h, "cannot connect: %s", why);
                json_fail(h, "connect", EX_CONNECT, why);
                set_rc(h, EX_CONNECT);
                break;
            default:
                errmsg(h, "cannot connect: %s", strerror(-err));
                json_fail(h, "connect", EX_CONNECT, strerror(-err));
                set_rc(h, EX_CONNECT);
                break;
            }
            continue;
        }
        h->w = vmsig_client_welcome(h->c);
        if (!G.has_ep) {
            h->ep = lowest_ep(h->w->endpoint_mask);
        }
        ok++;
    }
    G.connected = 1;
    return ok;
}

int final_rc(int rc0)
{
    if (rc0) {
        return rc0;
    }
    for (unsigned i = 0; i < G.nconn; i++) {
        if (G.conns[i].rc) {
            return G.conns[i].rc;
        }
    }
    return EX_OK;
}

/* ---- small parsers and formatters ---- */

int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    int base = 10;
    if (!s || !*s || *s == '-' || *s == '+') {
        return -EINVAL;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        if (!*s) {
            return -EINVAL;
        }
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int parse_i64(const char *s, int64_t *out)
{
    uint64_t v;
    int neg = s && *s == '-';
    if (parse_u64(neg ? s + 1 : s, &v) < 0 || v > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    char num[64];
    size_t n = strlen(s ? s : "");
    unsigned shift = 0;
    if (!n || n >= sizeof(num)) {
        return -EINVAL;
    }
    memcpy(num, s, n + 1);
    /* Strip "iB" / "B" then one of K, M, G, T. */
    if (n > 2 && !strcasecmp(num + n - 2, "iB")) {
        num[n -= 2] = 0;
    } else if (n > 1 && (num[n - 1] == 'B' || num[n - 1] == 'b') &&
               !(num[0] == '0' && (num[1] == 'x' || num[1] == 'X'))) {
        num[n -= 1] = 0;
    }
    if (n > 1 && !(num[0] == '0' && (num[1] == 'x' || num[1] == 'X'))) {
        switch (num[n - 1]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        }
        if (shift) {
            num[--n] = 0;
        }
    }
    uint64_t v;
    if (parse_u64(num, &v) < 0 || (shift && v > (UINT64_MAX >> shift))) {
        return -EINVAL;
    }
    *out = v << shift;
    return 0;
}

char *join_args(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++) {
        len += strlen(argv[i]) + 1;
    }
    char *s = calloc(1, len);
    for (int i = 0; s && i < argc; i++) {
        strcat(s, argv[i]);
        if (i + 1 < argc) {
            strcat(s, " ");
        }
    }
    return s;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int parse_hex_bytes(const char *s, uint8_t **buf, size_t *len)
{
    size_t cap = strlen(s) / 2 + 1, n = 0;
    uint8_t *b = malloc(cap);
    if (!b) {
        return -ENOMEM;
    }
    while (*s) {
        /* One token: optional 0x, then an even number of hex digits. */
        while (*s == ' ' || *s == '\t' || *s == ',' || *s == ':' || *s == '\n') {
            s++;
        }
        if (!*s) {
            break;
        }
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
            s += 2;
        }
        const char *t = s;
        while (hexval(*s) >= 0) {
            s++;
        }
        size_t digits = (size_t)(s - t);
        if (!digits || (*s && !strchr(" \t,:\n", *s))) {
            free(b);
            return -EINVAL;
        }
        if (digits % 2) {
            /* "0xf" or "f": a single nibble byte, only as a token of its own */
            if (digits != 1) {
                free(b);
                return -EINVAL;
            }
            b[n++] = (uint8_t)hexval(t[0]);
            continue;
        }
        for (size_t i = 0; i < digits; i += 2) {
            b[n++] = (uint8_t)(hexval(t[i]) << 4 | hexval(t[i + 1]));
        }
    }
    if (!n) {
        free(b);
        return -EINVAL;
    }
    *buf = b;
    *len = n;
    return 0;
}

static const char *const class_names[VMSIG_CLASS__COUNT] = {
    [VMSIG_CLASS_INPUT] = "input",
    [VMSIG_CLASS_RUN] = "run",
    [VMSIG_CLASS_POWER] = "power",
    [VMSIG_CLASS_MEMWRITE] = "memwrite",
    [VMSIG_CLASS_SNAPSHOT] = "snapshot",
};

uint32_t class_by_name(const char *s)
{
    for (uint32_t i = 1; i < VMSIG_CLASS__COUNT; i++) {
        if (!strcasecmp(s, class_names[i])) {
            return i;
        }
    }
    return 0;
}

const char *class_label(uint32_t cls)
{
    return cls < VMSIG_CLASS__COUNT && class_names[cls] ? class_names[cls] : "unknown";
}


const char *caps_string(uint32_t caps)
{
    static char buf[160];
    size_t n = 0;
    buf[0] = 0;
    for (uint32_t bit = 1; bit && bit <= VMSIG_CAP_ALL; bit <<= 1) {
        if (caps & bit) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", n ? "," : "",
                                  vmsig_cap_name(bit));
            if (n >= sizeof(buf)) {
                break;
            }
        }
    }
    if (!caps) {
        snprintf(buf, sizeof(buf), "nothing");
    }
    return buf;
}

const char *human_size(uint64_t v)
{
    static char bufs[4][32];
    static unsigned next;
    char *b = bufs[next++ % 4];
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    uint64_t whole = v;
    while (whole >= 1024 && u < 4) {
        whole >>= 10;
        u++;
    }
    if (u && (v & ((1ull << (10 * u)) - 1))) {
        snprintf(b, 32, "%.1f%s", (double)v / (double)(1ull << (10 * u)), unit[u]);
    } else {
        snprintf(b, 32, "%llu%s", (unsigned long long)whole, unit[u]);
    }
    return b;
}

const char *jstr(const char *s)
{
    static char bufs[4][1024];
    static unsigned next;
    char *b = bufs[next++ % 4];
    size_t n = 0;
    b[n++] = '"';
    for (; s && *s && n < sizeof(bufs[0]) - 8; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            b[n++] = '\\';
            b[n++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            n += (size_t)snprintf(b + n, 8, "\\u%04x", ch);
        } else {
            b[n++] = (char)ch;
        }
    }
    b[n++] = '"';
    b[n] = 0;
    return b;
}

/* UP kinds are 0x0100..0x0fff; their labels are the library's kind names
 * (the one kind table) in capitals: "memwrite-done" -> "MEMWRITE_DONE". */
#define UP_KIND_FIRST 0x0100u
#define UP_KIND_LAST  0x0fffu

static int up_kind_known(uint32_t kind)
{
    return kind >= UP_KIND_FIRST && kind <= UP_KIND_LAST &&
           strcmp(vmsig_kind_name(kind), "unknown") != 0;
}

const char *up_kind_label(uint32_t kind)
{
    static struct {
        uint32_t kind;
        char name[24];
    } cache[32];
    const char *src;
    size_t i, j;

    if (!up_kind_known(kind)) {
        return NULL;
    }
    for (i = 0; i < sizeof(cache) / sizeof(cache[0]) && cache[i].kind; i++) {
        if (cache[i].kind == kind) {
            return cache[i].name;
        }
    }
    if (i == sizeof(cache) / sizeof(cache[0])) {
        return NULL;
    }
    src = vmsig_kind_name(kind);
    for (j = 0; src[j] && j + 1 < sizeof(cache[i].name); j++) {
        cache[i].name[j] = src[j] == '-' ? '_' : (char)toupper((unsigned char)src[j]);
    }
    cache[i].name[j] = '\0';
    cache[i].kind = kind;
    return cache[i].name;
}

uint32_t up_kind_by_name(const char *s)
{
    for (uint32_t k = UP_KIND_FIRST; k <= UP_KIND_LAST; k++) {
        const char *label = up_kind_label(k);
        if (label && !strcasecmp(label, s)) {
            return k;
        }
    }
    return 0;
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- main ---- */

static void on_signal(int sig)
{
    g_stop = sig;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "socket", required_argument, NULL, 's' },
        { "endpoint", required_argument, NULL, 'e' },
        { "token", required_argument, NULL, 'T' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char **paths = calloc((size_t)argc + 1, sizeof(*paths));
    unsigned npaths = 0;
    int opt;
    uint64_t v;

    if (!paths) {
        return EX_OTHER;
    }
    /* '+': stop at the command; its options are its own. */
    while ((opt = getopt_long(argc, argv, "+s:e:qh", lopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            paths[npaths++] = optarg;
            break;
        case 'e':
            if (parse_u64(optarg, &v) < 0 || v >= VMSIG_ENDPOINT_MAX) {
                return usage_error(NULL, "bad endpoint '%s' (0..%u)", optarg,
                                   VMSIG_ENDPOINT_MAX - 1);
            }
            G.has_ep = 1;
            G.ep = (uint32_t)v;
            break;
        case 'T':
            if (strlen(optarg) > VMSIG_TOKEN_MAX) {
                return usage_error(NULL, "token longer than %u bytes", VMSIG_TOKEN_MAX);
            }
            G.token = optarg;
            break;
        case 'j':
            G.json = 1;
            break;
        case 't':
            if (parse_u64(optarg, &v) < 0 || v > INT32_MAX) {
                return usage_error(NULL, "bad timeout '%s' (milliseconds)", optarg);
            }
            G.timeout_ms = v ? (int)v : -1;
            break;
        case 'q':
            G.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return EX_OK;
        default:
            fprintf(stderr, "Try 'vmsig-helper --help'.\n");
            return EX_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    const hcmd *cmd = find_cmd(argv[optind]);
    if (!cmd) {
        return usage_error(NULL, "unknown command '%s'", argv[optind]);
    }
    if (want_help(cmd, argc - optind, argv + optind)) {
        return EX_OK;
    }
    if (cmd->run == cmd_grants) {
        int at = optind;
        optind = 0;
        return cmd_grants(argc - at, argv + at);
    }
    if (!npaths && getenv("VMSIG_SOCKET") && *getenv("VMSIG_SOCKET")) {
        paths[npaths++] = getenv("VMSIG_SOCKET");
    }
    if (!npaths) {
        return usage_error(NULL, "no socket: give -s PATH or set VMSIG_SOCKET");
    }
    G.conns = calloc(npaths, sizeof(*G.conns));
    if (!G.conns) {
        return EX_OTHER;
    }
    for (unsigned i = 0; i < npaths; i++) {
        G.conns[i].path = paths[i];
    }
    G.nconn = npaths;

    /* No SA_RESTART: poll() in watch/acquire must wake up on ^C. */
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int first = optind;
    /* Subcommands parse with getopt too: 0 makes glibc start afresh. */
    optind = 0;
    int rc = cmd->run(argc - first, argv + first);
    for (unsigned i = 0; i < G.nconn; i++) {
        vmsig_memmap_unref(G.conns[i].map);
        vmsig_client_close(G.conns[i].c);
    }
    fflush(stdout);
    return rc;
}
