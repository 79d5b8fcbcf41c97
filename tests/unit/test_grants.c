/*
 * test_grants.c - the grants file parser, the retired capability bits and
 * lookup precedence.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "vmsig/vmsig_core.h"

static uint32_t fnv1a_principal(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return 0x80000000u | (h & 0x7fffffffu);
}

static vmsig_grants *parse_ok(const char *text)
{
    char errbuf[256] = "";
    int err = 1;
    vmsig_grants *t = vmsig_grants_parse(text, &err, errbuf, sizeof(errbuf));

    if (!t) {
        g_test_message("unexpected refusal: %s", errbuf);
    }
    g_assert_nonnull(t);
    g_assert_cmpint(err, ==, 0);
    return t;
}

/* Refused with -EINVAL and an error text that contains `want`. */
static void parse_refused(const char *text, const char *want)
{
    char errbuf[256] = "";
    int err = 0;
    vmsig_grants *t = vmsig_grants_parse(text, &err, errbuf, sizeof(errbuf));

    g_assert_null(t);
    g_assert_cmpint(err, ==, -EINVAL);
    if (!strstr(errbuf, want)) {
        g_test_message("errbuf '%s' lacks '%s'", errbuf, want);
    }
    g_assert_nonnull(strstr(errbuf, want));
}

static void test_parse_forms(void)
{
    vmsig_grants *t = parse_ok(
        "# a comment line\n"
        "\n"
        "uid:1000     endpoints=0,1    caps=OBSERVE,VM,MEMCTX  priority=7   # trailing\n"
        "uid:1001     endpoints=0x30   caps=0x1eb\n"
        "token:s3cret endpoints=all    caps=all                priority=-5\n"
        "default      endpoints=63     caps=observe,Input\n");
    vmsig_grant g;

    g_assert_cmpint(vmsig_grants_lookup(t, 1000, NULL, &g), ==, 0);
    g_assert_cmpuint(g.principal, ==, 1000);
    g_assert_cmpuint(g.endpoint_mask, ==, 0x3);
    g_assert_cmpuint(g.caps, ==, VMSIG_CAP_OBSERVE | VMSIG_CAP_VM | VMSIG_CAP_MEMCTX);
    g_assert_cmpint(g.priority, ==, 7);

    g_assert_cmpint(vmsig_grants_lookup(t, 1001, "", &g), ==, 0);
    g_assert_cmpuint(g.endpoint_mask, ==, 0x30);
    g_assert_cmpuint(g.caps, ==, VMSIG_CAP_ALL_1_0);
    g_assert_cmpint(g.priority, ==, 0);

    g_assert_cmpint(vmsig_grants_lookup(t, 5, "s3cret", &g), ==, 0);
    g_assert_cmpuint(g.principal, ==, fnv1a_principal("s3cret"));
    g_assert_cmpuint(g.principal & 0x80000000u, !=, 0);
    g_assert_cmpuint(g.endpoint_mask, ==, ~0ull);
    g_assert_cmpuint(g.caps, ==, VMSIG_CAP_ALL_1_0);
    g_assert_cmpint(g.priority, ==, -5);

    g_assert_cmpint(vmsig_grants_lookup(t, 4242, NULL, &g), ==, 0);
    g_assert_cmpuint(g.principal, ==, 4242); /* the default names the real uid */
    g_assert_cmpuint(g.endpoint_mask, ==, 1ull << 63);
    g_assert_cmpuint(g.caps, ==, VMSIG_CAP_OBSERVE | VMSIG_CAP_INPUT);
    vmsig_grants_free(t);
}

