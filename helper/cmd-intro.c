/*
 * cmd-intro.c - vmsig-helper: inside the guest. regs (CMD_CPU REGS),
 * vread / vtop (guest-virtual addresses through the read-only mapping,
 * lib/vmem.c) and linux (the kernel's VMCOREINFO, its page-table root and a
 * read through a virtual address). docs/introspection.md.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vmsig/vmsig_vmem.h>

#include "helper.h"

#define CHUNK (1u << 20)

static int usable(const hconn *h)
{
    return h->c && !h->gone;
}

/* CMD_CPU REGS of vCPU `cpu`. Returns EX_OK or the (reported) exit code. */
static int get_regs(hconn *h, uint32_t cpu, vmsig_wire_cpu_regs *regs)
{
    if (!(h->w->caps & VMSIG_CAP_CPU)) {
        return fail(h, -EPERM, "regs", VMSIG_CAP_CPU, 0);
    }
    if (!(h->w->features & VMSIG_FEAT_CPU)) {
        errmsg(h, "regs: the server does not support CMD_CPU (protocol feature CPU not "
                  "negotiated: a vmsig object without vCPU registers)");
        h->rc = h->rc ? h->rc : EX_OTHER;
        return EX_OTHER;
    }
    vmsig_event cmd = { .dir = VMSIG_DIR_DOWN, .kind = VMSIG_CMD_CPU, .endpoint = h->ep };
    vmsig_wire_cpu req = { .op = VMSIG_CPU_REGS, .index = cpu };
    memcpy(cmd.u.raw, &req, sizeof(req));
    static vmsig_reply rep;
    memset(&rep, 0, sizeof(rep));
    int r = vmsig_client_call(h->c, &cmd, &rep, G.timeout_ms);
    char what[48];
    snprintf(what, sizeof(what), "regs of vCPU %u", cpu);
    if (r == -EOPNOTSUPP) {
        errmsg(h, "%s: the server does not support CMD_CPU", what);
        h->rc = h->rc ? h->rc : EX_OTHER;
        return EX_OTHER;
    }
    if (r == -EINVAL) {
        errmsg(h, "%s: no such vCPU (or bad request): %s", what, strerror(EINVAL));
        h->rc = h->rc ? h->rc : EX_OTHER;
        return EX_OTHER;
    }
    if (r < 0) {
        return fail_reply(h, r, what, VMSIG_CAP_CPU, 0, &rep);
    }
    if (rep.len < sizeof(*regs)) {
        errmsg(h, "%s: short reply (%u bytes, want %zu)", what, rep.len, sizeof(*regs));
        h->rc = h->rc ? h->rc : EX_OTHER;
        return EX_OTHER;
    }
    memcpy(regs, rep.body, sizeof(*regs));
    return EX_OK;
}

static const char *const gpr_names[16] = { "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi",
                                            "rdi", "r8",  "r9",  "r10", "r11", "r12", "r13",
                                            "r14", "r15" };

static void print_seg(const hconn *h, const char *name, const vmsig_wire_seg *s)
{
    out(h, "%-3s %04x base %016" PRIx64 " limit %08x attr %04x", name, s->selector, s->base,
        s->limit, s->attr);
}

