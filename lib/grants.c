/*
 * grants.c - the grants table (principal -> grant) and its text format.
 *
 * One entry per line (docs/protocol.rst "Grants file"):
 *   uid:N | token:STRING | default
 *   endpoints=all | N,M,... (0..63) | 0xMASK      required
 *   caps=all | NAME,NAME,... | 0xHEX              required; names are
 *        OBSERVE INPUT LIFECYCLE POWER VM MEMCTX MEMWRITE CPU, any case;
 *        all = the 1.0 set (VMSIG_CAP_ALL_1_0: CPU is granted by name only)
 *   priority=N                                    optional, default 0
 * '#' starts a comment where a word would start. A duplicate entry, an
 * unknown field, a retired capability bit or name refuses the whole file.
 *
 * Principals: a uid entry and the default give the peer's own uid (uids
 * >= 0x80000000 are refused); a token entry gives vmsig_token_principal()
 * = 0x80000000 | (FNV-1a(token) & 0x7fffffff), so token ids never meet uids,
 * and two token entries with the same id are refused (-EEXIST from
 * vmsig_grants_set, the whole file from the parser). "caps=all" means
 * VMSIG_CAP_ALL_1_0, pinned: later capabilities are granted by name only.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vmsig/vmsig_core.h"

#define GRANTS_FILE_MAX (1u << 20) /* a grants file is small; refuse anything silly */
#define LINE_WORDS_MAX  8u         /* principal + 3 fields, with room for a mistake */

typedef enum { ENT_UID, ENT_TOKEN, ENT_DEFAULT } ent_type;

typedef struct grant_entry {
    ent_type type;
    uint32_t uid;
    char     token[VMSIG_TOKEN_MAX]; /* NUL padded, so comparison is fixed-length */
    size_t   token_len;
    unsigned line;                   /* grants-file line, 0 if set by the API */
    vmsig_grant g;
} grant_entry;

struct vmsig_grants {
    grant_entry *v;
    size_t n, cap;
};

static const struct {
    uint32_t bit;
    const char *name;
} cap_names[] = {
#define CAP_ROW(name, bit) { bit, #name },
    VMSIG_CAPS(CAP_ROW)
#undef CAP_ROW
};

/* Removed capabilities, named so a stale grant gets a precise refusal. */
static const struct {
    uint32_t bit;
    const char *name;
} retired_caps[] = {
    { 0x4u, "STREAM" },
    { 0x10u, "MEMREAD" },
};

/* ---- principals and tokens ---- */

/* Both buffers are VMSIG_TOKEN_MAX bytes, NUL padded: every byte is always
 * compared, so the time does not tell how much of a guess was right. */
static int token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned diff = (unsigned)(alen ^ blen);

    for (size_t i = 0; i < VMSIG_TOKEN_MAX; i++) {
        diff |= (unsigned)(uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0;
}

/* Copies a token into a padded buffer; -EINVAL if empty or too long. */
static int token_pad(const char *token, char out[VMSIG_TOKEN_MAX], size_t *len)
{
    size_t n = strnlen(token, VMSIG_TOKEN_MAX + 1);

    if (n == 0 || n > VMSIG_TOKEN_MAX) {
        return -EINVAL;
    }
    memset(out, 0, VMSIG_TOKEN_MAX);
    memcpy(out, token, n);
    *len = n;
    return 0;
}

/* ---- the table ---- */

static grant_entry *find_entry(const vmsig_grants *t, ent_type type, uint32_t uid,
                               const char *padded, size_t len)
{
    for (size_t i = 0; i < t->n; i++) {
        grant_entry *e = &t->v[i];
        if (e->type != type) {
            continue;
        }
        if (type == ENT_DEFAULT || (type == ENT_UID && e->uid == uid) ||
            (type == ENT_TOKEN && token_equal(e->token, e->token_len, padded, len))) {
            return e;
        }
    }
    return NULL;
}

static grant_entry *append_entry(vmsig_grants *t)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 8;
        grant_entry *nv = realloc(t->v, ncap * sizeof(*nv));
        if (!nv) {
            return NULL;
        }
        t->v = nv;
        t->cap = ncap;
    }
    memset(&t->v[t->n], 0, sizeof(t->v[t->n]));
    return &t->v[t->n++];
}