static void test_parse_every_cap_name(void)
{
    vmsig_grants *t = parse_ok(
        "uid:1 endpoints=0 caps=OBSERVE,INPUT,LIFECYCLE,POWER,VM,MEMCTX,MEMWRITE,CPU,SNAPSHOT\n"
        "uid:2 endpoints=0 caps=cap_memwrite\n");
    vmsig_grant g;

    g_assert_cmpint(vmsig_grants_lookup(t, 1, NULL, &g), ==, 0);
    g_assert_cmpuint(g.caps, ==, VMSIG_CAP_ALL);
    g_assert_cmpint(vmsig_grants_lookup(t, 2, NULL, &g), ==, 0);
    g_assert_cmpuint(g.caps, ==, VMSIG_CAP_MEMWRITE);
    vmsig_grants_free(t);
}

static void test_refuse_retired(void)
{
    parse_refused("uid:1 endpoints=0 caps=OBSERVE\n"
                  "\n"
                  "uid:2 endpoints=0 caps=0x5\n",
                  "line 3: capability bit 0x4 is retired (was CAP_STREAM) and must not be "
                  "used; remove it");
    parse_refused("uid:2 endpoints=0 caps=0x11\n",
                  "line 1: capability bit 0x10 is retired (was CAP_MEMREAD) and must not be "
                  "used; remove it");
    parse_refused("uid:2 endpoints=0 caps=OBSERVE,MEMREAD\n",
                  "line 1: capability bit 0x10 is retired (was CAP_MEMREAD)");
    parse_refused("uid:2 endpoints=0 caps=stream\n",
                  "line 1: capability bit 0x4 is retired (was CAP_STREAM)");
}

static void test_refuse_bad(void)
{
    parse_refused("uid:1 endpoints=0 caps=OBSERVE,FLY\n", "line 1: unknown capability 'FLY'");
    parse_refused("uid:1 endpoints=0 caps=0x800\n", "line 1: capability bits 0x800 are not");
    parse_refused("uid:1 endpoints=64 caps=OBSERVE\n", "line 1: bad endpoint '64'");
    parse_refused("uid:1 endpoints=0,x caps=OBSERVE\n", "line 1: bad endpoint 'x'");
    parse_refused("uid:1 endpoints=-1 caps=OBSERVE\n", "line 1: bad endpoint '-1'");
    parse_refused("uid:1 endpoints=0xzz caps=OBSERVE\n", "line 1: bad endpoint mask '0xzz'");
    parse_refused("# ok\nthis is garbage\n", "line 2: expected uid:N, token:STRING or default");
    parse_refused("uid:1 endpoints=0 caps=OBSERVE color=red\n", "line 1: unknown field 'color'");
    parse_refused("uid:1 endpoints=0 caps=OBSERVE garbage\n", "line 1: expected key=value");
    parse_refused("uid:1 caps=OBSERVE\n", "line 1: missing endpoints=");
    parse_refused("uid:1 endpoints=0\n", "line 1: missing caps=");
    parse_refused("uid:x endpoints=0 caps=OBSERVE\n", "line 1: bad uid 'x'");
    parse_refused("uid:1 endpoints=0 caps=OBSERVE priority=high\n", "line 1: bad priority");
    parse_refused("uid:1 endpoints=0 endpoints=1 caps=OBSERVE\n", "given twice");
    parse_refused("uid:1 endpoints=0 caps=OBSERVE\nuid:1 endpoints=1 caps=VM\n",
                  "line 2: duplicate entry for uid:1");
    parse_refused("token:abc endpoints=0 caps=OBSERVE\ntoken:abc endpoints=1 caps=VM\n",
                  "line 2: duplicate entry for a token");
    parse_refused("token: endpoints=0 caps=OBSERVE\n", "line 1: token must be 1..64 bytes");
}