static void print_regs(hconn *h, const vmsig_wire_cpu_regs *r)
{
    if (G.json) {
        printf("{\"socket\":%s,\"ep\":%u,\"cpu\":%u,\"arch\":%u,\"halted\":%s,\"lma\":%s,"
               "\"paging\":%s", jstr(h->path), h->ep, r->index, r->arch,
               r->flags & VMSIG_CPU_F_HALTED ? "true" : "false",
               r->flags & VMSIG_CPU_F_LMA ? "true" : "false",
               r->flags & VMSIG_CPU_F_PAGING ? "true" : "false");
        for (int i = 0; i < 16; i++) {
            printf(",\"%s\":%" PRIu64, gpr_names[i], r->gpr[i]);
        }
        printf(",\"rip\":%" PRIu64 ",\"rflags\":%" PRIu64 ",\"cr0\":%" PRIu64 ",\"cr2\":%" PRIu64
               ",\"cr3\":%" PRIu64 ",\"cr4\":%" PRIu64 ",\"efer\":%" PRIu64
               ",\"kernel_gs_base\":%" PRIu64 ",\"fs_base\":%" PRIu64 ",\"gs_base\":%" PRIu64
               ",\"cs\":%u,\"ss\":%u,\"gdt_base\":%" PRIu64 ",\"idt_base\":%" PRIu64 "}\n",
               r->rip, r->rflags, r->cr0, r->cr2, r->cr3, r->cr4, r->efer, r->kernel_gs_base,
               r->fs.base, r->gs.base, r->cs.selector, r->ss.selector, r->gdt.base, r->idt.base);
        return;
    }
    out(h, "vCPU %u: %s%s%s", r->index, r->flags & VMSIG_CPU_F_HALTED ? "halted" : "not halted",
        r->flags & VMSIG_CPU_F_LMA ? ", long mode" : "",
        r->flags & VMSIG_CPU_F_PAGING ? ", paging" : "");
    for (int i = 0; i < 16; i += 4) {
        out(h, "%-3s %016" PRIx64 "  %-3s %016" PRIx64 "  %-3s %016" PRIx64 "  %-3s %016" PRIx64,
            gpr_names[i], r->gpr[i], gpr_names[i + 1], r->gpr[i + 1], gpr_names[i + 2],
            r->gpr[i + 2], gpr_names[i + 3], r->gpr[i + 3]);
    }
    out(h, "rip %016" PRIx64 "  rflags %08" PRIx64, r->rip, r->rflags);
    out(h, "cr0 %016" PRIx64 "  cr2 %016" PRIx64 "  cr3 %016" PRIx64 "  cr4 %016" PRIx64, r->cr0,
        r->cr2, r->cr3, r->cr4);
    out(h, "efer %016" PRIx64 "  kernel_gs_base %016" PRIx64, r->efer, r->kernel_gs_base);
    print_seg(h, "es", &r->es);
    print_seg(h, "cs", &r->cs);
    print_seg(h, "ss", &r->ss);
    print_seg(h, "ds", &r->ds);
    print_seg(h, "fs", &r->fs);
    print_seg(h, "gs", &r->gs);
    print_seg(h, "ldt", &r->ldt);
    print_seg(h, "tr", &r->tr);
    out(h, "gdt base %016" PRIx64 " limit %08x", r->gdt.base, r->gdt.limit);
    out(h, "idt base %016" PRIx64 " limit %08x", r->idt.base, r->idt.limit);
    out(h, "paging mode %s", (const char *[]){ "4-level", "5-level (LA57)", "32-bit PAE",
                                               "32-bit", "off" }[vmsig_vmem_mode(r->cr0, r->cr4,
                                                                               r->efer) & 7]);
}

int cmd_regs(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "cpu", required_argument, NULL, 'c' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t cpu = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        if (opt != 'c' || parse_u64(optarg, &cpu) < 0 || cpu > UINT32_MAX) {
            return usage_error("regs", opt == 'c' ? "bad --cpu" : "bad option");
        }
    }
    if (optind != argc) {
        return usage_error("regs", "unexpected argument '%s'", argv[optind]);
    }
    connect_all(0);
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        vmsig_wire_cpu_regs r;
        if (usable(h) && get_regs(h, (uint32_t)cpu, &r) == EX_OK) {
            print_regs(h, &r);
        }
    }
    fflush(stdout);
    return final_rc(0);
}

/* ---- the page-table root: --cpu N, --cr3 X or the kernel's own ---- */

typedef struct rootsel {
    int have_cpu, have_cr3;
    uint64_t cpu, cr3;
    int mode; /* -1: from the registers, or 4-level; else VMSIG_VMEM_* */
} rootsel;

static const char *mode_name(uint32_t flags)
{
    switch (flags & VMSIG_VMEM_MODE_MASK) {
    case VMSIG_VMEM_4LEVEL: return "4-level";
    case VMSIG_VMEM_LA57: return "5-level";
    case VMSIG_VMEM_PAE32: return "pae";
    case VMSIG_VMEM_LEGACY32: return flags & VMSIG_VMEM_PSE ? "32-bit+pse" : "32-bit";
    default: return "off";
    }
}

static int parse_mode(const char *s)
{
    static const struct { const char *n; int f; } t[] = {
        { "4", VMSIG_VMEM_4LEVEL }, { "4-level", VMSIG_VMEM_4LEVEL },
        { "5", VMSIG_VMEM_LA57 }, { "5-level", VMSIG_VMEM_LA57 }, { "la57", VMSIG_VMEM_LA57 },
        { "pae", VMSIG_VMEM_PAE32 }, { "32", VMSIG_VMEM_LEGACY32 | VMSIG_VMEM_PSE },
        { "32-bit", VMSIG_VMEM_LEGACY32 | VMSIG_VMEM_PSE }, { "off", VMSIG_VMEM_PHYS },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (!strcmp(s, t[i].n)) {
            return t[i].f;
        }
    }
    return -1;
}

