/*
 * vmsig-cpu.c - CMD_CPU REGS: a vCPU's registers, read on the vCPU's own
 * thread (async_run_on_cpu) and answered later from a main-loop bottom
 * half, so QEMU's main loop never waits for a vCPU.
 *
 * The module is built once for every target, so it cannot include
 * target/i386/cpu.h: it reads the state through QEMU's target-neutral
 * interfaces instead: cpu_dump_state() (what HMP `info registers` prints:
 * general registers, segment caches, GDT/IDT, control registers, EFER,
 * HLT) and the CPU class's gdb register reader (KERNEL_GS_BASE, the one
 * field the dump leaves out).
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */
#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "hw/core/cpu.h"
#include "vmsig-compat.h"
#include "vmsig-qemu.h"

/* One REGS read in flight: from the main loop to the vCPU and back. */
typedef struct VmsigCpuJob {
    vmsig_core *core;
    Object *owner;        /* the vmsig object, referenced while we run */
    uint64_t ticket;      /* 0: synchronous (an in-process control) */
    int index;
    int status;
    vmsig_wire_cpu_regs regs;
} VmsigCpuJob;

/* "NAME=hex" anywhere in text: 0 and *v, or -1. */
static int dump_hex(const char *text, const char *name, uint64_t *v)
{
    const char *p = strstr(text, name);
    const char *end;

    if (!p) {
        return -1;
    }
    p += strlen(name);
    /* the dump's hex numbers end at a blank or a newline: end is set */
    return qemu_strtou64(p, &end, 16, v) < 0 ? -1 : 0;
}

/* A segment line: "ES =0000 0000000000000000 ffffffff 00c09300 ...". */
static void dump_seg(const char *text, const char *name, vmsig_wire_seg *seg)
{
    const char *p = strstr(text, name);
    unsigned sel = 0, limit = 0, flags = 0;
    uint64_t base = 0;

    if (p && sscanf(p + strlen(name), "%x %" SCNx64 " %x %x", &sel, &base,
                    &limit, &flags) == 4) {
        seg->selector = (uint16_t)sel;
        seg->base = base;
        seg->limit = limit;
        /* flags holds the descriptor's second dword bits 8..23 in place */
        seg->attr = (uint16_t)((flags >> 8) & 0xf0ffu);
    }
}

static void dump_dtr(const char *text, const char *name, vmsig_wire_dtr *dtr)
{
    const char *p = strstr(text, name);
    uint64_t base = 0;
    unsigned limit = 0;

    if (p && sscanf(p + strlen(name), " %" SCNx64 " %x", &base, &limit) == 2) {
        dtr->base = base;
        dtr->limit = limit;
    }
}

static int vmsig_cpu_parse(const char *text, vmsig_wire_cpu_regs *r)
{
    /* 64-bit names first; a vCPU outside long mode prints E.. names. */
    static const char *const gpr64[16] = {
        "RAX=", "RCX=", "RDX=", "RBX=", "RSP=", "RBP=", "RSI=", "RDI=",
        "R8 =", "R9 =", "R10=", "R11=", "R12=", "R13=", "R14=", "R15=",
    };
    static const char *const gpr32[8] = {
        "EAX=", "ECX=", "EDX=", "EBX=", "ESP=", "EBP=", "ESI=", "EDI=",
    };
    uint64_t v;
    int i, wide = strstr(text, "RAX=") != NULL;

    for (i = 0; i < (wide ? 16 : 8); i++) {
        if (dump_hex(text, wide ? gpr64[i] : gpr32[i], &r->gpr[i]) < 0) {
            return -EIO;
        }
    }
    if (dump_hex(text, wide ? "RIP=" : "EIP=", &r->rip) < 0 ||
        dump_hex(text, wide ? "RFL=" : "EFL=", &r->rflags) < 0 ||
        dump_hex(text, "CR0=", &r->cr0) < 0 ||
        dump_hex(text, "CR2=", &r->cr2) < 0 ||
        dump_hex(text, "CR3=", &r->cr3) < 0 ||
        dump_hex(text, "CR4=", &r->cr4) < 0) {
        return -EIO;
    }
    if (dump_hex(text, "EFER=", &r->efer) < 0) {
        r->efer = 0;
    }
    if (dump_hex(text, "HLT=", &v) == 0 && v) {
        r->flags |= VMSIG_CPU_F_HALTED;
    }
    dump_seg(text, "ES =", &r->es);
    dump_seg(text, "CS =", &r->cs);
    dump_seg(text, "SS =", &r->ss);
    dump_seg(text, "DS =", &r->ds);
    dump_seg(text, "FS =", &r->fs);
    dump_seg(text, "GS =", &r->gs);
    dump_seg(text, "LDT=", &r->ldt);
    dump_seg(text, "TR =", &r->tr);
    dump_dtr(text, "GDT=", &r->gdt);
    dump_dtr(text, "IDT=", &r->idt);
    if (r->efer & (1u << 10)) { /* EFER.LMA */
        r->flags |= VMSIG_CPU_F_LMA;
    }
    if (r->cr0 & (1u << 31)) {
        r->flags |= VMSIG_CPU_F_PAGING;
    }
    return 0;
}