static void test_lookup_precedence(void)
{
    vmsig_grants *t = parse_ok("token:tok endpoints=0 caps=all priority=9\n"
                               "uid:1000 endpoints=1 caps=OBSERVE priority=1\n"
                               "default endpoints=2 caps=OBSERVE\n");
    vmsig_grant g;

    g_assert_cmpint(vmsig_grants_lookup(t, 1000, "tok", &g), ==, 0);
    g_assert_cmpint(g.priority, ==, 9);
    g_assert_cmpint(vmsig_grants_lookup(t, 1000, NULL, &g), ==, 0);
    g_assert_cmpint(g.priority, ==, 1);
    g_assert_cmpuint(g.endpoint_mask, ==, 0x2);
    g_assert_cmpint(vmsig_grants_lookup(t, 77, NULL, &g), ==, 0);
    g_assert_cmpuint(g.endpoint_mask, ==, 0x4);
    /* A wrong token is refused, never downgraded to the uid or the default. */
    g_assert_cmpint(vmsig_grants_lookup(t, 1000, "tok2", &g), ==, -EPERM);
    g_assert_cmpint(vmsig_grants_lookup(t, 1000, "to", &g), ==, -EPERM);
    vmsig_grants_free(t);

    t = parse_ok("uid:1000 endpoints=1 caps=OBSERVE\n");
    g_assert_cmpint(vmsig_grants_lookup(t, 1001, NULL, &g), ==, -EPERM);
    g_assert_cmpint(vmsig_grants_lookup(t, 1000, "x", &g), ==, -EPERM);
    vmsig_grants_free(t);

    t = parse_ok("");
    g_assert_cmpint(vmsig_grants_lookup(t, 0, NULL, &g), ==, -EPERM);
    vmsig_grants_free(t);
}

static void test_set(void)
{
    vmsig_grants *t = parse_ok("# empty\n");
    vmsig_grant g = { .endpoint_mask = 1, .caps = VMSIG_CAP_OBSERVE }, out;

    g_assert_cmpint(vmsig_grants_set(t, 7, NULL, &g), ==, 0);
    g.caps = VMSIG_CAP_VM;
    g_assert_cmpint(vmsig_grants_set(t, 7, NULL, &g), ==, 0); /* replaces */
    g_assert_cmpint(vmsig_grants_lookup(t, 7, NULL, &out), ==, 0);
    g_assert_cmpuint(out.caps, ==, VMSIG_CAP_VM);
    g_assert_cmpint(vmsig_grants_set(t, (uint32_t)-1, NULL, &g), ==, 0);
    g_assert_cmpint(vmsig_grants_lookup(t, 8, NULL, &out), ==, 0);
    g_assert_cmpuint(out.principal, ==, 8);
    g.caps = 0x4;
    g_assert_cmpint(vmsig_grants_set(t, 9, NULL, &g), ==, -EINVAL);
    g.caps = 0x1000;
    g_assert_cmpint(vmsig_grants_set(t, 9, NULL, &g), ==, -EINVAL);
    vmsig_grants_free(t);
}

static void test_load(void)
{
    char path[] = "/tmp/vmsig-grants-XXXXXX";
    char errbuf[256] = "";
    const char *text = "uid:3 endpoints=0 caps=VM\n";
    vmsig_grants *t;
    vmsig_grant g;
    int err = 1;
    int fd = mkstemp(path);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, text, strlen(text)), ==, (ssize_t)strlen(text));
    close(fd);
    t = vmsig_grants_load(path, &err, errbuf, sizeof(errbuf));
    g_assert_nonnull(t);
    g_assert_cmpint(err, ==, 0);
    g_assert_cmpint(vmsig_grants_lookup(t, 3, NULL, &g), ==, 0);
    vmsig_grants_free(t);
    unlink(path);

    t = vmsig_grants_load(path, &err, errbuf, sizeof(errbuf));
    g_assert_null(t);
    g_assert_cmpint(err, ==, -ENOENT);
    g_assert_nonnull(strstr(errbuf, path));
}