/* Resolve the root and the mode for h. EX_OK or a reported exit code. */
static int resolve_root(hconn *h, const vmsig_memmap *map, const rootsel *sel, uint64_t *root,
                        uint32_t *flags, char *src, size_t srclen)
{
    if (sel->have_cpu) {
        vmsig_wire_cpu_regs r;
        int rc = get_regs(h, (uint32_t)sel->cpu, &r);
        if (rc != EX_OK) {
            return rc;
        }
        *root = r.cr3;
        *flags = sel->mode >= 0 ? (uint32_t)sel->mode : vmsig_vmem_mode(r.cr0, r.cr4, r.efer);
        snprintf(src, srclen, "CR3 of vCPU %u", (unsigned)sel->cpu);
        return EX_OK;
    }
    if (sel->have_cr3) {
        *root = sel->cr3;
        *flags = sel->mode >= 0 ? (uint32_t)sel->mode : VMSIG_VMEM_4LEVEL;
        snprintf(src, srclen, "CR3 0x%" PRIx64, sel->cr3);
        return EX_OK;
    }
    static vmsig_linux_info li;
    int r = vmsig_linux_find(map, &li);
    if (r < 0 || !(li.flags & VMSIG_LINUX_F_ROOT)) {
        errmsg(h, "no page-table root: no Linux VMCOREINFO with swapper_pg_dir in guest RAM "
                  "(%s); give --cpu N or --cr3 X", r < 0 ? strerror(-r) : "no swapper_pg_dir");
        h->rc = h->rc ? h->rc : EX_OTHER;
        return EX_OTHER;
    }
    *root = li.root;
    *flags = sel->mode >= 0 ? (uint32_t)sel->mode : li.vmem_flags;
    snprintf(src, srclen, "swapper_pg_dir of Linux %s", li.release);
    return EX_OK;
}

static int root_opt(rootsel *sel, int opt, const char *cmd)
{
    switch (opt) {
    case 'c':
        if (parse_u64(optarg, &sel->cpu) < 0 || sel->cpu > UINT32_MAX) {
            return usage_error(cmd, "bad --cpu '%s'", optarg);
        }
        sel->have_cpu = 1;
        return 0;
    case 'r':
        if (parse_u64(optarg, &sel->cr3) < 0) {
            return usage_error(cmd, "bad --cr3 '%s'", optarg);
        }
        sel->have_cr3 = 1;
        return 0;
    case 'm':
        if ((sel->mode = parse_mode(optarg)) < 0) {
            return usage_error(cmd, "bad --mode '%s' (4-level, 5-level, pae, 32-bit, off)", optarg);
        }
        return 0;
    }
    return usage_error(cmd, "bad option");
}

static void report_fault(hconn *h, const char *cmd, uint32_t flags, const vmsig_vmem_xlat *x)
{
    switch (x->fault) {
    case VMSIG_VMEM_NOT_PRESENT:
        errmsg(h, "%s: VA 0x%" PRIx64 " is not mapped: %s entry not present (level %u, entry "
                  "0x%" PRIx64 " at GPA 0x%" PRIx64 ")", cmd, x->va,
               vmsig_vmem_level_name(flags, x->level), x->level, x->entry, x->entry_gpa);
        break;
    case VMSIG_VMEM_NONCANONICAL:
        errmsg(h, "%s: VA 0x%" PRIx64 " is not canonical for %s paging", cmd, x->va,
               mode_name(flags));
        break;
    case VMSIG_VMEM_RESERVED:
        errmsg(h, "%s: VA 0x%" PRIx64 ": %s entry 0x%" PRIx64 " sets a reserved bit (level %u)",
               cmd, x->va, vmsig_vmem_level_name(flags, x->level), x->entry, x->level);
        break;
    default:
        if (x->level) {
            errmsg(h, "%s: VA 0x%" PRIx64 ": not guest RAM (%s at level %u, GPA 0x%" PRIx64 ")",
                   cmd, x->va, x->entry ? "the page" : "a table",
                   x->level, x->entry ? x->pa : x->entry_gpa);
        } else {
            errmsg(h, "%s: VA 0x%" PRIx64 ": GPA 0x%" PRIx64 " is not guest RAM", cmd, x->va,
                   x->pa);
        }
        break;
    }
    if (G.json) {
        printf("{\"socket\":%s,\"ep\":%u,\"command\":%s,\"ok\":false,\"exit\":%d,\"va\":%" PRIu64
               ",\"error\":\"EFAULT\",\"fault\":%u,\"level\":%u,\"entry\":%" PRIu64 "}\n",
               jstr(h->path), h->ep, jstr(cmd), EX_OTHER, x->va, x->fault, x->level, x->entry);
    }
    h->rc = h->rc ? h->rc : EX_OTHER;
}

