/*
 * vmsig-cpu.c - CMD_CPU REGS: a vCPU's registers.  A stopped vCPU of a
 * paused VM is read on the main loop; a running one on the vCPU's own
 * thread (async_run_on_cpu), answered later from a main-loop bottom half,
 * so QEMU's main loop never waits for a vCPU.
 *
 * The module is built once for every target, so it cannot include
 * target/i386/cpu.h.  It finds the fields instead where QEMU itself
 * describes them: the CPU class's migration description (vmstate_x86_cpu,
 * the class's legacy_vmsd) names each field ("env.regs", "env.segs",
 * "env.cr[3]", ...) with its offset in the CPU object and its size, and
 * the segment entries name theirs.  The layout is looked up once per CPU
 * class and every size checked; a read is then a few dozen loads.  Where
 * the description does not have what we need (another target, a renamed
 * field), the text of cpu_dump_state() (HMP `info registers`) is parsed
 * instead, with KERNEL_GS_BASE from the gdb register reader.
 *
 * VMSIG_CPU_CHECK=1 in QEMU's environment makes every read take both
 * paths and fail with EIO if they differ (the e2e test runs with it).
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */
#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/error-report.h"
#include "hw/core/cpu.h"
#include "hw/core/sysemu-cpu-ops.h"
#include "migration/vmstate.h"
#include "vmsig-compat.h"
#include "vmsig-qemu.h"
#include "trace.h"

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
    int n;

    /* 0 core registers: the count comes from the XML (x86 since 9.x) */
    n = cc->gdb_num_core_regs ? cc->gdb_num_core_regs : cs->gdb_num_regs;
    if (!cc->gdb_read_register || n < 27) {
        return;
    }
    buf = g_byte_array_new();
    /*
     * gdb's order: little-endian; outside 64-bit code (a compatibility
     * mode process) gdb gets the low 32 bits only
     */
    if (cc->gdb_read_register(cs, buf, 26) == (int)buf->len &&
        (buf->len == 8 || buf->len == 4)) {
        memcpy(&r->kernel_gs_base, buf->data, buf->len);
    }
    g_byte_array_free(buf, true);
}


/* Where the fields are in a CPU object, from its migration description. */
typedef struct VmsigCpuLayout {
    const CPUClass *cc;   /* looked up for this class */
    bool ok;
    size_t regs, eip, eflags, cr[5], efer, kgsbase;
    size_t segs, ldt, tr, gdt, idt;             /* SegmentCache */
    size_t seg_size, sel, base, limit, flags;   /* within one */
} VmsigCpuLayout;

static const VMStateField *vmsig_vmsd_field(const VMStateDescription *vmsd,
                                            const char *name, size_t size,
                                            int num)
{
    const VMStateField *f;

    for (f = vmsd->fields; f && f->name; f++) {
        if (strcmp(f->name, name) != 0) {
            continue;
        }
        /* the value itself at opaque + offset, of that size and count */
        if ((f->flags & (VMS_POINTER | VMS_VARRAY_INT32 | VMS_VARRAY_UINT32 |
                         VMS_VARRAY_UINT8 | VMS_VARRAY_UINT16)) ||
            (size && f->size != size) ||
            (num > 1 ? !(f->flags & VMS_ARRAY) || f->num != num
                     : (f->flags & VMS_ARRAY) != 0)) {
            return NULL;
        }
        return f;
    }
    return NULL;
}

#define VMSIG_OFF(vmsd, name, size, num, out)                       \
    do {                                                            \
        const VMStateField *f_ = vmsig_vmsd_field(vmsd, name, size, num); \
        if (!f_) {                                                  \
            return false;                                           \
        }                                                           \
        (out) = f_->offset;                                         \
    } while (0)

