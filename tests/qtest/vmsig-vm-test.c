/*
 * vmsig VM qtest: the object on QEMU's main loop, seen from both sides.
 *
 * Each test starts QEMU (-accel qtest) with -object vmsig, attaches with the
 * client library over the object's real socket, and cross-checks every
 * effect with QMP on the same QEMU: SEAM events against QMP events and
 * query-status, commands against QEMU's state, grants and arbitration
 * refusals with QEMU untouched, and misbehaving peers (slow reader, torn
 * frame, garbage, object-del, quit, 200 controls) with QEMU going on.
 *
 * Built by QEMU's build (see meson.build here); run with QTEST_QEMU_BINARY
 * and QEMU_MODULE_DIR set.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "libqtest.h"
#include "vmsig/vmsig_client.h"
#include "vmsig-qtest.h"

#define EV_TIMEOUT_MS    5000

/* caps as grants-file names, for grants written by the tests */
#define CAPS_ALL "OBSERVE,INPUT,LIFECYCLE,POWER,VM,MEMCTX,MEMWRITE"

static char *tmpdir;
static unsigned test_no;

typedef struct Vm {
    QTestState *qts;
    char *path;     /* the object's socket */
    char *grants;   /* grants file written by the test, or NULL */
} Vm;

/* ---- setup ---- */

static char *write_grants(const char *text)
{
    char *p = g_strdup_printf("%s/grants-%u", tmpdir, ++test_no);

    g_assert_true(g_file_set_contents(p, text, -1, NULL));
    return p;
}

/* QEMU with -object vmsig,id=vs0,path=...[,grants=...]<opts> <extra>. */
static Vm *vm_start(const char *grants_text, const char *opts, const char *extra)
{
    Vm *vm = g_new0(Vm, 1);
    g_autofree char *gopt = NULL;

    vm->path = g_strdup_printf("%s/vmsig-%u.sock", tmpdir, ++test_no);
    if (grants_text) {
        vm->grants = write_grants(grants_text);
        gopt = g_strdup_printf(",grants=%s", vm->grants);
    }
    vm->qts = qtest_initf("-nodefaults -m 64 -name vmsig-qtest "
                          "-object vmsig,id=vs0,path=%s%s%s %s",
                          vm->path, gopt ? gopt : "", opts ? opts : "",
                          extra ? extra : "");
    return vm;
}

static void vm_free(Vm *vm)
{
    if (vm->qts) {
        qtest_quit(vm->qts);
    }
    if (vm->grants) {
        unlink(vm->grants);
    }
    g_free(vm->grants);
    g_free(vm->path);
    g_free(vm);
}

static vmsig_client *try_attach(Vm *vm, const char *token, int *err)
{
    vmsig_client_config cfg = {
        .version = VMSIG_CLIENT_CONFIG_VERSION,
        .path = vm->path,
        .token = token,
        .timeout_ms = EV_TIMEOUT_MS,
    };

    return vmsig_client_connect(&cfg, err);
}

static vmsig_client *attach(Vm *vm, const char *token)
{
    int err = 0;
    vmsig_client *c = try_attach(vm, token, &err);

    if (!c) {
        g_test_message("connect %s: %s", vm->path, strerror(-err));
    }
    g_assert_nonnull(c);
    return c;
}

/* The next event of `kind`, skipping others; fails the test on timeout. */
static vmsig_event next_kind(vmsig_client *c, uint32_t kind)
{
    vmsig_msg m;

    for (;;) {
        int r = vmsig_client_next(c, &m, EV_TIMEOUT_MS);

        if (r < 0) {
            g_test_message("waiting for %s: %s", vmsig_kind_name(kind),
                           strerror(-r));
        }
        g_assert_cmpint(r, ==, 0);
        if (m.ev.kind == kind) {
            return m.ev;
        }
    }
}

/* The next RUNSTATE with running == want. */
static vmsig_event next_runstate(vmsig_client *c, uint32_t state)
{
    for (;;) {
        vmsig_event ev = next_kind(c, VMSIG_EV_RUNSTATE);

        if (ev.u.seam.state == state) {
            return ev;
        }
    }
}

/* Everything until the server says BYE; returns its status. */
static int drain_to_bye(vmsig_client *c, unsigned *nevents)
{
    const char *text = NULL;
    vmsig_msg m;
    int r;

    while ((r = vmsig_client_next(c, &m, EV_TIMEOUT_MS)) == 0) {
        if (nevents) {
            (*nevents)++;
        }
    }
    g_assert_cmpint(r, ==, -EPIPE);
    r = vmsig_client_bye(c, &text);
    g_test_message("BYE %d (%s)", r, text ? text : "");
    return r;
}

static const char *qmp_status(QTestState *qts, bool *running)
{
    static char buf[32];
    QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-status' }");
    QDict *ret = qdict_get_qdict(resp, "return");

    g_assert_nonnull(ret);
    pstrcpy(buf, sizeof(buf), qdict_get_str(ret, "status"));
    if (running) {
        *running = qdict_get_bool(ret, "running");
    }
    qobject_unref(resp);
    return buf;
}

static void qmp_ok(QTestState *qts, const char *cmd)
{
    g_autofree char *json = g_strdup_printf("{ 'execute': '%s' }", cmd);

    qtest_qmp_assert_success(qts, json, NULL);
}

/* QEMU is exiting by itself: reap it, then free the QTestState. */
static void vm_wait_exit(Vm *vm)
{
    for (int i = 0; qtest_probe_child(vm->qts); i++) {
        g_assert_cmpint(i, <, 1000);
        g_usleep(10 * 1000);
    }
    qtest_quit(vm->qts);
    vm->qts = NULL;
}

static int cmd(vmsig_client *c, uint32_t kind, uint32_t op, vmsig_reply *rep)
{
    vmsig_event ev = { .dir = VMSIG_DIR_DOWN, .kind = kind, .u.cmd.op = op };

    return vmsig_client_call(c, &ev, rep, EV_TIMEOUT_MS);
}

/* ---- attach, query, run state ---- */

