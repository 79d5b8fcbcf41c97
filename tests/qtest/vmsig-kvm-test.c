/*
 * vmsig KVM qtest: the same object with a KVM vCPU running.
 *
 * QEMU starts with -accel kvm (libqtest adds -accel qtest after it, as a
 * fallback, so the test first checks that KVM is what QEMU uses). No guest
 * kernel: SeaBIOS runs in the KVM vCPU, which is enough to check what is
 * different under KVM: CMD_CPU reads the registers from the kernel
 * (cpu_synchronize_state), a MEMWRITE longer than 8 bytes stops every vCPU
 * (async_safe_run_on_cpu kicks them out of KVM_RUN) and is seen by QEMU
 * and through the read-only mapping, stop/cont pause the KVM vCPU.
 *
 * Where /dev/kvm cannot be opened, cannot create a VM, or QEMU was built
 * without KVM, every test is skipped, saying why (g_test_skip).
 *
 * Built by QEMU's build (see meson.build here); run with QTEST_QEMU_BINARY
 * and QEMU_MODULE_DIR set.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */
#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "libqtest.h"
#include "vmsig/vmsig_client.h"
#include "vmsig-qtest.h"

#define EP 0
#define TIMEOUT_MS 10000
#define GPA 0x2000000ull /* 32 MiB into 128 MiB: no firmware there */

static char *tmpdir;
static char *no_kvm; /* why KVM cannot be tested here, or NULL */

/* Can this process run a KVM guest? NULL if so, else the reason. */
static char *kvm_unusable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int api, vm;

    if (fd < 0) {
        return g_strdup_printf("/dev/kvm: %s", strerror(errno));
    }
    api = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        close(fd);
        return g_strdup_printf("/dev/kvm: KVM_GET_API_VERSION is %d, not %d",
                               api, KVM_API_VERSION);
    }
    vm = ioctl(fd, KVM_CREATE_VM, 0);
    if (vm < 0) {
        int e = errno;

        close(fd);
        return g_strdup_printf("/dev/kvm: KVM_CREATE_VM: %s", strerror(e));
    }
    close(vm);
    close(fd);
    if (!qtest_has_accel("kvm")) {
        return g_strdup("QEMU was built without KVM");
    }
    return NULL;
}

typedef struct Vm {
    QTestState *qts;
    char *sock;
    char *grants;
} Vm;

static bool vm_start(Vm *vm)
{
    static unsigned n;
    g_autofree char *text = NULL;

    if (no_kvm) {
        g_test_skip(no_kvm);
        return false;
    }
    vm->sock = g_strdup_printf("%s/vmsig-%u.sock", tmpdir, ++n);
    vm->grants = g_strdup_printf("%s/grants-%u", tmpdir, n);
    text = g_strdup_printf("uid:%u endpoints=0 caps=all,CPU\n",
                           (unsigned)getuid());
    g_assert_true(g_file_set_contents(vm->grants, text, -1, NULL));
    vm->qts = qtest_initf("-accel kvm -nodefaults -m 128 -smp 2 "
                          "-machine pc,memory-backend=ram0 "
                          "-object memory-backend-memfd,id=ram0,size=128M,share=on "
                          "-object vmsig,id=vs0,path=%s,grants=%s",
                          vm->sock, vm->grants);
    return true;
}

static void vm_stop(Vm *vm)
{
    qtest_quit(vm->qts);
    unlink(vm->grants);
    g_free(vm->grants);
    g_free(vm->sock);
}

static vmsig_client *attach(Vm *vm, uint32_t sources)
{
    vmsig_client_config cfg = {
        .version = VMSIG_CLIENT_CONFIG_VERSION,
        .path = vm->sock,
        .sub = { .source_mask = sources, .endpoint_mask = 1ull << EP },
        .timeout_ms = TIMEOUT_MS,
        .auto_map = 1,
    };
    int err = 0;
    vmsig_client *c = vmsig_client_connect(&cfg, &err);

    g_assert_cmpint(err, ==, 0);
    g_assert_nonnull(c);
    return c;
}