static void test_grant_check_and_names(void)
{
    vmsig_grant g = { .caps = VMSIG_CAP_ALL };

    g_assert_cmpint(vmsig_grant_check(&g), ==, 0);
    g.caps = VMSIG_CAP_OBSERVE | 0x4;
    g_assert_cmpint(vmsig_grant_check(&g), ==, -EINVAL);
    g.caps = 0x10;
    g_assert_cmpint(vmsig_grant_check(&g), ==, -EINVAL);
    g.caps = 0x800; /* not a capability (yet) */
    g_assert_cmpint(vmsig_grant_check(&g), ==, -EINVAL);
    g.caps = VMSIG_CAP_CPU;
    g_assert_cmpint(vmsig_grant_check(&g), ==, 0);
    g.caps = VMSIG_CAP_SNAPSHOT;
    g_assert_cmpint(vmsig_grant_check(&g), ==, 0);
    g_assert_cmpstr(vmsig_cap_name(VMSIG_CAP_SNAPSHOT), ==, "SNAPSHOT");
    g_assert_cmpstr(vmsig_class_name(VMSIG_CLASS_SNAPSHOT), ==, "snapshot");
    g_assert_cmphex(vmsig_class_caps(VMSIG_CLASS_SNAPSHOT), ==, VMSIG_CAP_SNAPSHOT);
    g_assert_cmpint(vmsig_grant_check(NULL), ==, -EINVAL);

    g_assert_cmpstr(vmsig_runstate_name(VMSIG_RS_IO_ERROR), ==, "io-error");
    g_assert_cmpstr(vmsig_runstate_name(VMSIG_RS_RUNNING), ==, "running");
    g_assert_cmpstr(vmsig_runstate_name(999), ==, "other");
    g_assert_cmpstr(vmsig_runstate_name(VMSIG_RS_OTHER), ==, "other");
    g_assert_cmpstr(vmsig_cause_name(VMSIG_SC__COUNT + 5), ==, "other");
    g_assert_cmpstr(vmsig_cause_name(VMSIG_SC_GUEST_RESET), ==, "guest-reset");
    g_assert_cmpstr(vmsig_cap_name(VMSIG_CAP_OBSERVE), ==, "OBSERVE");
    g_assert_cmpstr(vmsig_cap_name(0x4), ==, "unknown");
    g_assert_cmpstr(vmsig_class_name(VMSIG_CLASS_RUN), ==, "run");
    g_assert_cmpstr(vmsig_class_name(0), ==, "unknown");
    g_assert_cmpstr(vmsig_kind_name(VMSIG_EV_MEMWRITE_DONE), ==, "memwrite-done");
    g_assert_cmpstr(vmsig_kind_name(0x7777), ==, "unknown");

    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_EV_RUNSTATE), ==, 16);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_EV_SHUTDOWN), ==, 16);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_EV_MEMCTX), ==, 128);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_EV_MEMWRITE_DONE), ==, 32);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_EV_ARB), ==, 16);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_CMD_NOP), ==, 0);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_CMD_RELEASE), ==, 8);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_CMD_INPUT), ==, 16);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_CMD_MEMWRITE), ==, 16);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_MSG_HELLO), ==, 96);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_MSG_WELCOME), ==, 64);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_MSG_BYE), ==, 120);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_MSG_SUBSCRIBE), ==, 16);
    g_assert_cmpint(vmsig_kind_payload_size(VMSIG_MSG_REPLY), ==, 0);
    g_assert_cmpint(vmsig_kind_payload_size(0x0999), ==, -1);

    g_assert_true(vmsig_arb_policy_by_name("deny") == vmsig_arb_deny);
    g_assert_true(vmsig_arb_policy_by_name("preempt") == vmsig_arb_preempt);
    g_assert_true(vmsig_arb_policy_by_name("priority") == vmsig_arb_priority);
    g_assert_null(vmsig_arb_policy_by_name("coinflip"));
}

/* Two tokens whose ids collide (found by a birthday search over "t<N>"):
 * the file is refused with -EEXIST naming both lines, vmsig_grants_set too. */