static void test_attach_snapshot(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *c = attach(vm, NULL);
    const vmsig_wire_welcome *w = vmsig_client_welcome(c);
    vmsig_msg m;

    /* default grant: QEMU's own uid, all but POWER and MEMWRITE, endpoint 0 */
    g_assert_cmpuint(w->principal, ==, getuid());
    g_assert_cmphex(w->caps, ==,
                    VMSIG_CAP_ALL & ~(VMSIG_CAP_POWER | VMSIG_CAP_MEMWRITE));
    g_assert_cmphex(w->endpoint_mask, ==, 1);

    g_assert_cmpint(vmsig_client_next(c, &m, EV_TIMEOUT_MS), ==, 0);
    g_assert_cmphex(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
    g_assert_true(m.ev.flags & VMSIG_F_SNAPSHOT);
    g_assert_cmpuint(m.ev.u.seam.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(m.ev.u.seam.running, ==, 1);
    g_assert_cmpuint(m.ev.seq, >=, 1);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");

    vmsig_client_close(c);
    vm_free(vm);
}

static void test_query(void)
{
    Vm *vm = vm_start(NULL, ",endpoint=5", "-smp 2");
    vmsig_client *c = attach(vm, NULL);
    vmsig_wire_vminfo info;

    g_assert_cmpint(vmsig_client_vm(c, 5, VMSIG_VM_QUERY, &info), ==, 0);
    g_assert_cmpuint(info.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(info.running, ==, 1);
    g_assert_cmpuint(info.vcpus, ==, 2);
    g_assert_cmpuint(info.endpoint, ==, 5);
    g_assert_cmpuint(info.ram_size, ==, 64 * 1024 * 1024);
    g_assert_cmpstr(info.version, ==, QEMU_VERSION);
    g_assert_cmpstr(info.name, ==, "vmsig-qtest");

    /* the default grant covers only the object's own endpoint */
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, &info), ==, -EPERM);

    qmp_ok(vm->qts, "stop");
    g_assert_cmpint(vmsig_client_vm(c, 5, VMSIG_VM_QUERY, &info), ==, 0);
    g_assert_cmpuint(info.state, ==, VMSIG_RS_PAUSED);
    g_assert_cmpuint(info.running, ==, 0);

    vmsig_client_close(c);
    vm_free(vm);
}

/* QEMU's pid: the peer of the object's socket. */
static pid_t peer_pid(vmsig_client *c)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    g_assert_cmpint(getsockopt(vmsig_client_fd(c), SOL_SOCKET, SO_PEERCRED,
                               &cred, &len), ==, 0);
    g_assert_cmpint(cred.pid, >, 0);
    return cred.pid;
}

/* A control with config `version` that does not offer `features_off`. */
static vmsig_client *attach_features(Vm *vm, uint32_t version,
                                     uint64_t features_off)
{
    vmsig_client_config cfg = {
        .version = version,
        .path = vm->path,
        .timeout_ms = EV_TIMEOUT_MS,
        .features_off = features_off, /* not read by version 1 */
    };
    int err = 0;
    vmsig_client *c = vmsig_client_connect(&cfg, &err);

    g_assert_cmpint(err, ==, 0);
    g_assert_nonnull(c);
    return c;
}

/* CMD_VM query on endpoint 0 through vmsig_client_call: the whole body. */
static void query_body(vmsig_client *c, vmsig_reply *rep)
{
    g_assert_cmpint(cmd(c, VMSIG_CMD_VM, VMSIG_VM_QUERY, rep), ==, 0);
    g_assert_cmpint(rep->status, ==, 0);
}

/* The VMSIG_FEAT_VMINFO_HOST tail: to whoever negotiated it, only to them. */
static void test_query_host(void)
{
    static const uint8_t uuid[16] = {
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
    };
    static const uint8_t zero[16];
    Vm *vm = vm_start(NULL, NULL,
                      "-uuid 12345678-9abc-def0-1122-334455667788");
    vmsig_client *all = attach_features(vm, VMSIG_CLIENT_CONFIG_VERSION, 0);
    vmsig_client *v1 = attach_features(vm, 1, VMSIG_FEAT_VMINFO_HOST);
    vmsig_client *old = attach_features(vm, 2, VMSIG_FEAT_VMINFO_HOST);
    vmsig_wire_vminfo info, info_old;
    vmsig_wire_vminfo_host host;
    vmsig_reply rep;
    pid_t pid = peer_pid(all);

    /* offering every feature: 96 + 40 bytes */
    g_assert_cmphex(vmsig_client_welcome(all)->features &
                    VMSIG_FEAT_VMINFO_HOST, ==, VMSIG_FEAT_VMINFO_HOST);
    query_body(all, &rep);
    g_assert_cmpuint(rep.len, ==, sizeof(info) + sizeof(host));
    g_assert_cmpuint(rep.len, ==, 136);
    memcpy(&info, rep.body, sizeof(info));
    memcpy(&host, rep.body + sizeof(info), sizeof(host));
    g_assert_cmpuint(info.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(host.pid, !=, 0);
    g_assert_cmpuint(host.pid, ==, pid);
    g_assert_cmpuint(host.reserved, ==, 0);
    g_assert_cmpuint(host.accel[sizeof(host.accel) - 1], ==, '\0');
    g_assert_cmpstr(host.accel, ==, "qtest");
    g_assert_cmpmem(host.uuid, sizeof(host.uuid), uuid, sizeof(uuid));
    /* the shorthand still fills the 96-byte struct */
    memset(&info, 0xaa, sizeof(info));
    g_assert_cmpint(vmsig_client_vm(all, 0, VMSIG_VM_QUERY, &info), ==, 0);
    g_assert_cmpstr(info.name, ==, "vmsig-qtest");

    /* config version 1 knows no features_off: it offers everything */
    g_assert_cmphex(vmsig_client_welcome(v1)->features, ==, VMSIG_FEATURES_KNOWN);
    query_body(v1, &rep);
    g_assert_cmpuint(rep.len, ==, 136);

    /* not offered: the 96 bytes of protocol 1.0, nothing after them */
    g_assert_cmphex(vmsig_client_welcome(old)->features, ==,
                    VMSIG_FEATURES_KNOWN & ~VMSIG_FEAT_VMINFO_HOST);
    memset(&rep, 0xaa, sizeof(rep));
    query_body(old, &rep);
    g_assert_cmpuint(rep.len, ==, sizeof(vmsig_wire_vminfo));
    g_assert_cmpuint(rep.len, ==, 96);
    memcpy(&info_old, rep.body, sizeof(info_old));
    g_assert_cmpuint(info_old.state, ==, info.state);
    g_assert_cmpuint(info_old.ram_size, ==, info.ram_size);
    g_assert_cmpstr(info_old.version, ==, info.version);
    vmsig_client_close(old);
    vmsig_client_close(v1);
    vmsig_client_close(all);
    vm_free(vm);

    /* no -uuid: all zero */
    vm = vm_start(NULL, NULL, NULL);
    all = attach(vm, NULL);
    query_body(all, &rep);
    g_assert_cmpuint(rep.len, ==, 136);
    memcpy(&host, rep.body + sizeof(info), sizeof(host));
    g_assert_cmpuint(host.pid, ==, peer_pid(all));
    g_assert_cmpmem(host.uuid, sizeof(host.uuid), zero, sizeof(zero));
    vmsig_client_close(all);
    vm_free(vm);
}

/* Run states and causes besides running/paused, as vmsig numbers them. */
static void test_states_and_causes(void)
{
    Vm *vm;
    vmsig_client *c;
    vmsig_wire_vminfo info;
    vmsig_event ev;

    /* -S: prelaunch until cont */
    vm = vm_start(NULL, NULL, "-S");
    c = attach(vm, NULL);
    ev = next_kind(c, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_PRELAUNCH);
    g_assert_cmpuint(ev.u.seam.running, ==, 0);
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_QUERY, &info), ==, 0);
    g_assert_cmpuint(info.state, ==, VMSIG_RS_PRELAUNCH);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "prelaunch");
    qmp_ok(vm->qts, "cont");
    next_runstate(c, VMSIG_RS_RUNNING);
    vmsig_client_close(c);
    vm_free(vm);

    /* waiting for an incoming migration */
    vm = vm_start(NULL, NULL, "-incoming defer");
    c = attach(vm, NULL);
    ev = next_kind(c, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_INMIGRATE);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "inmigrate");
    vmsig_client_close(c);
    vm_free(vm);

    /* the guest panics (pvpanic), QEMU's default panic action shuts down */
    vm = vm_start(NULL, NULL, "-device pvpanic");
    c = attach(vm, NULL);
    next_runstate(c, VMSIG_RS_RUNNING);
    qtest_outb(vm->qts, 0x505, 1); /* PVPANIC_PANICKED */
    ev = next_runstate(c, VMSIG_RS_GUEST_PANICKED);
    g_assert_cmpuint(ev.u.seam.running, ==, 0);
    ev = next_kind(c, VMSIG_EV_SHUTDOWN);
    g_assert_cmpuint(ev.u.seam.cause, ==, VMSIG_SC_GUEST_PANIC);
    g_assert_cmpuint(ev.u.seam.guest, ==, 1);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_GUEST_PANICKED);
    g_assert_cmpint(drain_to_bye(c, NULL), ==, -ESHUTDOWN);
    vm_wait_exit(vm);
    vmsig_client_close(c);
    vm_free(vm);

    /* SIGTERM to QEMU */
    vm = vm_start(NULL, NULL, NULL);
    c = attach(vm, NULL);
    next_runstate(c, VMSIG_RS_RUNNING);
    g_assert_cmpint(kill(peer_pid(c), SIGTERM), ==, 0);
    ev = next_kind(c, VMSIG_EV_SHUTDOWN);
    g_assert_cmpuint(ev.u.seam.cause, ==, VMSIG_SC_HOST_SIGNAL);
    g_assert_cmpuint(ev.u.seam.guest, ==, 0);
    g_assert_cmpint(drain_to_bye(c, NULL), ==, -ESHUTDOWN);
    vm_wait_exit(vm);
    vmsig_client_close(c);
    vm_free(vm);
}

