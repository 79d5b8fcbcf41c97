/*
 * vmsig smoke test: -object vmsig loads the module, creates the object
 * with its options, and refuses bad options by name.
 *
 * Built by QEMU's build (see meson.build here); run with
 * QTEST_QEMU_BINARY and QEMU_MODULE_DIR set.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/wait.h>
#include "libqtest.h"
#include "vmsig-qtest.h"

static char *tmpdir;

static char *sock_path(void)
{
    return g_build_filename(tmpdir, "vmsig.sock", NULL);
}

static QDict *qom_get(QTestState *qts, const char *path, const char *prop)
{
    QDict *resp = qtest_qmp(qts, "{ 'execute': 'qom-get', 'arguments': "
                            "{ 'path': %s, 'property': %s } }", path, prop);

    g_assert(resp);
    if (!qdict_haskey(resp, "return")) {
        g_test_message("qom-get %s %s failed", path, prop);
        g_assert_not_reached();
    }
    return resp;
}

static void test_object_created(void)
{
    g_autofree char *path = sock_path();
    QTestState *qts;
    QDict *resp;

    qts = qtest_initf("-nodefaults -object vmsig,id=vs0,path=%s,endpoint=7",
                      path);

    resp = qom_get(qts, "/objects/vs0", "type");
    g_assert_cmpstr(qdict_get_str(resp, "return"), ==, "vmsig");
    qobject_unref(resp);

    resp = qom_get(qts, "/objects/vs0", "endpoint");
    g_assert_cmpint(qdict_get_int(resp, "return"), ==, 7);
    qobject_unref(resp);

    resp = qom_get(qts, "/objects/vs0", "path");
    g_assert_cmpstr(qdict_get_str(resp, "return"), ==, path);
    qobject_unref(resp);

    resp = qom_get(qts, "/objects/vs0", "policy");
    g_assert_cmpstr(qdict_get_str(resp, "return"), ==, "deny");
    qobject_unref(resp);

    resp = qom_get(qts, "/objects/vs0", "queue-limit");
    g_assert_cmpint(qdict_get_int(resp, "return"), ==, 256);
    qobject_unref(resp);

    /* options are fixed once the object exists */
    resp = qtest_qmp(qts, "{ 'execute': 'qom-set', 'arguments': "
                     "{ 'path': '/objects/vs0', 'property': 'endpoint', "
                     "'value': 3 } }");
    g_assert(qdict_haskey(resp, "error"));
    qobject_unref(resp);

    qtest_quit(qts);
}


static void assert_refused(const char *object_opts, const char *needle)
{
    g_autofree char *output = NULL;
    g_autofree char *args = g_strdup_printf("-object %s", object_opts);
    int status = vmsig_run_qemu(args, &output);

    g_test_message("-object %s: %s", object_opts, output);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), !=, 0);
    g_assert_nonnull(strstr(output, needle));
}

static void test_bad_policy(void)
{
    g_autofree char *path = sock_path();
    g_autofree char *opts = g_strdup_printf("vmsig,id=vs0,path=%s,"
                                            "policy=bogus", path);

    /* VmsigPolicy is a QAPI enum: QEMU's visitor refuses the value */
    assert_refused(opts, "'policy' does not accept value 'bogus'");
}

static void test_bad_endpoint(void)
{
    g_autofree char *path = sock_path();
    g_autofree char *opts = g_strdup_printf("vmsig,id=vs0,path=%s,"
                                            "endpoint=99", path);

    assert_refused(opts, "endpoint 99");
}

static void test_missing_path(void)
{
    /* the QAPI schema makes path mandatory before the object is made */
    assert_refused("vmsig,id=vs0", "'path'");
}

static void test_bad_queue_limit(void)
{
    g_autofree char *path = sock_path();
    g_autofree char *opts = g_strdup_printf("vmsig,id=vs0,path=%s,"
                                            "queue-limit=0", path);

    assert_refused(opts, "queue-limit 0");
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("vmsig-smoke-XXXXXX", NULL);
    g_assert(tmpdir);

    qtest_add_func("/vmsig/smoke/object-created", test_object_created);
    qtest_add_func("/vmsig/smoke/bad-policy", test_bad_policy);
    qtest_add_func("/vmsig/smoke/bad-endpoint", test_bad_endpoint);
    qtest_add_func("/vmsig/smoke/missing-path", test_missing_path);
    qtest_add_func("/vmsig/smoke/bad-queue-limit", test_bad_queue_limit);

    ret = g_test_run();
    rmdir(tmpdir);
    g_free(tmpdir);
    return ret;
}