static vmsig_event next_kind(vmsig_client *c, uint32_t kind)
{
    vmsig_msg m;

    for (;;) {
        g_assert_cmpint(vmsig_client_next(c, &m, TIMEOUT_MS), ==, 0);
        if (m.ev.kind == kind) {
            return m.ev;
        }
    }
}

static const char *qmp_status(QTestState *qts)
{
    static char buf[32];
    QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-status' }");

    pstrcpy(buf, sizeof(buf), qdict_get_str(qdict_get_qdict(resp, "return"),
                                            "status"));
    qobject_unref(resp);
    return buf;
}

static int cpu_regs(vmsig_client *c, uint32_t index, vmsig_wire_cpu_regs *r)
{
    vmsig_event ev = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_CPU };
    vmsig_wire_cpu cc = { .op = VMSIG_CPU_REGS, .index = index };
    vmsig_reply rep;
    int rc;

    memcpy(ev.u.raw, &cc, sizeof(cc));
    rc = vmsig_client_call(c, &ev, &rep, TIMEOUT_MS);
    if (rc == 0) {
        g_assert_cmpuint(rep.len, ==, sizeof(*r));
        memcpy(r, rep.body, sizeof(*r));
    }
    return rc;
}

/* QEMU runs the vCPUs in KVM, and vmsig says so. */
static void test_accel(void)
{
    Vm vm;
    vmsig_client *c;
    vmsig_event ev = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_VM,
                       .u.cmd.op = VMSIG_VM_QUERY };
    vmsig_wire_vminfo info;
    vmsig_wire_vminfo_host host;
    vmsig_reply rep;
    QDict *resp, *ret;

    if (!vm_start(&vm)) {
        return;
    }
    resp = qtest_qmp(vm.qts, "{ 'execute': 'query-kvm' }");
    ret = qdict_get_qdict(resp, "return");
    g_assert_true(qdict_get_bool(ret, "present"));
    g_assert_true(qdict_get_bool(ret, "enabled"));
    qobject_unref(resp);

    c = attach(&vm, 1u << VMSIG_SRC_SEAM);
    g_assert_cmpint(vmsig_client_call(c, &ev, &rep, TIMEOUT_MS), ==, 0);
    g_assert_cmpuint(rep.len, ==, sizeof(info) + sizeof(host));
    memcpy(&info, rep.body, sizeof(info));
    memcpy(&host, rep.body + sizeof(info), sizeof(host));
    g_assert_cmpuint(info.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpuint(info.vcpus, ==, 2);
    g_assert_cmpstr(host.accel, ==, "kvm");
    vmsig_client_close(c);
    vm_stop(&vm);
}

/*
 * Registers come from the kernel: the vCPU left the reset vector (SeaBIOS
 * ran in KVM), and while the VM is paused two reads agree.
 */
static void test_regs_stop_cont(void)
{
    Vm vm;
    vmsig_client *c;
    vmsig_wire_cpu_regs r1, r2;
    vmsig_event ev;
    int i;

    if (!vm_start(&vm)) {
        return;
    }
    c = attach(&vm, 1u << VMSIG_SRC_SEAM);
    next_kind(c, VMSIG_EV_RUNSTATE); /* snapshot */
    for (i = 0; i < 100; i++) {
        g_assert_cmpint(cpu_regs(c, 0, &r1), ==, 0);
        if (r1.rip != 0xfff0 || r1.cs.base != 0xffff0000) {
            break;
        }
        g_usleep(50 * 1000);
    }
    g_test_message("vCPU 0: rip 0x%" PRIx64 " cs.base 0x%" PRIx64
                   " cr0 0x%" PRIx64, r1.rip, r1.cs.base, r1.cr0);
    g_assert_false(r1.rip == 0xfff0 && r1.cs.base == 0xffff0000);
    g_assert_cmpuint(r1.arch, ==, VMSIG_ARCH_X86_64);

    g_assert_cmpint(vmsig_client_vm(c, EP, VMSIG_VM_STOP, NULL), ==, 0);
    ev = next_kind(c, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_PAUSED);
    g_assert_cmpstr(qmp_status(vm.qts), ==, "paused");
    for (i = 0; i < 2; i++) {
        g_assert_cmpint(cpu_regs(c, i, &r1), ==, 0);
        g_usleep(100 * 1000);
        g_assert_cmpint(cpu_regs(c, i, &r2), ==, 0);
        g_assert_cmpuint(r1.index, ==, i);
        g_assert_cmpmem(&r1, sizeof(r1), &r2, sizeof(r2));
    }
    g_assert_cmpint(vmsig_client_vm(c, EP, VMSIG_VM_CONT, NULL), ==, 0);
    ev = next_kind(c, VMSIG_EV_RUNSTATE);
    g_assert_cmpuint(ev.u.seam.state, ==, VMSIG_RS_RUNNING);
    g_assert_cmpstr(qmp_status(vm.qts), ==, "running");
    vmsig_client_close(c);
    vm_stop(&vm);
}