static void test_token_id_collision(void)
{
    GHashTable *seen = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    char *a = NULL, *b = NULL;
    for (unsigned i = 0; !a && i < 2000000; i++) {
        char *tok = g_strdup_printf("t%u", i);
        uint32_t id = vmsig_token_principal(tok);
        g_assert_cmphex(id & 0x80000000u, ==, 0x80000000u);
        char *prev = g_hash_table_lookup(seen, GUINT_TO_POINTER(id));
        if (prev) {
            a = g_strdup(prev);
            b = tok;
        } else {
            g_hash_table_insert(seen, GUINT_TO_POINTER(id), tok);
        }
    }
    g_assert_nonnull(a);
    g_assert_cmpstr(a, !=, b);
    g_assert_cmpuint(vmsig_token_principal(a), ==, vmsig_token_principal(b));

    char *text = g_strdup_printf("# two tokens, one id\n"
                                 "token:%s endpoints=all caps=OBSERVE\n"
                                 "token:%s endpoints=all caps=VM\n", a, b);
    int err = 0;
    char eb[256];
    g_assert_null(vmsig_grants_parse(text, &err, eb, sizeof(eb)));
    g_assert_cmpint(err, ==, -EEXIST);
    g_assert_nonnull(strstr(eb, "line 3: token id 0x"));
    g_assert_nonnull(strstr(eb, "collides with the token on line 2"));
    g_assert_null(strstr(eb, a)); /* tokens are secrets: never echoed */
    g_free(text);

    vmsig_grants *t = vmsig_grants_parse("", &err, NULL, 0);
    g_assert_nonnull(t);
    vmsig_grant g = { .endpoint_mask = 1, .caps = VMSIG_CAP_OBSERVE };
    g_assert_cmpint(vmsig_grants_set(t, 0, a, &g), ==, 0);
    g_assert_cmpint(vmsig_grants_set(t, 0, b, &g), ==, -EEXIST);
    g_assert_cmpint(vmsig_grants_set(t, 0, a, &g), ==, 0); /* the same token: replaced */
    vmsig_grant out;
    g_assert_cmpint(vmsig_grants_lookup(t, 5, a, &out), ==, 0);
    g_assert_cmpuint(out.principal, ==, vmsig_token_principal(a));
    g_assert_cmpint(vmsig_grants_lookup(t, 5, b, &out), ==, -EPERM);
    vmsig_grants_free(t);
    g_free(a);
    g_free(b);
    g_hash_table_destroy(seen);
}

/* uid principals stay below 0x80000000, token ones above: never equal. */
static void test_uid_range(void)
{
    int err = 0;
    char eb[256];
    g_assert_null(vmsig_grants_parse("uid:2147483648 endpoints=all caps=OBSERVE\n", &err, eb,
                                     sizeof(eb)));
    g_assert_cmpint(err, ==, -EINVAL);
    g_assert_nonnull(strstr(eb, "line 1: uid 2147483648 is out of range"));
    vmsig_grants *t = vmsig_grants_parse("uid:2147483647 endpoints=all caps=OBSERVE\n", &err,
                                         eb, sizeof(eb));
    g_assert_nonnull(t);
    vmsig_grant g = { .endpoint_mask = 1, .caps = VMSIG_CAP_OBSERVE };
    g_assert_cmpint(vmsig_grants_set(t, 0x80000000u, NULL, &g), ==, -EINVAL);
    vmsig_grants_free(t);
    /* A peer in that range is refused even by the default entry. */
    t = vmsig_grants_parse("default endpoints=all caps=OBSERVE\n", &err, NULL, 0);
    g_assert_nonnull(t);
    vmsig_grant out;
    g_assert_cmpint(vmsig_grants_lookup(t, 0x7fffffffu, NULL, &out), ==, 0);
    g_assert_cmpuint(out.principal, ==, 0x7fffffffu);
    g_assert_cmpint(vmsig_grants_lookup(t, 0x80000000u, NULL, &out), ==, -EPERM);
    vmsig_grants_free(t);
    g_assert_cmpuint(vmsig_token_principal(""), ==, 0);
    g_assert_cmpuint(vmsig_token_principal(NULL), ==, 0);
}