static void test_stop_cont(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *c = attach(vm, NULL);
    vmsig_event ev;
    bool running;

    next_kind(c, VMSIG_EV_RUNSTATE); /* snapshot */
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_STOP, NULL), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, &running), ==, "paused");
    g_assert_false(running);
    qtest_qmp_eventwait(vm->qts, "STOP");
    ev = next_kind(c, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_PAUSED);
    g_assert_cmpuint(ev.u.seam.running, ==, 0);
    g_assert_false(ev.flags & VMSIG_F_SNAPSHOT);

    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_CONT, NULL), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, &running), ==, "running");
    g_assert_true(running);
    qtest_qmp_eventwait(vm->qts, "RESUME");
    ev = next_kind(c, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(ev.u.seam.running, ==, 1);

    vmsig_client_close(c);
    vm_free(vm);
}

/*
 * The next RUNSTATE; every event before it must carry the next delivery
 * seq (1, 2, 3, ... per control) with nothing lost. *last: the seq before.
 */
static vmsig_event next_runstate_nolost(vmsig_client *c, uint64_t *last)
{
    vmsig_msg m;

    for (;;) {
        g_assert_cmpint(vmsig_client_next(c, &m, EV_TIMEOUT_MS), ==, 0);
        g_assert_cmpuint(m.ev.seq, ==, *last + 1);
        g_assert_cmpuint(m.lost, ==, 0);
        *last = m.ev.seq;
        if (m.ev.kind == VMSIG_EV_RUNSTATE) {
            return m.ev;
        }
    }
}

static void test_qmp_stop_cont(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *c = attach(vm, NULL);
    uint64_t last = 0;
    vmsig_event ev = next_runstate_nolost(c, &last);

    g_assert_true(ev.flags & VMSIG_F_SNAPSHOT);
    qmp_ok(vm->qts, "stop");
    ev = next_runstate_nolost(c, &last);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_PAUSED);
    qmp_ok(vm->qts, "cont");
    ev = next_runstate_nolost(c, &last);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_RUNNING);

    vmsig_client_close(c);
    vm_free(vm);
}

static void test_qmp_system_reset(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *c = attach(vm, NULL);
    vmsig_event ev;

    qmp_ok(vm->qts, "system_reset");
    qtest_qmp_eventwait(vm->qts, "RESET");
    ev = next_kind(c, VMSIG_EV_RESET);
    g_assert_cmpuint(ev.u.seam.cause, ==, VMSIG_SC_HOST_QMP_SYSTEM_RESET);
    g_assert_cmpuint(ev.u.seam.guest, ==, 0);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(ev.u.seam.running, ==, 1);
    g_assert_cmpuint(ev.ts_ns, !=, 0);

    vmsig_client_close(c);
    vm_free(vm);
}