/* The key of an entry as set() describes it. */
static int entry_key(uint32_t uid, const char *token, ent_type *type, char padded[VMSIG_TOKEN_MAX],
                     size_t *len)
{
    memset(padded, 0, VMSIG_TOKEN_MAX);
    *len = 0;
    if (token && token[0]) {
        *type = ENT_TOKEN;
        return token_pad(token, padded, len);
    }
    *type = uid == (uint32_t)-1 ? ENT_DEFAULT : ENT_UID;
    return 0;
}

int vmsig_grants_set(vmsig_grants *t, uint32_t uid, const char *token, const vmsig_grant *g)
{
    char padded[VMSIG_TOKEN_MAX];
    ent_type type;
    size_t len;
    grant_entry *e;

    if (!t || vmsig_grant_check(g) < 0 || entry_key(uid, token, &type, padded, &len) < 0) {
        return -EINVAL;
    }
    if (type == ENT_UID && uid >= 0x80000000u) {
        return -EINVAL; /* that range is the token principals' */
    }
    e = find_entry(t, type, uid, padded, len);
    if (!e && type == ENT_TOKEN) {
        uint32_t id = vmsig_token_principal(padded);
        for (size_t i = 0; i < t->n; i++) {
            if (t->v[i].type == ENT_TOKEN && t->v[i].g.principal == id) {
                return -EEXIST; /* another token, same id: owner/by/writer would be ambiguous */
            }
        }
    }
    if (!e) {
        e = append_entry(t);
        if (!e) {
            return -ENOMEM;
        }
    }
    e->type = type;
    e->uid = uid;
    memcpy(e->token, padded, sizeof(e->token));
    e->token_len = len;
    e->g = *g;
    e->g.principal = type == ENT_TOKEN ? vmsig_token_principal(padded) : uid;
    return 0;
}

int vmsig_grants_lookup(const vmsig_grants *t, uint32_t uid, const char *token, vmsig_grant *out)
{
    const grant_entry *e;
    char padded[VMSIG_TOKEN_MAX];
    size_t len;

    if (!t || !out) {
        return -EPERM;
    }
    if (token && token[0]) {
        /* A presented token must be right: no quiet fallback to the uid. */
        if (token_pad(token, padded, &len) < 0) {
            return -EPERM;
        }
        e = find_entry(t, ENT_TOKEN, 0, padded, len);
        if (!e) {
            return -EPERM;
        }
        *out = e->g;
        return 0;
    }
    if (uid >= 0x80000000u) {
        /* Its principal would fall among the token ids: refuse, never alias. */
        return -EPERM;
    }
    e = find_entry(t, ENT_UID, uid, NULL, 0);
    if (!e) {
        e = find_entry(t, ENT_DEFAULT, 0, NULL, 0);
    }
    if (!e) {
        return -EPERM;
    }
    *out = e->g;
    out->principal = uid; /* the default speaks for many uids: name the real one */
    return 0;
}

void vmsig_grants_free(vmsig_grants *t)
{
    if (!t) {
        return;
    }
    /* Tokens are secrets: do not leave them in freed memory. */
    for (size_t i = 0; i < t->n; i++) {
        memset(t->v[i].token, 0, sizeof(t->v[i].token));
    }
    free(t->v);
    free(t);
}

/* ---- the text format ---- */

typedef struct parse_ctx {
    unsigned line;
    char *errbuf;
    size_t errlen;
} parse_ctx;