/*
 * MEMWRITE with the KVM vCPUs running: 8 bytes (one store) and 64 KiB
 * (every vCPU stopped around the copy), seen by QEMU (qtest_memread), by
 * the writer's own mapping and by the MEMWRITE_DONE every MEMCTX
 * subscriber gets; the VM runs on.
 */
static void test_memwrite_running(void)
{
    const size_t big = 64 * 1024;
    g_autofree uint8_t *buf = g_malloc(big);
    g_autofree uint8_t *back = g_malloc(big);
    uint64_t v = 0x0123456789abcdefull, got = 0;
    Vm vm;
    vmsig_client *c;
    vmsig_memmap *map;
    vmsig_event ev;
    size_t i;

    if (!vm_start(&vm)) {
        return;
    }
    c = attach(&vm, (1u << VMSIG_SRC_SEAM) | (1u << VMSIG_SRC_MEMCTX));
    next_kind(c, VMSIG_EV_MEMCTX);
    g_assert_cmpstr(qmp_status(vm.qts), ==, "running");

    g_assert_cmpint(vmsig_client_memwrite(c, EP, GPA, &v, sizeof(v)), ==, 0);
    qtest_memread(vm.qts, GPA, &got, sizeof(got));
    g_assert_cmphex(got, ==, v);
    ev = next_kind(c, VMSIG_EV_MEMWRITE_DONE);
    g_assert_cmphex(ev.u.memdone.gpa, ==, GPA);
    g_assert_cmpuint(ev.u.memdone.len, ==, sizeof(v));

    for (i = 0; i < big; i++) {
        buf[i] = (uint8_t)(i * 7 + 1);
    }
    g_assert_cmpint(vmsig_client_memwrite(c, EP, GPA + 0x1000, buf, big),
                    ==, 0);
    ev = next_kind(c, VMSIG_EV_MEMWRITE_DONE);
    g_assert_cmphex(ev.u.memdone.gpa, ==, GPA + 0x1000);
    g_assert_cmpuint(ev.u.memdone.len, ==, big);
    qtest_memread(vm.qts, GPA + 0x1000, back, big);
    g_assert_cmpmem(back, big, buf, big);
    map = vmsig_client_memmap(c);
    g_assert_nonnull(map);
    memset(back, 0, big);
    g_assert_cmpint(vmsig_memmap_read(map, GPA + 0x1000, back, big), ==, 0);
    g_assert_cmpmem(back, big, buf, big);
    vmsig_memmap_unref(map);
    /* the vCPUs were let go again */
    g_assert_cmpstr(qmp_status(vm.qts), ==, "running");
    vmsig_client_close(c);
    vm_stop(&vm);
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
    tmpdir = g_dir_make_tmp("vmsig-kvm-XXXXXX", NULL);
    g_assert(tmpdir);
    no_kvm = kvm_unusable();
    if (no_kvm) {
        g_test_message("KVM tests skipped: %s", no_kvm);
    }

    qtest_add_func("/vmsig/kvm/accel", test_accel);
    qtest_add_func("/vmsig/kvm/regs-stop-cont", test_regs_stop_cont);
    qtest_add_func("/vmsig/kvm/memwrite-running", test_memwrite_running);

    ret = g_test_run();
    rm = g_strdup_printf("rm -rf %s", tmpdir);
    g_assert_cmpint(system(rm), ==, 0);
    g_free(tmpdir);
    g_free(no_kvm);
    return ret;
}