static void test_power(void)
{
    g_autofree char *g = g_strdup_printf("uid:%u endpoints=0 caps=all\n",
                                         (unsigned)getuid());
    Vm *vm = vm_start(g, NULL, NULL);
    vmsig_client *c = attach(vm, NULL);
    vmsig_event ev;

    g_assert_cmpint(vmsig_client_power(c, 0, VMSIG_PWR_RESET), ==, 0);
    qtest_qmp_eventwait(vm->qts, "RESET");
    ev = next_kind(c, VMSIG_EV_RESET);
    g_assert_cmpuint(ev.u.seam.cause, ==, VMSIG_SC_HOST_QMP_SYSTEM_RESET);

    g_assert_cmpint(vmsig_client_power(c, 0, VMSIG_PWR_POWERDOWN), ==, 0);
    qtest_qmp_eventwait(vm->qts, "POWERDOWN");
    next_kind(c, VMSIG_EV_POWERDOWN);

    g_assert_cmpint(vmsig_client_power(c, 0, VMSIG_PWR_QUIT), ==, 0);
    ev = next_kind(c, VMSIG_EV_SHUTDOWN);
    g_assert_cmpuint(ev.u.seam.cause, ==, VMSIG_SC_HOST_QMP_QUIT);
    g_assert_cmpuint(ev.u.seam.guest, ==, 0);
    g_assert_cmpint(drain_to_bye(c, NULL), ==, -ESHUTDOWN);
    vm_wait_exit(vm);
    g_assert_cmpint(access(vm->path, F_OK), ==, -1);
    g_assert_cmpint(errno, ==, ENOENT);

    vmsig_client_close(c);
    vm_free(vm);
}

static void test_lifecycle(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *c = attach(vm, NULL);
    vmsig_reply rep;
    int r;

    g_assert_cmpint(vmsig_client_lifecycle(c, 0, VMSIG_LC_PAUSE), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "paused");
    next_runstate(c, VMSIG_RS_PAUSED);
    g_assert_cmpint(vmsig_client_lifecycle(c, 0, VMSIG_LC_RESUME), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    next_runstate(c, VMSIG_RS_RUNNING);

    /* not suspended: QEMU refuses; errno plus QEMU's own words */
    r = cmd(c, VMSIG_CMD_LIFECYCLE, VMSIG_LC_WAKEUP, &rep);
    g_test_message("wakeup: %d, body %u bytes: %.*s", r, rep.len,
                   (int)rep.len, (const char *)rep.body);
    g_assert_cmpint(r, ==, -EINVAL);
    g_assert_cmpint(rep.status, ==, -EINVAL);
    if (rep.len) {
        g_assert_cmpuint(rep.body[rep.len - 1], ==, '\0');
        g_assert_nonnull(strstr((const char *)rep.body, "not in suspended state"));
    } else {
        g_test_message("no error text: the core dropped the reply body");
    }
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");

    vmsig_client_close(c);
    vm_free(vm);
}

/* CMD_CPU REGS: a vCPU's registers, read on its own thread (the reply comes
 * later); refused without CAP_CPU, for a vCPU that does not exist, and
 * without the feature. Under qtest the vCPUs sit at their reset state. */
static int cpu_regs(vmsig_client *c, uint32_t index, vmsig_wire_cpu_regs *r,
                    vmsig_reply *rep)
{
    vmsig_event ev = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_CPU };
    vmsig_wire_cpu cc = { .op = VMSIG_CPU_REGS, .index = index };
    int rc;

    memcpy(ev.u.raw, &cc, sizeof(cc));
    rc = vmsig_client_call(c, &ev, rep, EV_TIMEOUT_MS);
    if (rc == 0) {
        g_assert_cmpuint(rep->len, ==, sizeof(*r));
        memcpy(r, rep->body, sizeof(*r));
    }
    return rc;
}

static void test_cpu_regs(void)
{
    g_autofree char *g = g_strdup_printf("uid:%u endpoints=0 caps=VM,OBSERVE,CPU\n"
                                         "token:nocpu endpoints=0 caps=all\n",
                                         (unsigned)getuid());
    Vm *vm = vm_start(g, NULL, "-smp 2");
    vmsig_client *c = attach(vm, NULL);
    vmsig_client *weak = attach(vm, "nocpu"); /* caps=all is the 1.0 set: no CPU */
    vmsig_client *old = attach_features(vm, 2, VMSIG_FEAT_CPU);
    vmsig_wire_cpu_regs r;
    vmsig_reply rep;

    g_assert_cmphex(vmsig_client_welcome(c)->features & VMSIG_FEAT_CPU, ==, VMSIG_FEAT_CPU);
    for (uint32_t i = 0; i < 2; i++) {
        memset(&r, 0xaa, sizeof(r));
        g_assert_cmpint(cpu_regs(c, i, &r, &rep), ==, 0);
        g_assert_cmpuint(r.index, ==, i);
        g_assert_cmpuint(r.arch, ==, VMSIG_ARCH_X86_64);
        g_assert_cmpuint(r.reserved, ==, 0);
        /* x86 reset state: real mode, CS f000 based at ffff0000, IP fff0 */
        g_assert_cmphex(r.cr0, ==, 0x60000010);
        g_assert_cmphex(r.cs.selector, ==, 0xf000);
        g_assert_cmphex(r.cs.base, ==, 0xffff0000);
        g_assert_cmphex(r.cs.limit, ==, 0xffff);
        g_assert_cmphex(r.idt.limit, ==, 0xffff);
        g_assert_cmphex(r.cr3, ==, 0);
        g_assert_cmphex(r.flags & (VMSIG_CPU_F_LMA | VMSIG_CPU_F_PAGING), ==, 0);
        if (i == 0) {
            g_assert_cmphex(r.rip, ==, 0xfff0);
        }
    }
    /* a vCPU that does not exist: -EINVAL, with words */
    g_assert_cmpint(cpu_regs(c, 2, &r, &rep), ==, -EINVAL);
    g_assert_nonnull(strstr((const char *)rep.body, "no vCPU 2"));
    g_assert_cmpint(cpu_regs(c, 0xffffffffu, &r, &rep), ==, -EINVAL);
    /* without CAP_CPU: -EPERM; without the feature: -EOPNOTSUPP */
    g_assert_cmpint(cpu_regs(weak, 0, &r, &rep), ==, -EPERM);
    g_assert_cmphex(vmsig_client_welcome(old)->features & VMSIG_FEAT_CPU, ==, 0);
    g_assert_cmpint(cpu_regs(old, 0, &r, &rep), ==, -EOPNOTSUPP);
    /* QEMU went on: the loop answers, and the reads left it as it was */
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    g_assert_cmpint(cpu_regs(c, 1, &r, &rep), ==, 0);
    vmsig_client_close(old);
    vmsig_client_close(weak);
    vmsig_client_close(c);
    vm_free(vm);
}

/* ---- grants ---- */

