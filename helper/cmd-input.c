/*
 * cmd-input.c - vmsig-helper: key, type and mouse (CMD_INPUT).
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "helper.h"

/* Key codes are vmsig's own (Linux input codes, include/vmsig/vmsig_keys.h),
 * named with QEMU's qcode spellings; these are friendlier names people type. */
static const struct {
    const char *alias, *name;
} key_aliases[] = {
    { "enter", "ret" }, { "return", "ret" }, { "space", "spc" }, { "escape", "esc" },
    { "del", "delete" }, { "control", "ctrl" }, { "win", "meta_l" }, { "super", "meta_l" },
    { "pageup", "pgup" }, { "pagedown", "pgdn" }, { "capslock", "caps_lock" },
};

static int key_by_name(const char *s)
{
    for (size_t i = 0; i < sizeof(key_aliases) / sizeof(key_aliases[0]); i++) {
        if (!strcasecmp(s, key_aliases[i].alias)) {
            s = key_aliases[i].name;
            break;
        }
    }
    return vmsig_key_by_name(s);
}

static int usable(const hconn *h)
{
    return h->c && !h->gone;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !g_stop) {
    }
}

/* Send a list of input events to every VM; stop at the first error per VM. */
static int send_inputs(const char *what, const vmsig_wire_input *in, unsigned n, const char *text,
                       unsigned hold_ms, const char *confirm)
{
    connect_all(0);
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        int r = 0;
        if (!usable(h)) {
            continue;
        }
        for (unsigned k = 0; k < n && r == 0; k++) {
            int64_t until = G.timeout_ms > 0 ? now_ms() + G.timeout_ms : -1;
            r = vmsig_client_input(h->c, h->ep, &in[k], in[k].op == VMSIG_INPUT_TEXT ? text : NULL);
            /* Earlier text (ours or another control's) is still being typed:
             * wait for it
             * (about 10 ms of guest time a character), up to --timeout. */
            while (r == -EAGAIN && in[k].op == VMSIG_INPUT_TEXT &&
                   (until < 0 || now_ms() < until)) {
                sleep_ms(20);
                r = vmsig_client_input(h->c, h->ep, &in[k], text);
            }
            /* Hold between a key's press and its release. */
            if (hold_ms && in[k].op == VMSIG_INPUT_KEY && in[k].value == 1 && k + 1 < n &&
                in[k + 1].value == 0) {
                sleep_ms(hold_ms);
            }
            if (in[k].op == VMSIG_INPUT_TEXT) {
                text += in[k].len;
            }
        }
        if (r < 0) {
            fail(h, r, what, VMSIG_CAP_INPUT, VMSIG_CLASS_INPUT);
            continue;
        }
        done(h, what, confirm);
    }
    return final_rc(0);
}

int cmd_key(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "hold-time", required_argument, NULL, 'H' },
        { "list", no_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t hold = 0;
    int opt;

    while ((opt = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        if (opt == 'l') {
#define KEY_LINE(name, code) printf("%3u %s\n", (unsigned)(code), #name);
            VMSIG_KEYS(KEY_LINE)
#undef KEY_LINE
            return EX_OK;
        }
        if (opt != 'H' || parse_u64(optarg, &hold) < 0 || hold > 60000) {
            return usage_error("key", opt == 'H' ? "bad --hold-time (0..60000 ms)" : "bad option");
        }
    }
    if (optind >= argc) {
        return usage_error("key", "expected KEY... (e.g. ret, a, ctrl-alt-delete)");
    }
    /* Each argument is a combo: press all in order, release in reverse. */
    unsigned cap = 0, n = 0;
    for (int i = optind; i < argc; i++) {
        cap += 2 * (unsigned)(strlen(argv[i]) + 1);
    }
    vmsig_wire_input *in = calloc(cap, sizeof(*in));
    if (!in) {
        return EX_OTHER;
    }
    for (int i = optind; i < argc; i++) {
        char *combo = strdup(argv[i]), *save = NULL;
        int codes[64], nc = 0;
        for (char *t = strtok_r(combo, "-+", &save); t; t = strtok_r(NULL, "-+", &save)) {
            int q = key_by_name(t);
            if (q < 0 || nc == 64) {
                usage_error("key", "unknown key '%s' (see key --list)", t);
                free(combo);
                free(in);
                return EX_USAGE;
            }
            codes[nc++] = q;
        }
        free(combo);
        if (!nc) {
            free(in);
            return usage_error("key", "empty key '%s'", argv[i]);
        }
        for (int k = 0; k < nc; k++) {
            in[n++] = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .code = (uint32_t)codes[k], .value = 1 };
        }
        for (int k = nc - 1; k >= 0; k--) {
            in[n++] = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .code = (uint32_t)codes[k], .value = 0 };
        }
    }
    int rc = send_inputs("key", in, n, NULL, (unsigned)hold, "sent");
    free(in);
    return rc;
}