static int fail(parse_ctx *pc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(parse_ctx *pc, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (pc->errbuf && pc->errlen) {
        n = snprintf(pc->errbuf, pc->errlen, "line %u: ", pc->line);
        if (n >= 0 && (size_t)n < pc->errlen) {
            va_start(ap, fmt);
            vsnprintf(pc->errbuf + n, pc->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

/* Strict unsigned decimal/hex: digits only, no sign, no trailing junk. */
static int parse_u64(const char *s, int base, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!isxdigit((unsigned char)s[0])) {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, base);
    if (errno || *end || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

static int is_hex_prefix(const char *s)
{
    return s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
}

static int parse_endpoints(parse_ctx *pc, char *val, uint64_t *mask)
{
    uint64_t v;
    char *save = NULL;

    if (strcmp(val, "all") == 0) {
        *mask = ~0ull;
        return 0;
    }
    if (is_hex_prefix(val)) {
        if (parse_u64(val + 2, 16, UINT64_MAX, mask) < 0) {
            return fail(pc, "bad endpoint mask '%s' (want 0x followed by hex digits)", val);
        }
        return 0;
    }
    *mask = 0;
    for (char *item = strtok_r(val, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (parse_u64(item, 10, VMSIG_ENDPOINT_MAX - 1, &v) < 0) {
            return fail(pc, "bad endpoint '%s' (want 0..%u, a list N,M,..., all, or 0xMASK)",
                        item, VMSIG_ENDPOINT_MAX - 1);
        }
        *mask |= 1ull << v;
    }
    if (!*mask) {
        return fail(pc, "empty endpoint list");
    }
    return 0;
}

static int retired_refusal(parse_ctx *pc, uint32_t caps)
{
    for (size_t i = 0; i < sizeof(retired_caps) / sizeof(retired_caps[0]); i++) {
        if (caps & retired_caps[i].bit) {
            return fail(pc, "capability bit 0x%x is retired (was CAP_%s) and must not be used; "
                        "remove it", retired_caps[i].bit, retired_caps[i].name);
        }
    }
    return 0;
}

static int parse_cap_hex(parse_ctx *pc, const char *val, uint32_t *caps)
{
    uint64_t v;
    int r;

    if (parse_u64(val + 2, 16, UINT32_MAX, &v) < 0) {
        return fail(pc, "bad capability mask '%s' (want 0x followed by hex digits)", val);
    }
    r = retired_refusal(pc, (uint32_t)v);
    if (r < 0) {
        return r;
    }
    if (v & ~(uint64_t)VMSIG_CAP_ALL) {
        return fail(pc, "capability bits 0x%x are not capabilities",
                    (unsigned)(v & ~(uint64_t)VMSIG_CAP_ALL));
    }
    *caps = (uint32_t)v;
    return 0;
}

static int parse_cap_name(parse_ctx *pc, const char *item, uint32_t *bit)
{
    const char *name = strncasecmp(item, "CAP_", 4) == 0 ? item + 4 : item;

    if (strcasecmp(name, "all") == 0) {
        *bit = VMSIG_CAP_ALL_1_0; /* "all,CPU": the 1.0 set and a later one by name */
        return 0;
    }

    for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++) {
        if (strcasecmp(name, cap_names[i].name) == 0) {
            *bit = cap_names[i].bit;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof(retired_caps) / sizeof(retired_caps[0]); i++) {
        if (strcasecmp(name, retired_caps[i].name) == 0) {
            return retired_refusal(pc, retired_caps[i].bit);
        }
    }
#define CAP_WORD(name, bit) " " #name
    return fail(pc, "unknown capability '%s' (known:" VMSIG_CAPS(CAP_WORD)
                ", all (the 1.0 set), or 0xHEX)", item);
#undef CAP_WORD
}

static int parse_caps(parse_ctx *pc, char *val, uint32_t *caps)
{
    char *save = NULL;
    uint32_t bit = 0;
    int r;

    if (strcasecmp(val, "all") == 0) {
        *caps = VMSIG_CAP_ALL_1_0; /* pinned: see VMSIG_CAP_ALL_1_0 */
        return 0;
    }
    if (is_hex_prefix(val)) {
        return parse_cap_hex(pc, val, caps);
    }
    *caps = 0;
    for (char *item = strtok_r(val, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        r = parse_cap_name(pc, item, &bit);
        if (r < 0) {
            return r;
        }
        *caps |= bit;
    }
    if (!*caps) {
        return fail(pc, "empty capability list");
    }
    return 0;
}

static int parse_priority(parse_ctx *pc, const char *val, int32_t *prio)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(val, &end, 10);
    if (!val[0] || *end || errno || v < INT32_MIN || v > INT32_MAX) {
        return fail(pc, "bad priority '%s' (want a 32-bit signed integer)", val);
    }
    *prio = (int32_t)v;
    return 0;
}

/* Which fields a line set, to refuse duplicates and missing ones. */
enum { F_ENDPOINTS = 1, F_CAPS = 2, F_PRIORITY = 4 };

static int parse_field(parse_ctx *pc, char *word, vmsig_grant *g, unsigned *seen)
{
    char *eq = strchr(word, '=');
    unsigned f;
    int r;

    if (!eq) {
        return fail(pc, "expected key=value, got '%s'", word);
    }
    *eq = '\0';
    if (strcmp(word, "endpoints") == 0) {
        f = F_ENDPOINTS;
        r = parse_endpoints(pc, eq + 1, &g->endpoint_mask);
    } else if (strcmp(word, "caps") == 0) {
        f = F_CAPS;
        r = parse_caps(pc, eq + 1, &g->caps);
    } else if (strcmp(word, "priority") == 0) {
        f = F_PRIORITY;
        r = parse_priority(pc, eq + 1, &g->priority);
    } else {
        return fail(pc, "unknown field '%s' (known: endpoints, caps, priority)", word);
    }
    if (r < 0) {
        return r;
    }
    if (*seen & f) {
        return fail(pc, "field '%s' given twice", word);
    }
    *seen |= f;
    return 0;
}

/* The principal word: fills uid/token for vmsig_grants_set. */
static int parse_principal(parse_ctx *pc, char *word, uint32_t *uid, const char **token)
{
    uint64_t v;

    *token = NULL;
    *uid = (uint32_t)-1;
    if (strcmp(word, "default") == 0) {
        return 0;
    }
    if (strncmp(word, "uid:", 4) == 0) {
        if (parse_u64(word + 4, 10, UINT32_MAX - 1, &v) < 0) {
            return fail(pc, "bad uid '%s'", word + 4);
        }
        *uid = (uint32_t)v;
        return 0;
    }
    if (strncmp(word, "token:", 6) == 0) {
        size_t n = strlen(word + 6);
        if (n == 0 || n > VMSIG_TOKEN_MAX) {
            return fail(pc, "token must be 1..%u bytes", VMSIG_TOKEN_MAX);
        }
        *token = word + 6;
        return 0;
    }
    return fail(pc, "expected uid:N, token:STRING or default, got '%s'", word);
}

/* Splits a line into words; stops at a word starting with '#'. */
static int split_words(parse_ctx *pc, char *line, char **words, unsigned *nwords)
{
    unsigned n = 0;
    char *save = NULL;

    for (char *w = strtok_r(line, " \t\r\v\f", &save); w; w = strtok_r(NULL, " \t\r\v\f", &save)) {
        if (w[0] == '#') {
            break;
        }
        if (n == LINE_WORDS_MAX) {
            return fail(pc, "too many fields");
        }
        words[n++] = w;
    }
    *nwords = n;
    return 0;
}

static int parse_line(vmsig_grants *t, parse_ctx *pc, char *line)
{
    char *words[LINE_WORDS_MAX];
    char padded[VMSIG_TOKEN_MAX];
    vmsig_grant g = { 0 };
    const char *token;
    unsigned n = 0, seen = 0;
    uint32_t uid;
    ent_type type;
    size_t len;
    int r;

    r = split_words(pc, line, words, &n);
    if (r < 0 || n == 0) {
        return r;
    }
    r = parse_principal(pc, words[0], &uid, &token);
    for (unsigned i = 1; r == 0 && i < n; i++) {
        r = parse_field(pc, words[i], &g, &seen);
    }
    if (r < 0) {
        return r;
    }
    if (!(seen & F_ENDPOINTS) || !(seen & F_CAPS)) {
        return fail(pc, "missing %s", !(seen & F_ENDPOINTS) ? "endpoints=" : "caps=");
    }
    if (entry_key(uid, token, &type, padded, &len) == 0 && find_entry(t, type, uid, padded, len)) {
        /* Never echo a token: error text ends up in logs. */
        return fail(pc, "duplicate entry for %s", token ? "a token (not shown)" : words[0]);
    }
    if (type == ENT_UID && uid >= 0x80000000u) {
        return fail(pc, "uid %u is out of range (uids >= 0x80000000 are token principals)", uid);
    }
    r = vmsig_grants_set(t, uid, token, &g);
    if (r == -ENOMEM) {
        return r;
    }
    if (r == -EEXIST) {
        uint32_t id = vmsig_token_principal(padded);
        unsigned other = 0;
        for (size_t i = 0; i < t->n; i++) {
            if (t->v[i].type == ENT_TOKEN && t->v[i].g.principal == id) {
                other = t->v[i].line;
            }
        }
        fail(pc, "token id 0x%08x collides with the token on line %u (two tokens, one id: "
             "owner/by/writer would be ambiguous); change one of the tokens", id, other);
        return -EEXIST;
    }
    if (r < 0) {
        return fail(pc, "invalid grant");
    }
    find_entry(t, type, uid, padded, len)->line = pc->line;
    return 0;
}

vmsig_grants *vmsig_grants_parse(const char *text, int *err, char *errbuf, size_t errlen)
{
    parse_ctx pc = { 0, errbuf, errlen };
    vmsig_grants *t = calloc(1, sizeof(*t));
    char *copy = text ? strdup(text) : NULL;
    char *save = NULL;
    int r = 0;

    if (errbuf && errlen) {
        errbuf[0] = '\0';
    }
    if (!t || !copy) {
        r = text ? -ENOMEM : -EINVAL;
        goto out;
    }
    /* strsep keeps empty lines, so line numbers stay right. */
    save = copy;
    for (char *line; r == 0 && (line = strsep(&save, "\n")) != NULL;) {
        pc.line++;
        r = parse_line(t, &pc, line);
    }
out:
    if (copy) {
        memset(copy, 0, strlen(copy)); /* it held tokens */
        free(copy);
    }
    if (r < 0) {
        vmsig_grants_free(t);
        t = NULL;
    }
    if (err) {
        *err = r;
    }
    return t;
}

static int read_small_file(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    ssize_t n;
    char *buf;
    int r = 0;

    if (fd < 0) {
        return -errno;
    }
    buf = malloc(GRANTS_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    do {
        n = read(fd, buf + len, GRANTS_FILE_MAX + 1 - len);
        if (n < 0 && errno != EINTR) {
            r = -errno;
        } else if (n > 0) {
            len += (size_t)n;
        }
    } while (r == 0 && n != 0 && len <= GRANTS_FILE_MAX);
    close(fd);
    if (r == 0 && len > GRANTS_FILE_MAX) {
        r = -EFBIG;
    }
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

vmsig_grants *vmsig_grants_load(const char *path, int *err, char *errbuf, size_t errlen)
{
    vmsig_grants *t;
    char *text = NULL;
    int r;

    if (!path) {
        r = -EINVAL;
    } else {
        r = read_small_file(path, &text);
    }
    if (r < 0) {
        if (errbuf && errlen) {
            snprintf(errbuf, errlen, "%s: %s", path ? path : "(null)",
                     r == -EFBIG ? "grants file larger than 1 MiB" : strerror(-r));
        }
        if (err) {
            *err = r;
        }
        return NULL;
    }
    t = vmsig_grants_parse(text, err, errbuf, errlen);
    memset(text, 0, strlen(text));
    free(text);
    return t;
}
