/*
 * vmsig-qtest.h - helpers shared by the vmsig qtests.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 */
#ifndef VMSIG_QTEST_H
#define VMSIG_QTEST_H

#include <poll.h>
#include <sys/wait.h>

/* QDict: qapi/qmp/ moved to qobject/ in QEMU 10.0 */
#if QEMU_VERSION_MAJOR >= 10
#include "qobject/qdict.h"
#else
#include "qapi/qmp/qdict.h"
#endif

/* Long enough for a loaded CI machine; QEMU refuses bad options at once. */
#define VMSIG_SPAWN_TIMEOUT_MS 30000

/*
 * Run QEMU (QTEST_QEMU_BINARY, -machine none -accel qtest) to completion with
 * the extra arguments @args (split like a shell would); return its wait
 * status, stdout and stderr in @out. A QEMU still running after
 * VMSIG_SPAWN_TIMEOUT_MS is killed, so a wrongly accepted option fails the
 * test instead of hanging it.
 */
static inline int vmsig_run_qemu(const char *args, char **out)
{
    g_autofree char *cmdline = g_strdup_printf(
        "%s -machine none -accel qtest -display none -nodefaults %s",
        g_getenv("QTEST_QEMU_BINARY"), args);
    g_auto(GStrv) argv = NULL;
    g_autoptr(GError) err = NULL;
    GString *s = g_string_new(NULL);
    gint64 deadline = g_get_monotonic_time() + VMSIG_SPAWN_TIMEOUT_MS * 1000LL;
    GPid pid;
    int fd, status;

    g_assert_true(g_shell_parse_argv(cmdline, NULL, &argv, NULL));
    g_spawn_async_with_pipes(NULL, argv, NULL,
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
            g_string_append(s, "[killed: still running]");
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
        g_string_append_len(s, buf, n);
    }
    close(fd);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);
    *out = g_string_free(s, false);
    return status;
}

#endif /* VMSIG_QTEST_H */