static const struct option root_lopts[] = {
    { "cpu", required_argument, NULL, 'c' },
    { "cr3", required_argument, NULL, 'r' },
    { "mode", required_argument, NULL, 'm' },
    { "raw", no_argument, NULL, 'R' },
    { NULL, 0, NULL, 0 },
};

int cmd_vread(int argc, char **argv)
{
    rootsel sel = { .mode = -1 };
    int raw = 0, opt;
    uint64_t va, len;
    while ((opt = getopt_long(argc, argv, "", root_lopts, NULL)) != -1) {
        if (opt == 'R') {
            raw = 1;
        } else if (root_opt(&sel, opt, "vread")) {
            return EX_USAGE;
        }
    }
    if (sel.have_cpu && sel.have_cr3) {
        return usage_error("vread", "--cpu and --cr3 exclude each other");
    }
    if (argc - optind != 2) {
        return usage_error("vread", "expected VA LEN");
    }
    if (parse_u64(argv[optind], &va) < 0) {
        return usage_error("vread", "bad VA '%s'", argv[optind]);
    }
    if (parse_size(argv[optind + 1], &len) < 0 || !len || va + len < va) {
        return usage_error("vread", "bad LEN '%s'", argv[optind + 1]);
    }
    connect_all(1u << VMSIG_SRC_MEMCTX);
    uint8_t *buf = malloc(CHUNK);
    for (unsigned i = 0; buf && i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        int rc;
        if (!usable(h)) {
            continue;
        }
        vmsig_memmap *map = wait_memmap(h, &rc);
        if (!map) {
            continue;
        }
        uint64_t root;
        uint32_t flags;
        char src[128];
        if (resolve_root(h, map, &sel, &root, &flags, src, sizeof(src)) == EX_OK) {
            for (uint64_t off = 0; off < len; off += CHUNK) {
                size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK, got = 0;
                vmsig_vmem_xlat x;
                int r = vmsig_vmem_read_partial(map, root, flags | VMSIG_VMEM_SPARSE, va + off,
                                                buf, n, &got, &x);
                if (print_bytes(h, "vread", "va", va + off, 16, raw, buf, got) < 0) {
                    break; /* stdout went away: said so */
                }
                if (r == -EFAULT) {
                    report_fault(h, "vread", flags, &x);
                    break;
                } else if (r < 0) {
                    errmsg(h, "vread: %s", strerror(-r));
                    h->rc = h->rc ? h->rc : EX_OTHER;
                    break;
                }
            }
            note(h, "(through %s, root 0x%" PRIx64 ", %s paging)", src, root, mode_name(flags));
        }
        vmsig_memmap_unref(map);
    }
    free(buf);
    fflush(stdout);
    return final_rc(0);
}

