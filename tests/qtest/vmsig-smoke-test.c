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
#include "qapi/qmp/qdict.h"

/* Long enough for a loaded CI machine; QEMU refuses bad options at once. */
#define SPAWN_TIMEOUT_MS 30000

static char *tmpdir;

static const char *qemu_binary(void)
{
    const char *qemu = g_getenv("QTEST_QEMU_BINARY");

    g_assert(qemu);
    return qemu;
}

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

/*
 * Run QEMU with @object_opts and return its exit status; stdout and stderr
 * are collected into @output.  A QEMU that keeps running past
 * SPAWN_TIMEOUT_MS is killed, so a wrongly accepted option fails the test
 * instead of hanging it.
 */
static int run_qemu(const char *object_opts, char **output)
{
    const char *qemu = qemu_binary();
    const char *argv[] = {
        qemu, "-machine", "none", "-accel", "qtest", "-display", "none",
        "-nodefaults", "-object", object_opts, NULL,
    };
    g_autoptr(GError) err = NULL;
    GString *out = g_string_new(NULL);
    gint64 deadline = g_get_monotonic_time() + SPAWN_TIMEOUT_MS * 1000LL;
    GPid pid;
    int fd, status;

    g_spawn_async_with_pipes(NULL, (char **)argv, NULL,
                             G_SPAWN_DO_NOT_REAP_CHILD |
                             G_SPAWN_STDOUT_TO_DEV_NULL,
                             NULL, NULL, &pid, NULL, NULL, &fd, &err);
    g_assert_no_error(err);

    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        char buf[512];
        ssize_t n;

        if (left <= 0) {
            kill(pid, SIGKILL);
            g_string_append(out, "[killed: still running]");
            break;
        }
        if (poll(&pfd, 1, left) <= 0) {
            continue;
        }
        n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        g_string_append_len(out, buf, n);
    }
    close(fd);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);
    *output = g_string_free(out, false);
    return status;
}

static void assert_refused(const char *object_opts, const char *needle)
{
    g_autofree char *output = NULL;
    int status = run_qemu(object_opts, &output);

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

    assert_refused(opts, "policy 'bogus'");
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