/*
 * KERNEL_GS_BASE through the gdb register interface: in x86-64's core
 * register list it follows the 16 GPRs, RIP, EFLAGS, 6 selectors, FS and
 * GS base (number 26). Left 0 where the CPU class says otherwise.
 */
static void vmsig_cpu_kgsbase(CPUState *cs, vmsig_wire_cpu_regs *r)
{
    CPUClass *cc = CPU_GET_CLASS(cs);
    GByteArray *buf;

    if (!cc->gdb_read_register || cc->gdb_num_core_regs < 27) {
        return;
    }
    buf = g_byte_array_new();
    if (cc->gdb_read_register(cs, buf, 26) == 8 && buf->len == 8) {
        /* gdb's order: little-endian */
        memcpy(&r->kernel_gs_base, buf->data, 8);
    }
    g_byte_array_free(buf, true);
}

/* On the vCPU's thread (BQL held). */
static void vmsig_cpu_read(CPUState *cs, run_on_cpu_data data)
{
    VmsigCpuJob *job = data.host_ptr;
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    cpu_synchronize_state(cs);
    f = open_memstream(&text, &len);
    if (!f) {
        job->status = -ENOMEM;
        return;
    }
    cpu_dump_state(cs, f, 0);
    fclose(f);
    job->regs.index = (uint32_t)job->index;
    job->regs.arch = VMSIG_ARCH_X86_64;
    job->status = text ? vmsig_cpu_parse(text, &job->regs) : -ENOMEM;
    free(text);
    if (job->status == 0) {
        vmsig_cpu_kgsbase(cs, &job->regs);
    }
}

/* Back on the main loop: answer. */
static void vmsig_cpu_done(void *opaque)
{
    VmsigCpuJob *job = opaque;

    vmsig_core_complete(job->core, job->ticket, job->status,
                        job->status == 0 ? &job->regs : NULL,
                        job->status == 0 ? sizeof(job->regs) : 0);
    object_unref(job->owner);
    g_free(job);
}

static void vmsig_cpu_async(CPUState *cs, run_on_cpu_data data)
{
    vmsig_cpu_read(cs, data);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), vmsig_cpu_done,
                            data.host_ptr);
}

int vmsig_cpu_command(vmsig_core *core, Object *owner, const vmsig_event *cmd,
                      vmsig_reply *reply)
{
    const vmsig_wire_cpu *c = (const vmsig_wire_cpu *)cmd->u.raw;
    CPUState *cs;
    VmsigCpuJob *job;
    bool stopped;

    if (c->op != VMSIG_CPU_REGS) {
        return -EINVAL;
    }
    cs = c->index <= INT_MAX ? qemu_get_cpu((int)c->index) : NULL;
    if (!cs) {
        int n = snprintf((char *)reply->body, VMSIG_REPLY_BODY_MAX,
                         "vmsig: no vCPU %" PRIu32, c->index);
        reply->len = MIN(n, (int)VMSIG_REPLY_BODY_MAX - 1) + 1;
        return -EINVAL;
    }
    job = g_new0(VmsigCpuJob, 1);
    job->core = core;
    job->index = (int)c->index;
    /*
     * A stopped vCPU of a paused VM is read right here, as HMP's "info
     * registers" and the gdbstub read one (cpu_synchronize_state fetches
     * KVM's registers through the vCPU thread itself): no thread hop.
     * An in-process control cannot take a late reply: it waits too.
     */
    stopped = !runstate_is_running() && cs->stopped;
    if (stopped || !reply->ticket) {
        int status;

        if (stopped) {
            vmsig_cpu_read(cs, RUN_ON_CPU_HOST_PTR(job));
        } else {
            run_on_cpu(cs, vmsig_cpu_read, RUN_ON_CPU_HOST_PTR(job));
        }
        status = job->status;
        if (status == 0) {
            memcpy(reply->body, &job->regs, sizeof(job->regs));
            reply->len = sizeof(job->regs);
        }
        g_free(job);
        return status;
    }
    job->ticket = reply->ticket;
    job->owner = owner;
    object_ref(owner);
    async_run_on_cpu(cs, vmsig_cpu_async, RUN_ON_CPU_HOST_PTR(job));
    return -EINPROGRESS;
}