int cmd_vtop(int argc, char **argv)
{
    rootsel sel = { .mode = -1 };
    int opt;
    uint64_t va;
    while ((opt = getopt_long(argc, argv, "", root_lopts, NULL)) != -1) {
        if (opt == 'R' || root_opt(&sel, opt, "vtop")) {
            return opt == 'R' ? usage_error("vtop", "bad option") : EX_USAGE;
        }
    }
    if (sel.have_cpu && sel.have_cr3) {
        return usage_error("vtop", "--cpu and --cr3 exclude each other");
    }
    if (argc - optind != 1 || parse_u64(argv[optind], &va) < 0) {
        return usage_error("vtop", "expected one VA");
    }
    connect_all(1u << VMSIG_SRC_MEMCTX);
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        int rc;
        if (!usable(h)) {
            continue;
        }
        vmsig_memmap *map = wait_memmap(h, &rc);
        if (!map) {
            continue;
        }
        uint64_t root;
        uint32_t flags;
        char src[128];
        if (resolve_root(h, map, &sel, &root, &flags, src, sizeof(src)) == EX_OK) {
            vmsig_vmem_xlat x;
            if (vmsig_vmem_translate(map, root, flags | VMSIG_VMEM_SPARSE, va, &x) < 0) {
                report_fault(h, "vtop", flags, &x);
            } else if (G.json) {
                printf("{\"socket\":%s,\"ep\":%u,\"va\":%" PRIu64 ",\"pa\":%" PRIu64
                       ",\"page_size\":%" PRIu64 ",\"level\":%u,\"entry\":%" PRIu64
                       ",\"writable\":%s,\"user\":%s,\"nx\":%s,\"root\":%" PRIu64 "}\n",
                       jstr(h->path), h->ep, va, x.pa, x.page_size, x.level, x.entry,
                       x.access & VMSIG_VMEM_W ? "true" : "false",
                       x.access & VMSIG_VMEM_U ? "true" : "false",
                       x.access & VMSIG_VMEM_NX ? "true" : "false", root);
            } else {
                out(h, "0x%" PRIx64 " -> 0x%" PRIx64 " (%s page, %s entry 0x%" PRIx64
                       " at GPA 0x%" PRIx64 ", %s%s%s)", va, x.pa, human_size(x.page_size),
                    vmsig_vmem_level_name(flags, x.level), x.entry, x.entry_gpa,
                    x.access & VMSIG_VMEM_W ? "rw" : "ro", x.access & VMSIG_VMEM_U ? " user" : " kernel",
                    x.access & VMSIG_VMEM_NX ? " nx" : "");
                note(h, "(through %s, root 0x%" PRIx64 ", %s paging)", src, root, mode_name(flags));
            }
        }
        vmsig_memmap_unref(map);
    }
    fflush(stdout);
    return final_rc(0);
}

/* ---- linux ---- */

/* A NUL-terminated string of at most max bytes at va, printable only. */
static int read_kstring(const vmsig_memmap *map, const vmsig_linux_info *li, uint64_t va,
                        char *s, size_t max)
{
    size_t got = 0;
    int r = vmsig_vmem_read_partial(map, li->root, li->vmem_flags | VMSIG_VMEM_SPARSE, va, s,
                                    max - 1, &got, NULL);
    s[got] = 0;
    s[strcspn(s, "\n")] = 0;
    return got || !r ? 0 : r;
}