static bool vmsig_cpu_layout_find(const CPUClass *cc, VmsigCpuLayout *l)
{
    const VMStateDescription *vmsd =
        cc->sysemu_ops ? cc->sysemu_ops->legacy_vmsd : NULL;
    const VMStateField *segs;
    static const char *const cr[5] = {
        "env.cr[0]", NULL, "env.cr[2]", "env.cr[3]", "env.cr[4]",
    };
    int i;

    if (!vmsd || !vmsd->name || strcmp(vmsd->name, "cpu") != 0) {
        return false;
    }
    VMSIG_OFF(vmsd, "env.regs", 8, 16, l->regs); /* 16 of 8 B: x86-64 */
    VMSIG_OFF(vmsd, "env.eip", 8, 1, l->eip);
    VMSIG_OFF(vmsd, "env.eflags", 8, 1, l->eflags);
    for (i = 0; i < 5; i++) {
        if (cr[i]) {
            VMSIG_OFF(vmsd, cr[i], 8, 1, l->cr[i]);
        }
    }
    VMSIG_OFF(vmsd, "env.efer", 8, 1, l->efer);
    VMSIG_OFF(vmsd, "env.kernelgsbase", 8, 1, l->kgsbase);
    segs = vmsig_vmsd_field(vmsd, "env.segs", 0, 6);
    if (!segs || !(segs->flags & VMS_STRUCT) || !segs->vmsd) {
        return false;
    }
    l->segs = segs->offset;
    l->seg_size = segs->size;
    VMSIG_OFF(segs->vmsd, "selector", 4, 1, l->sel);
    VMSIG_OFF(segs->vmsd, "base", 8, 1, l->base);
    VMSIG_OFF(segs->vmsd, "limit", 4, 1, l->limit);
    VMSIG_OFF(segs->vmsd, "flags", 4, 1, l->flags);
    if (l->sel + 4 > l->seg_size || l->base + 8 > l->seg_size ||
        l->limit + 4 > l->seg_size || l->flags + 4 > l->seg_size) {
        return false;
    }
    VMSIG_OFF(vmsd, "env.ldt", l->seg_size, 1, l->ldt);
    VMSIG_OFF(vmsd, "env.tr", l->seg_size, 1, l->tr);
    VMSIG_OFF(vmsd, "env.gdt", l->seg_size, 1, l->gdt);
    VMSIG_OFF(vmsd, "env.idt", l->seg_size, 1, l->idt);
    return true;
}

/* The layout for cs's class (main loop or a vCPU thread: BQL held). */
static const VmsigCpuLayout *vmsig_cpu_layout(CPUState *cs)
{
    static VmsigCpuLayout layout;
    const CPUClass *cc = CPU_GET_CLASS(cs);

    if (layout.cc != cc) {
        memset(&layout, 0, sizeof(layout));
        layout.ok = vmsig_cpu_layout_find(cc, &layout);
        layout.cc = cc;
        trace_vmsig_cpu_layout(object_class_get_name(OBJECT_CLASS(cc)),
                               layout.ok);
    }
    return layout.ok ? &layout : NULL;
}

static uint64_t ld64(const CPUState *cs, size_t off)
{
    uint64_t v;

    memcpy(&v, (const char *)cs + off, sizeof(v));
    return v;
}

static uint32_t ld32(const CPUState *cs, size_t off)
{
    uint32_t v;

    memcpy(&v, (const char *)cs + off, sizeof(v));
    return v;
}

static void vmsig_cpu_seg(const VmsigCpuLayout *l, const CPUState *cs,
                          size_t off, vmsig_wire_seg *seg)
{
    seg->selector = (uint16_t)ld32(cs, off + l->sel);
    seg->base = ld64(cs, off + l->base);
    seg->limit = ld32(cs, off + l->limit);
    /* as the dump path: descriptor dword bits 8..23 in place */
    seg->attr = (uint16_t)((ld32(cs, off + l->flags) >> 8) & 0xf0ffu);
}

static void vmsig_cpu_dtr(const VmsigCpuLayout *l, const CPUState *cs,
                          size_t off, vmsig_wire_dtr *dtr)
{
    dtr->base = ld64(cs, off + l->base);
    dtr->limit = ld32(cs, off + l->limit);
}