static void test_grants_caps(void)
{
    /* one token per missing capability, all on one QEMU */
    static const struct {
        const char *token, *caps;
        uint32_t kind, op;
    } rows[] = {
        { "no-vm", "OBSERVE,INPUT,LIFECYCLE,POWER,MEMCTX,MEMWRITE",
          VMSIG_CMD_VM, VMSIG_VM_STOP },
        { "no-vm", "OBSERVE,INPUT,LIFECYCLE,POWER,MEMCTX,MEMWRITE",
          VMSIG_CMD_VM, VMSIG_VM_QUERY },
        { "no-lifecycle", "OBSERVE,INPUT,POWER,VM,MEMCTX,MEMWRITE",
          VMSIG_CMD_LIFECYCLE, VMSIG_LC_PAUSE },
        { "no-power", "OBSERVE,INPUT,LIFECYCLE,VM,MEMCTX,MEMWRITE",
          VMSIG_CMD_POWER, VMSIG_PWR_QUIT },
        { "no-power", "OBSERVE,INPUT,LIFECYCLE,VM,MEMCTX,MEMWRITE",
          VMSIG_CMD_POWER, VMSIG_PWR_RESET },
        { "no-input", "OBSERVE,LIFECYCLE,POWER,VM,MEMCTX,MEMWRITE",
          VMSIG_CMD_INPUT, VMSIG_INPUT_KEY },
        { "no-memwrite", "OBSERVE,INPUT,LIFECYCLE,POWER,VM,MEMCTX",
          VMSIG_CMD_MEMWRITE, 0 },
    };
    GString *g = g_string_new("# one capability missing per token\n");
    Vm *vm;

    for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
        if (i == 0 || strcmp(rows[i].token, rows[i - 1].token)) {
            g_string_append_printf(g, "token:%s endpoints=0 caps=%s\n",
                                   rows[i].token, rows[i].caps);
        }
    }
    vm = vm_start(g->str, NULL, NULL);
    g_string_free(g, true);

    for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
        vmsig_client *c = attach(vm, rows[i].token);
        vmsig_event ev = { .dir = VMSIG_DIR_DOWN, .kind = rows[i].kind };
        static const uint8_t byte = 0x5a;
        vmsig_reply rep;

        if (rows[i].kind == VMSIG_CMD_MEMWRITE) {
            ev.u.memwrite = (vmsig_wire_memwrite){ .gpa = 0x1000, .len = 1 };
            ev.ool = &byte;
            ev.ool_len = 1;
        } else if (rows[i].kind == VMSIG_CMD_INPUT) {
            ev.u.input = (vmsig_wire_input){ .op = VMSIG_INPUT_KEY, .code = 1,
                                             .value = 1 };
        } else {
            ev.u.cmd.op = rows[i].op;
        }
        g_assert_cmpint(vmsig_client_call(c, &ev, &rep, EV_TIMEOUT_MS), ==,
                        -EPERM);
        /* and the acquire of the class it would need */
        vmsig_client_close(c);
        /* QEMU untouched: still running, no reset or shutdown pending */
        g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    }
    g_assert_null(qtest_qmp_event_ref(vm->qts, "RESET"));
    g_assert_null(qtest_qmp_event_ref(vm->qts, "SHUTDOWN"));
    g_assert_null(qtest_qmp_event_ref(vm->qts, "STOP"));
    vm_free(vm);
}

static void test_grants_endpoint(void)
{
    Vm *vm = vm_start("token:ep0 endpoints=0 caps=all\n"
                      "token:ep1 endpoints=1 caps=all\n", NULL, NULL);
    vmsig_client *c0 = attach(vm, "ep0");
    vmsig_client *c1 = attach(vm, "ep1");
    vmsig_wire_vminfo info;
    vmsig_msg m;

    g_assert_cmpint(vmsig_client_vm(c0, 1, VMSIG_VM_STOP, NULL), ==, -EPERM);
    g_assert_cmpint(vmsig_client_vm(c0, 63, VMSIG_VM_QUERY, &info), ==, -EPERM);
    /* c1 may touch only endpoint 1, which is not this VM */
    g_assert_cmpint(vmsig_client_vm(c1, 0, VMSIG_VM_STOP, NULL), ==, -EPERM);
    g_assert_cmpint(vmsig_client_power(c1, 0, VMSIG_PWR_QUIT), ==, -EPERM);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    /* and it sees nothing of endpoint 0 */
    qmp_ok(vm->qts, "stop");
    g_assert_cmpint(vmsig_client_next(c1, &m, 300), ==, -ETIMEDOUT);
    next_runstate(c0, VMSIG_RS_PAUSED);

    vmsig_client_close(c0);
    vmsig_client_close(c1);
    vm_free(vm);
}


static void test_grants_retired_bit(void)
{
    g_autofree char *g = write_grants("# a stale grant\n"
                                      "token:old endpoints=0 caps=0x5\n");
    g_autofree char *path = g_strdup_printf("%s/retired.sock", tmpdir);
    g_autofree char *args = g_strdup_printf("-object vmsig,id=vs0,path=%s,"
                                            "grants=%s", path, g);
    g_autofree char *out = NULL;
    int status = vmsig_run_qemu(args, &out);

    g_test_message("%s", out);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), !=, 0);
    g_assert_nonnull(strstr(out, g));          /* names the file */
    g_assert_nonnull(strstr(out, "line 2"));   /* and the line */
    g_assert_nonnull(strstr(out, "retired"));  /* and the problem */
    g_assert_cmpint(access(path, F_OK), ==, -1);
    unlink(g);
}

static void test_listen_errors(void)
{
    g_autofree char *file = g_strdup_printf("%s/not-a-socket", tmpdir);
    g_autofree char *args = g_strdup_printf("-object vmsig,id=vs0,path=%s",
                                            file);
    g_autofree char *out = NULL;
    g_autofree char *out2 = NULL;
    g_autofree char *args2 = NULL;
    Vm *vm;
    int status;

    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    status = vmsig_run_qemu(args, &out);
    g_test_message("%s", out);
    g_assert_cmpint(WEXITSTATUS(status), !=, 0);
    g_assert_nonnull(strstr(out, "exists and is not a socket"));
    g_assert_nonnull(strstr(out, file));
    unlink(file);

    vm = vm_start(NULL, NULL, NULL);
    args2 = g_strdup_printf("-object vmsig,id=vs0,path=%s", vm->path);
    status = vmsig_run_qemu(args2, &out2);
    g_test_message("%s", out2);
    g_assert_cmpint(WEXITSTATUS(status), !=, 0);
    g_assert_nonnull(strstr(out2, "another server is listening"));
    g_assert_nonnull(strstr(out2, vm->path));
    /* the first server is unharmed */
    vmsig_client_close(attach(vm, NULL));
    vm_free(vm);
}