int cmd_linux(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "symbol", required_argument, NULL, 's' },
        { "text", no_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    const char *syms[16];
    unsigned nsyms = 0;
    int text = 0, opt;
    while ((opt = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        if (opt == 's' && nsyms < 16) {
            syms[nsyms++] = optarg;
        } else if (opt == 't') {
            text = 1;
        } else {
            return usage_error("linux", opt == 's' ? "at most 16 --symbol" : "bad option");
        }
    }
    if (optind != argc) {
        return usage_error("linux", "unexpected argument '%s'", argv[optind]);
    }
    connect_all(1u << VMSIG_SRC_MEMCTX);
    static vmsig_linux_info li;
    for (unsigned i = 0; i < G.nconn; i++) {
        hconn *h = &G.conns[i];
        int rc;
        if (!usable(h)) {
            continue;
        }
        vmsig_memmap *map = wait_memmap(h, &rc);
        if (!map) {
            continue;
        }
        int r = vmsig_linux_find(map, &li);
        if (r < 0) {
            errmsg(h, "linux: no VMCOREINFO in guest RAM (%s): not a Linux guest, a kernel "
                      "without crash support, or not booted yet", strerror(-r));
            h->rc = h->rc ? h->rc : EX_OTHER;
            vmsig_memmap_unref(map);
            continue;
        }
        char uts[66] = "", banner[256] = "";
        uint64_t uts_pa = 0, banner_va = 0;
        vmsig_vmem_xlat x;
        if ((li.flags & VMSIG_LINUX_F_ROOT) && li.uts_va) {
            read_kstring(map, &li, li.uts_va + 130, uts, sizeof(uts));
            if (vmsig_vmem_translate(map, li.root, li.vmem_flags, li.uts_va + 130, &x) == 0) {
                uts_pa = x.pa;
            }
        }
        if ((li.flags & VMSIG_LINUX_F_ROOT) &&
            vmsig_linux_kallsyms(map, &li, "linux_banner", &banner_va) == 0) {
            read_kstring(map, &li, banner_va, banner, sizeof(banner));
        }
        if (G.json) {
            printf("{\"socket\":%s,\"ep\":%u,\"release\":%s,\"vmcoreinfo_gpa\":%" PRIu64
                   ",\"note\":%s,\"page_size\":%u,\"kaslr_offset\":%" PRIu64
                   ",\"phys_base\":%" PRId64 ",\"swapper_pg_dir\":%" PRIu64 ",\"root\":%" PRIu64
                   ",\"paging\":%s,\"init_uts_ns_release_va\":%" PRIu64
                   ",\"init_uts_ns_release_pa\":%" PRIu64 ",\"uts_release\":%s,\"verified\":%s",
                   jstr(h->path), h->ep, jstr(li.release), li.text_gpa,
                   li.flags & VMSIG_LINUX_F_NOTE ? "true" : "false", li.page_size,
                   li.kaslr_offset, li.phys_base, li.pgd_va, li.root,
                   jstr(mode_name(li.vmem_flags)), li.uts_va + 130, uts_pa, jstr(uts),
                   li.flags & VMSIG_LINUX_F_VERIFIED ? "true" : "false");
            /* jstr() rotates over 4 buffers: the banner in its own printf */
            printf(",\"banner_va\":%" PRIu64 ",\"banner\":%s", banner_va, jstr(banner));
            for (unsigned k = 0; k < nsyms; k++) {
                uint64_t a = 0;
                if (vmsig_linux_symbol(&li, syms[k], &a) < 0 &&
                    vmsig_linux_kallsyms(map, &li, syms[k], &a) < 0) {
                    a = 0;
                }
                printf(",\"symbol_%s\":%" PRIu64, syms[k], a);
            }
            printf("}\n");
        } else {
            out(h, "release        %s", li.release);
            out(h, "vmcoreinfo     GPA 0x%" PRIx64 " (%s, %u bytes)", li.text_gpa,
                li.flags & VMSIG_LINUX_F_NOTE ? "ELF note" : "bare copy", li.text_len);
            out(h, "page size      %u", li.page_size);
            out(h, "KASLR offset   0x%" PRIx64, li.kaslr_offset);
            out(h, "phys_base      %s0x%" PRIx64 "%s", li.phys_base < 0 ? "-" : "",
                li.phys_base < 0 ? (uint64_t)-li.phys_base : (uint64_t)li.phys_base,
                li.flags & VMSIG_LINUX_F_PHYS_BASE ? "" : " (not given; assumed)");
            if (li.flags & VMSIG_LINUX_F_ROOT) {
                out(h, "page tables    swapper_pg_dir 0x%" PRIx64 " -> root GPA 0x%" PRIx64 " (%s)",
                    li.pgd_va, li.root, mode_name(li.vmem_flags));
            }
            if (li.uts_va) {
                out(h, "init_uts_ns    release at VA 0x%" PRIx64 " -> GPA 0x%" PRIx64 ": \"%s\" %s",
                    li.uts_va + 130, uts_pa, uts,
                    li.flags & VMSIG_LINUX_F_VERIFIED ? "(= OSRELEASE: translation verified)"
                                                      : "(DIFFERS from OSRELEASE)");
            }
            if (banner_va) {
                out(h, "banner         VA 0x%" PRIx64 ": %s", banner_va, banner);
            }
            for (unsigned k = 0; k < nsyms; k++) {
                uint64_t a;
                const char *how = "vmcoreinfo";
                if (vmsig_linux_symbol(&li, syms[k], &a) < 0) {
                    how = "kallsyms";
                    if (vmsig_linux_kallsyms(map, &li, syms[k], &a) < 0) {
                        out(h, "symbol         %s: not found", syms[k]);
                        h->rc = h->rc ? h->rc : EX_OTHER;
                        continue;
                    }
                }
                if (vmsig_vmem_translate(map, li.root, li.vmem_flags, a, &x) == 0) {
                    out(h, "symbol         %s = VA 0x%" PRIx64 " -> GPA 0x%" PRIx64 " (%s)", syms[k],
                        a, x.pa, how);
                } else {
                    out(h, "symbol         %s = VA 0x%" PRIx64 " (not mapped; %s)", syms[k], a, how);
                }
            }
            if (text) {
                out(h, "%s", li.text);
            }
        }
        vmsig_memmap_unref(map);
    }
    fflush(stdout);
    return final_rc(0);
}