int cmd_type(int argc, char **argv)
{
    if (argc < 2) {
        return usage_error("type", "expected TEXT");
    }
    char *text = join_args(argc - 1, argv + 1);
    if (!text) {
        return EX_OTHER;
    }
    size_t len = strlen(text);
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)text[i] >= 0x80) {
            free(text);
            return usage_error("type", "TEXT must be US-ASCII");
        }
    }
    if (!len) {
        free(text);
        return usage_error("type", "empty TEXT");
    }
    /* One INPUT_TEXT per TYPE_CHUNK bytes: QEMU's key queue holds about 100
     * characters, and the server refuses a piece while the last is queued. */
    enum { TYPE_CHUNK = 64 };
    unsigned n = (unsigned)((len + TYPE_CHUNK - 1) / TYPE_CHUNK);
    vmsig_wire_input *in = calloc(n, sizeof(*in));
    if (!in) {
        free(text);
        return EX_OTHER;
    }
    for (unsigned k = 0; k < n; k++) {
        size_t left = len - (size_t)k * TYPE_CHUNK;
        in[k] = (vmsig_wire_input){ .op = VMSIG_INPUT_TEXT,
                                    .len = (uint32_t)(left < TYPE_CHUNK ? left : TYPE_CHUNK) };
    }
    char msg[64];
    snprintf(msg, sizeof(msg), "typed %zu character%s", len, len == 1 ? "" : "s");
    int rc = send_inputs("type", in, n, text, 0, msg);
    free(in);
    free(text);
    return rc;
}

/* QEMU's InputButton order. */
static const char *const buttons[] = { "left", "middle", "right", "wheel-up", "wheel-down",
                                       "side", "extra" };

static int button_by_name(const char *s)
{
    for (size_t i = 0; i < sizeof(buttons) / sizeof(buttons[0]); i++) {
        if (!strcasecmp(s, buttons[i])) {
            return (int)i;
        }
    }
    return -1;
}

int cmd_mouse(int argc, char **argv)
{
    vmsig_wire_input in[2];
    unsigned n = 0;
    const char *sub = argc > 1 ? argv[1] : "";
    int64_t x, y;
    int btn = 0;

    /* No getopt here: "move -10 5" must not read -10 as an option. */
    if (!strcmp(sub, "move") || !strcmp(sub, "abs")) {
        int absolute = sub[0] == 'a';
        if (argc != 4 || parse_i64(argv[2], &x) < 0 || parse_i64(argv[3], &y) < 0) {
            return usage_error("mouse", "expected %s %s", sub, absolute ? "X Y" : "DX DY");
        }
        if (absolute ? (x < 0 || y < 0 || x > 32767 || y > 32767)
                     : (x < INT32_MIN || y < INT32_MIN || x > INT32_MAX || y > INT32_MAX)) {
            return usage_error("mouse", absolute ? "X and Y go from 0 to 32767" : "delta out of range");
        }
        uint32_t op = absolute ? VMSIG_INPUT_ABS : VMSIG_INPUT_REL;
        in[n++] = (vmsig_wire_input){ .op = op, .code = 0, .value = (int32_t)x };
        in[n++] = (vmsig_wire_input){ .op = op, .code = 1, .value = (int32_t)y };
    } else if (!strcmp(sub, "click") || !strcmp(sub, "down") || !strcmp(sub, "up")) {
        int need = strcmp(sub, "click") != 0;
        if (argc > 3 || (need && argc != 3)) {
            return usage_error("mouse", "expected %s %s", sub, need ? "BTN" : "[BTN]");
        }
        if (argc == 3 && (btn = button_by_name(argv[2])) < 0) {
            return usage_error("mouse", "unknown button '%s' (left, middle, right, wheel-up, "
                               "wheel-down, side, extra)", argv[2]);
        }
        if (strcmp(sub, "up")) {
            in[n++] = (vmsig_wire_input){ .op = VMSIG_INPUT_BTN, .code = (uint32_t)btn, .value = 1 };
        }
        if (strcmp(sub, "down")) {
            in[n++] = (vmsig_wire_input){ .op = VMSIG_INPUT_BTN, .code = (uint32_t)btn, .value = 0 };
        }
    } else {
        return usage_error("mouse", "expected move, abs, click, down or up");
    }
    return send_inputs("mouse", in, n, NULL, 0, "sent");
}