static void test_grants_no_grant(void)
{
    Vm *vm = vm_start("uid:4242 endpoints=0 caps=all\n"
                      "token:right endpoints=0 caps=OBSERVE\n", NULL, NULL);
    vmsig_client *c;
    int err = 0;

    if (getuid() == 4242) {
        g_test_skip("running as uid 4242");
    } else {
        g_assert_null(try_attach(vm, NULL, &err));
        g_assert_cmpint(err, ==, -EPERM);
    }
    err = 0;
    g_assert_null(try_attach(vm, "wrong", &err));
    g_assert_cmpint(err, ==, -EPERM);
    c = attach(vm, "right");
    g_assert_cmphex(vmsig_client_welcome(c)->caps, ==, VMSIG_CAP_OBSERVE);
    g_assert_cmpint(vmsig_client_vm(c, 0, VMSIG_VM_STOP, NULL), ==, -EPERM);
    vmsig_client_close(c);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    vm_free(vm);
}

/* ---- arbitration ---- */

#define ARB_GRANTS "token:low endpoints=0 caps=all priority=0\n" \
                   "token:high endpoints=0 caps=all priority=10\n"

static void test_arb_deny(void)
{
    Vm *vm = vm_start(ARB_GRANTS, ",policy=deny", NULL);
    vmsig_client *a = attach(vm, "high");
    vmsig_client *b = attach(vm, "low");

    g_assert_cmpint(vmsig_client_acquire(a, 0, VMSIG_CLASS_RUN), ==, 0);
    g_assert_cmpint(vmsig_client_acquire(b, 0, VMSIG_CLASS_RUN), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_vm(b, 0, VMSIG_VM_STOP, NULL), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_lifecycle(b, 0, VMSIG_LC_PAUSE), ==, -EBUSY);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    /* a query is not exclusive */
    g_assert_cmpint(vmsig_client_vm(b, 0, VMSIG_VM_QUERY, NULL), ==, 0);
    g_assert_cmpint(vmsig_client_vm(a, 0, VMSIG_VM_STOP, NULL), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "paused");

    /* the owner dies: its slot is free without asking the (deny) policy */
    vmsig_client_close(a);
    for (int i = 0;; i++) {
        int r = vmsig_client_acquire(b, 0, VMSIG_CLASS_RUN);

        if (r == 0) {
            break;
        }
        g_assert_cmpint(r, ==, -EBUSY);
        g_assert_cmpint(i, <, 100); /* QEMU has not seen the close yet */
        g_usleep(10 * 1000);
    }
    g_assert_cmpint(vmsig_client_vm(b, 0, VMSIG_VM_CONT, NULL), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");

    vmsig_client_close(b);
    vm_free(vm);
}

static void test_arb_preempt(void)
{
    Vm *vm = vm_start(ARB_GRANTS, ",policy=preempt", NULL);
    vmsig_client *a = attach(vm, "high");
    vmsig_client *b = attach(vm, "low");
    uint32_t pb = vmsig_client_welcome(b)->principal;
    vmsig_event ev;

    g_assert_cmpint(vmsig_client_acquire(a, 0, VMSIG_CLASS_RUN), ==, 0);
    g_assert_cmpint(vmsig_client_acquire(b, 0, VMSIG_CLASS_RUN), ==, 0);
    for (;;) {
        ev = next_kind(a, VMSIG_EV_ARB);
        if (ev.u.arb.what == VMSIG_ARB_PREEMPTED) {
            break;
        }
    }
    g_assert_cmpuint(ev.u.arb.cls, ==, VMSIG_CLASS_RUN);
    g_assert_cmpuint(ev.u.arb.by, ==, pb);
    g_assert_cmpint(vmsig_client_vm(a, 0, VMSIG_VM_STOP, NULL), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_vm(b, 0, VMSIG_VM_STOP, NULL), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "paused");

    vmsig_client_close(a);
    vmsig_client_close(b);
    vm_free(vm);
}

static void test_arb_priority(void)
{
    Vm *vm = vm_start(ARB_GRANTS, ",policy=priority", NULL);
    vmsig_client *lo = attach(vm, "low");
    vmsig_client *hi = attach(vm, "high");
    vmsig_event ev;

    g_assert_cmpint(vmsig_client_acquire(lo, 0, VMSIG_CLASS_POWER), ==, 0);
    g_assert_cmpint(vmsig_client_acquire(hi, 0, VMSIG_CLASS_POWER), ==, 0);
    for (;;) {
        ev = next_kind(lo, VMSIG_EV_ARB);
        if (ev.u.arb.what == VMSIG_ARB_PREEMPTED) {
            break;
        }
    }
    g_assert_cmpuint(ev.u.arb.by, ==, vmsig_client_welcome(hi)->principal);
    /* lower priority cannot take it back */
    g_assert_cmpint(vmsig_client_acquire(lo, 0, VMSIG_CLASS_POWER), ==, -EBUSY);
    g_assert_cmpint(vmsig_client_power(lo, 0, VMSIG_PWR_RESET), ==, -EBUSY);
    g_assert_null(qtest_qmp_event_ref(vm->qts, "RESET"));

    vmsig_client_close(lo);
    vmsig_client_close(hi);
    vm_free(vm);
}

/* ---- faults ---- */

static int raw_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    pstrcpy(sa.sun_path, sizeof(sa.sun_path), path);
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return fd;
}

/* QEMU and a healthy control still answer. */
static void assert_alive(Vm *vm, vmsig_client *ok)
{
    vmsig_wire_vminfo info;

    g_assert_cmpint(vmsig_client_vm(ok, 0, VMSIG_VM_QUERY, &info), ==, 0);
    g_assert_cmpstr(qmp_status(vm->qts, NULL), !=, "");
}