/* The fields straight from the CPU object (outside cpu_exec: eflags whole). */
static void vmsig_cpu_load(const VmsigCpuLayout *l, CPUState *cs,
                           vmsig_wire_cpu_regs *r)
{
    vmsig_wire_seg *seg[6] = { &r->es, &r->cs, &r->ss, &r->ds, &r->fs, &r->gs };
    int i;

    for (i = 0; i < 16; i++) {
        r->gpr[i] = ld64(cs, l->regs + 8 * i);
    }
    r->rip = ld64(cs, l->eip);
    r->rflags = ld64(cs, l->eflags);
    r->cr0 = ld64(cs, l->cr[0]);
    r->cr2 = ld64(cs, l->cr[2]);
    r->cr3 = ld64(cs, l->cr[3]);
    r->cr4 = ld64(cs, l->cr[4]);
    r->efer = ld64(cs, l->efer);
    r->kernel_gs_base = ld64(cs, l->kgsbase);
    for (i = 0; i < 6; i++) { /* R_ES, R_CS, R_SS, R_DS, R_FS, R_GS */
        vmsig_cpu_seg(l, cs, l->segs + i * l->seg_size, seg[i]);
    }
    vmsig_cpu_seg(l, cs, l->ldt, &r->ldt);
    vmsig_cpu_seg(l, cs, l->tr, &r->tr);
    vmsig_cpu_dtr(l, cs, l->gdt, &r->gdt);
    vmsig_cpu_dtr(l, cs, l->idt, &r->idt);
    if (cs->halted) {
        r->flags |= VMSIG_CPU_F_HALTED;
    }
    if (r->efer & (1u << 10)) { /* EFER.LMA */
        r->flags |= VMSIG_CPU_F_LMA;
    }
    if (r->cr0 & (1u << 31)) {
        r->flags |= VMSIG_CPU_F_PAGING;
    }
}

/* The dump path: HMP's text, parsed. */
static int vmsig_cpu_read_dump(CPUState *cs, vmsig_wire_cpu_regs *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f;
    int ret;

    f = open_memstream(&text, &len);
    if (!f) {
        return -ENOMEM;
    }
    cpu_dump_state(cs, f, 0);
    fclose(f);
    ret = text ? vmsig_cpu_parse(text, r) : -ENOMEM;
    free(text);
    if (ret == 0) {
        vmsig_cpu_kgsbase(cs, r);
    }
    return ret;
}

/* On the vCPU's thread or, stopped, the main loop (BQL held). */
static void vmsig_cpu_read(CPUState *cs, run_on_cpu_data data)
{
    static int check = -1;
    VmsigCpuJob *job = data.host_ptr;
    const VmsigCpuLayout *l;

    if (check < 0) {
        const char *e = getenv("VMSIG_CPU_CHECK");

        check = e && strcmp(e, "1") == 0;
    }
    cpu_synchronize_state(cs);
    job->regs.index = (uint32_t)job->index;
    job->regs.arch = VMSIG_ARCH_X86_64;
    l = vmsig_cpu_layout(cs);
    if (!l) {
        job->status = vmsig_cpu_read_dump(cs, &job->regs);
        if (check) {
            error_report("vmsig: VMSIG_CPU_CHECK: no register layout in "
                         "%s's migration description",
                         object_get_typename(OBJECT(cs)));
            job->status = -EIO;
        }
        return;
    }
    vmsig_cpu_load(l, cs, &job->regs);
    job->status = 0;
    if (check) {
        vmsig_wire_cpu_regs d = { .index = job->regs.index,
                                  .arch = job->regs.arch };
        vmsig_wire_cpu_regs o = job->regs;

        if (!(o.cs.attr & (1u << 13))) { /* CS.L clear: see kgsbase */
            o.kernel_gs_base &= 0xffffffffu;
        }
        if (vmsig_cpu_read_dump(cs, &d) != 0 ||
            memcmp(&d, &o, sizeof(d)) != 0) {
            const uint8_t *a = (const uint8_t *)&o;
            const uint8_t *b = (const uint8_t *)&d;
            size_t at = 0;

            while (at < sizeof(d) - 1 && a[at] == b[at]) {
                at++;
            }
            error_report("vmsig: VMSIG_CPU_CHECK: vCPU %d: the registers "
                         "read from the CPU object differ from "
                         "cpu_dump_state's at byte %zu of "
                         "vmsig_wire_cpu_regs (%016" PRIx64 " there, "
                         "%016" PRIx64 " in the text)", job->index, at,
                         ldq_le_p(a + (at & ~(size_t)7)),
                         ldq_le_p(b + (at & ~(size_t)7)));
            job->status = -EIO;
        }
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