/* caps=all is the 1.0 set, pinned: a capability added later is not in it. */
static void test_caps_all_pinned(void)
{
    int err = 0;
    vmsig_grants *t = vmsig_grants_parse("default endpoints=all caps=all\n", &err, NULL, 0);
    g_assert_nonnull(t);
    vmsig_grant out;
    g_assert_cmpint(vmsig_grants_lookup(t, 1234, NULL, &out), ==, 0);
    g_assert_cmphex(out.caps, ==, VMSIG_CAP_ALL_1_0);
    g_assert_cmphex(out.caps, ==, 0x1ebu);
    vmsig_grants_free(t);
    /* a later capability is added by name, next to all */
    t = vmsig_grants_parse("default endpoints=all caps=all,CPU\n", &err, NULL, 0);
    g_assert_nonnull(t);
    g_assert_cmpint(vmsig_grants_lookup(t, 1234, NULL, &out), ==, 0);
    g_assert_cmphex(out.caps, ==, VMSIG_CAP_ALL_1_0 | VMSIG_CAP_CPU);
    vmsig_grants_free(t);
    /* Every named capability is one bit, in VMSIG_CAP_ALL, not retired. */
    uint32_t all = 0;
#define CHECK_CAP(name, bit)                                      \
    g_assert_cmpuint(__builtin_popcount(bit), ==, 1);             \
    g_assert_cmpuint((bit) & VMSIG_CAP_RETIRED, ==, 0);           \
    g_assert_cmpstr(vmsig_cap_name(bit), ==, #name);              \
    all |= (bit);
    VMSIG_CAPS(CHECK_CAP)
#undef CHECK_CAP
    g_assert_cmphex(all, ==, VMSIG_CAP_ALL);
}

/* Key names and codes: the Linux input codes, both ways. */
static void test_key_names(void)
{
    g_assert_cmpint(vmsig_key_by_name("a"), ==, 30);
    g_assert_cmpint(vmsig_key_by_name("RET"), ==, 28);
    g_assert_cmpint(vmsig_key_by_name("esc"), ==, 1);
    g_assert_cmpint(vmsig_key_by_name("f12"), ==, 88);
    g_assert_cmpint(vmsig_key_by_name("nosuchkey"), ==, -1);
    g_assert_cmpstr(vmsig_key_name(30), ==, "a");
    g_assert_cmpstr(vmsig_key_name(42), ==, "shift");
    g_assert_null(vmsig_key_name(0));
    unsigned n = 0;
#define KEY_CHECK(name, code)                                     \
    g_assert_cmpint(vmsig_key_by_name(#name), ==, (code));        \
    g_assert_nonnull(vmsig_key_name(code));                       \
    n++;
    VMSIG_KEYS(KEY_CHECK)
#undef KEY_CHECK
    g_assert_cmpuint(n, >, 100);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/grants/parse/forms", test_parse_forms);
    g_test_add_func("/grants/parse/cap-names", test_parse_every_cap_name);
    g_test_add_func("/grants/refuse/retired", test_refuse_retired);
    g_test_add_func("/grants/refuse/bad", test_refuse_bad);
    g_test_add_func("/grants/lookup/precedence", test_lookup_precedence);
    g_test_add_func("/grants/set", test_set);
    g_test_add_func("/grants/load", test_load);
    g_test_add_func("/grants/check-and-names", test_grant_check_and_names);
    g_test_add_func("/grants/token-id-collision", test_token_id_collision);
    g_test_add_func("/grants/uid-range", test_uid_range);
    g_test_add_func("/grants/caps-all-pinned", test_caps_all_pinned);
    g_test_add_func("/grants/key-names", test_key_names);
    return g_test_run();
}