static void test_fault_slow_reader(void)
{
    /* long linger so the BYE is still there when the reader wakes up */
    Vm *vm = vm_start(NULL, ",queue-limit=16,handshake-timeout=60000", NULL);
    vmsig_client *slow = attach(vm, NULL);
    vmsig_client *ok = attach(vm, NULL);
    unsigned n = 0, resets = 0;
    gint64 t0 = g_get_monotonic_time();
    int bye;

    /* RESET events do not coalesce: the socket buffer, then the queue fill */
    while (resets < 4000 && g_get_monotonic_time() - t0 < 20 * 1000000) {
        qmp_ok(vm->qts, "system_reset");
        resets++;
        if (resets % 256 == 0) {
            /* the healthy control keeps up */
            vmsig_msg m;
            while (vmsig_client_next(ok, &m, 0) == 0) {
            }
            struct pollfd p = { .fd = vmsig_client_fd(slow), .events = 0 };
            if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP)) {
                break;
            }
        }
    }
    g_test_message("%u resets", resets);
    assert_alive(vm, ok);
    bye = drain_to_bye(slow, &n);
    g_test_message("slow reader got %u events before BYE", n);
    g_assert_cmpint(bye, ==, -ENOBUFS);
    g_assert_cmpuint(n, <, resets);
    assert_alive(vm, ok);

    vmsig_client_close(slow);
    vmsig_client_close(ok);
    vm_free(vm);
}

static void test_fault_coalesce(void)
{
    Vm *vm = vm_start(NULL, ",queue-limit=4", NULL);
    vmsig_client *slow = attach(vm, NULL);
    vmsig_msg m;
    uint64_t last = 0;
    unsigned n = 0;
    int r;

    for (int i = 0; i < 4000; i++) {
        qmp_ok(vm->qts, i % 2 ? "cont" : "stop");
    }
    /* run state events coalesce: the newest state survives, seq shows gaps */
    while ((r = vmsig_client_next(slow, &m, 500)) == 0) {
        g_assert_cmpuint(m.ev.seq, >=, last);
        last = m.ev.seq;
        n++;
        if (m.ev.kind == VMSIG_EV_RUNSTATE && !(m.ev.flags & VMSIG_F_SNAPSHOT)) {
            g_assert_cmpuint(m.ev.u.seam.state, <, VMSIG_RS__COUNT);
        }
    }
    g_test_message("%u of 4000 run state changes delivered, last seq %" PRIu64,
                   n, last);
    if (r == -ETIMEDOUT) {
        g_assert_cmpuint(m.ev.kind, ==, VMSIG_EV_RUNSTATE);
        g_assert_cmpuint(m.ev.u.seam.state, ==, VMSIG_RS_RUNNING);
        g_assert_cmpuint(n, <, 4000); /* coalesced */
        g_assert_cmpuint(last, >=, 4001);
    } else {
        g_assert_cmpint(r, ==, -EPIPE);
    }
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    vmsig_client_close(slow);
    vm_free(vm);
}

static void test_fault_torn_and_garbage(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *ok = attach(vm, NULL);
    vmsig_client *mid = attach(vm, NULL);
    vmsig_wire_hdr h = { .kind = VMSIG_CMD_VM, .len = sizeof(vmsig_wire_cmd),
                         .id = 99 };
    uint8_t junk[4096];
    char buf[512];
    int fd, bye;

    /* torn before the handshake */
    fd = raw_connect(vm->path);
    g_assert_cmpint(write(fd, &h, 10), ==, 10);
    close(fd);
    assert_alive(vm, ok);

    /* torn after the handshake: half a command, then gone */
    g_assert_cmpint(write(vmsig_client_fd(mid), &h, sizeof(h)), ==, sizeof(h));
    vmsig_client_close(mid);
    assert_alive(vm, ok);

    /* garbage: refused (BYE or close), nobody else notices */
    memset(junk, 0xff, sizeof(junk));
    fd = raw_connect(vm->path);
    g_assert_cmpint(write(fd, junk, sizeof(junk)), ==, sizeof(junk));
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        g_assert_cmpint(poll(&p, 1, EV_TIMEOUT_MS), ==, 1);
        if (read(fd, buf, sizeof(buf)) <= 0) {
            break; /* closed by QEMU */
        }
    }
    close(fd);
    assert_alive(vm, ok);

    /* garbage after a good handshake */
    mid = attach(vm, NULL);
    g_assert_cmpint(write(vmsig_client_fd(mid), junk, 64), ==, 64);
    bye = drain_to_bye(mid, NULL);
    g_assert_true(bye == -EPROTO || bye == -EMSGSIZE); /* 0xffff.. length */
    vmsig_client_close(mid);
    assert_alive(vm, ok);

    vmsig_client_close(ok);
    vm_free(vm);
}

static void test_object_del(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *a = attach(vm, NULL);
    vmsig_client *b = attach(vm, NULL);

    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'object-del', "
                             "'arguments': { 'id': 'vs0' } }");
    g_assert_cmpint(drain_to_bye(a, NULL), ==, -ESHUTDOWN);
    g_assert_cmpint(drain_to_bye(b, NULL), ==, -ESHUTDOWN);
    g_assert_cmpint(access(vm->path, F_OK), ==, -1);
    g_assert_cmpint(errno, ==, ENOENT);
    /* QEMU goes on; its hooks are gone (a stop must not reach freed state) */
    qmp_ok(vm->qts, "stop");
    qmp_ok(vm->qts, "system_reset");
    qmp_ok(vm->qts, "cont");
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "running");
    /* and a new one can be made on the same path */
    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'object-add', "
                             "'arguments': { 'qom-type': 'vmsig', 'id': 'vs1', "
                             "'path': %s } }", vm->path);
    vmsig_client_close(a);
    a = attach(vm, NULL);
    next_runstate(a, VMSIG_RS_RUNNING);

    vmsig_client_close(a);
    vmsig_client_close(b);
    vm_free(vm);
}

static void test_quit_attached(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *a = attach(vm, NULL);
    vmsig_client *b = attach(vm, NULL);
    vmsig_event ev;

    qtest_qmp_assert_success(vm->qts, "{ 'execute': 'quit' }");
    ev = next_kind(a, VMSIG_EV_SHUTDOWN);
    g_assert_cmpuint(ev.u.seam.cause, ==, VMSIG_SC_HOST_QMP_QUIT);
    g_assert_cmpint(drain_to_bye(a, NULL), ==, -ESHUTDOWN);
    g_assert_cmpint(drain_to_bye(b, NULL), ==, -ESHUTDOWN);
    vm_wait_exit(vm);
    g_assert_cmpint(access(vm->path, F_OK), ==, -1);

    vmsig_client_close(a);
    vmsig_client_close(b);
    vm_free(vm);
}

#define MANY 200

static void test_many_controls(void)
{
    struct rlimit rl;
    Vm *vm;
    vmsig_client *c[MANY];
    gint64 t0;

    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &rl), ==, 0);
    if (rl.rlim_cur < 4 * MANY) {
        rl.rlim_cur = MIN(rl.rlim_max, 4 * MANY);
        setrlimit(RLIMIT_NOFILE, &rl); /* QEMU inherits it */
    }
    vm = vm_start(NULL, ",max-controls=256", NULL);
    t0 = g_get_monotonic_time();
    for (int i = 0; i < MANY; i++) {
        c[i] = attach(vm, NULL);
    }
    g_test_message("%d attached in %" PRId64 " ms", MANY,
                   (g_get_monotonic_time() - t0) / 1000);
    for (int i = 0; i < MANY; i++) {
        vmsig_wire_vminfo info;
        g_assert_cmpint(vmsig_client_vm(c[i], 0, VMSIG_VM_QUERY, &info), ==, 0);
    }
    qmp_ok(vm->qts, "stop");
    for (int i = 0; i < MANY; i++) {
        next_runstate(c[i], VMSIG_RS_PAUSED);
    }
    for (int i = 0; i < MANY; i++) {
        vmsig_client_close(c[i]);
    }
    g_assert_cmpstr(qmp_status(vm->qts, NULL), ==, "paused");
    vm_free(vm);
}

/* ---- rough numbers (not asserted): run with -m perf ---- */

typedef struct Observer {
    vmsig_client *c;
    int want;       /* RUNSTATE events to collect */
    double us_sum;  /* sum of (received - ev.ts_ns) */
} Observer;

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Waits in its own thread, so the latency is not the test's QMP wait. */
static gpointer observe(gpointer opaque)
{
    Observer *o = opaque;
    vmsig_msg m;

    for (int got = 0; got < o->want;) {
        if (vmsig_client_next(o->c, &m, EV_TIMEOUT_MS) < 0) {
            break;
        }
        if (m.ev.kind == VMSIG_EV_RUNSTATE && !(m.ev.flags & VMSIG_F_SNAPSHOT)) {
            o->us_sum += (mono_ns() - m.ev.ts_ns) / 1000.0;
            got++;
        }
    }
    return NULL;
}

static void test_measure(void)
{
    Vm *vm = vm_start(NULL, NULL, NULL);
    vmsig_client *c = attach(vm, NULL);
    Observer o = { .c = attach(vm, NULL), .want = 400 };
    const int n = 2000;
    GThread *t;
    gint64 t0;
    double us_vm, us_qmp, us_stop;

    t0 = g_get_monotonic_time();
    for (int i = 0; i < n; i++) {
        vmsig_client_vm(c, 0, VMSIG_VM_QUERY, NULL);
    }
    us_vm = (double)(g_get_monotonic_time() - t0) / n;
    t0 = g_get_monotonic_time();
    for (int i = 0; i < n; i++) {
        qmp_status(vm->qts, NULL);
    }
    us_qmp = (double)(g_get_monotonic_time() - t0) / n;

    t = g_thread_new("observer", observe, &o);
    t0 = g_get_monotonic_time();
    for (int i = 0; i < 200; i++) {
        vmsig_client_vm(c, 0, i % 2 ? VMSIG_VM_CONT : VMSIG_VM_STOP, NULL);
    }
    us_stop = (double)(g_get_monotonic_time() - t0) / 200;
    for (int i = 0; i < 200; i++) {
        qmp_ok(vm->qts, i % 2 ? "cont" : "stop");
    }
    g_thread_join(t);
    g_test_message("CMD_VM query round trip %.1f us; QMP query-status %.1f us; "
                   "CMD_VM stop/cont round trip %.1f us; run state change -> "
                   "event received by another control %.1f us",
                   us_vm, us_qmp, us_stop, o.us_sum / o.want);
    vmsig_client_close(o.c);
    vmsig_client_close(c);
    vm_free(vm);
}

int main(int argc, char **argv)
{
    g_autofree char *rm = NULL;
    int ret;

    g_test_init(&argc, &argv, NULL);
    /*
     * QEMU checks every CMD_CPU REGS read from the CPU object against
     * cpu_dump_state's text and answers EIO if they differ
     */
    g_setenv("VMSIG_CPU_CHECK", "1", true);
    tmpdir = g_dir_make_tmp("vmsig-vm-XXXXXX", NULL);
    g_assert(tmpdir);

    qtest_add_func("/vmsig/vm/attach-snapshot", test_attach_snapshot);
    qtest_add_func("/vmsig/vm/query", test_query);
    qtest_add_func("/vmsig/vm/query-host", test_query_host);
    qtest_add_func("/vmsig/vm/cpu-regs", test_cpu_regs);
    qtest_add_func("/vmsig/vm/states-and-causes", test_states_and_causes);
    qtest_add_func("/vmsig/vm/stop-cont", test_stop_cont);
    qtest_add_func("/vmsig/vm/qmp-stop-cont", test_qmp_stop_cont);
    qtest_add_func("/vmsig/vm/qmp-system-reset", test_qmp_system_reset);
    qtest_add_func("/vmsig/vm/power", test_power);
    qtest_add_func("/vmsig/vm/lifecycle", test_lifecycle);
    qtest_add_func("/vmsig/vm/listen-errors", test_listen_errors);
    qtest_add_func("/vmsig/vm/grants/caps", test_grants_caps);
    qtest_add_func("/vmsig/vm/grants/endpoint", test_grants_endpoint);
    qtest_add_func("/vmsig/vm/grants/retired-bit", test_grants_retired_bit);
    qtest_add_func("/vmsig/vm/grants/no-grant", test_grants_no_grant);
    qtest_add_func("/vmsig/vm/arb/deny-and-dead-owner", test_arb_deny);
    qtest_add_func("/vmsig/vm/arb/preempt", test_arb_preempt);
    qtest_add_func("/vmsig/vm/arb/priority", test_arb_priority);
    qtest_add_func("/vmsig/vm/fault/slow-reader", test_fault_slow_reader);
    qtest_add_func("/vmsig/vm/fault/coalesce", test_fault_coalesce);
    qtest_add_func("/vmsig/vm/fault/torn-and-garbage",
                   test_fault_torn_and_garbage);
    qtest_add_func("/vmsig/vm/fault/object-del", test_object_del);
    qtest_add_func("/vmsig/vm/fault/quit-attached", test_quit_attached);
    qtest_add_func("/vmsig/vm/fault/many-controls", test_many_controls);
    if (g_test_perf()) {
        qtest_add_func("/vmsig/vm/perf/measure", test_measure);
    }

    ret = g_test_run();
    rm = g_strdup_printf("rm -rf %s", tmpdir);
    g_assert_cmpint(system(rm), ==, 0);
    g_free(tmpdir);
    return ret;
}
