/*
 * vmsig_vmem.h - guest-virtual memory and the Linux guest's own map, read
 * through a read-only guest RAM mapping (vmsig_memmap, vmsig_client.h).
 * Nothing here talks to the server: a page-table walk reads the table
 * entries it needs straight from the mapping. docs/introspection.md.
 *
 * Virtual addresses. A walk starts at a page-table root: a CR3 value (from
 * CMD_CPU REGS, vmsig_wire_cpu_regs.cr3) or the kernel's own root found in
 * its VMCOREINFO (vmsig_linux_find). flags pick the paging mode
 * (vmsig_vmem_mode() derives it from CR0, CR4 and EFER):
 *
 *   VMSIG_VMEM_4LEVEL   x86-64 4-level paging (48-bit VAs), 4 KiB, 2 MiB, 1 GiB pages
 *   VMSIG_VMEM_LA57     x86-64 5-level paging (CR4.LA57, 57-bit VAs)
 *   VMSIG_VMEM_PAE32    32-bit PAE (CR4.PAE, no long mode): 4 KiB and 2 MiB pages
 *   VMSIG_VMEM_LEGACY32 32-bit 2-level paging; 4 MiB pages with VMSIG_VMEM_PSE (CR4.PSE)
 *   VMSIG_VMEM_PHYS     paging off (CR0.PG clear): a VA is its physical address
 *
 * plus VMSIG_VMEM_SPARSE: never touch a hole of guest RAM (see "Holes" in
 * vmsig_client.h): data pages are copied with vmsig_memmap_read_sparse and a
 * table page that is a hole reads as all-not-present without being read.
 * Without it a walk and a read cost no system call, but a VA that maps a
 * page the guest never wrote (free RAM in the kernel's direct map) makes the
 * host allocate it.
 *
 * Levels are numbered as the architecture's tables: 1 = PT (4 KiB), 2 = PD
 * (2 MiB / 4 MiB), 3 = PDPT (1 GiB; PAE's 4-entry table), 4 = PML4, 5 = PML5.
 * The guest may change its tables while they are walked; a walk reads each
 * entry once, like the MMU does, and never takes a lock.
 */
#ifndef VMSIG_VMEM_H
#define VMSIG_VMEM_H

#include <stddef.h>
#include <stdint.h>
#include "vmsig_client.h"

#define VMSIG_VMEM_4LEVEL   0x0u
#define VMSIG_VMEM_LA57     0x1u
#define VMSIG_VMEM_PAE32    0x2u
#define VMSIG_VMEM_LEGACY32 0x3u
#define VMSIG_VMEM_PHYS     0x4u
#define VMSIG_VMEM_MODE_MASK 0x7u
#define VMSIG_VMEM_PSE      0x8u  /* LEGACY32 only: PDE.PS means a 4 MiB page (CR4.PSE) */
#define VMSIG_VMEM_SPARSE   0x10u /* never read (so never allocate) a hole */

/* Why a translation failed (vmsig_vmem_xlat.fault). */
#define VMSIG_VMEM_OK            0u
#define VMSIG_VMEM_NOT_PRESENT   1u /* the entry at `level` has P clear */
#define VMSIG_VMEM_NONCANONICAL  2u /* the VA is not canonical (or above 4 GiB in a 32-bit mode) */
#define VMSIG_VMEM_NOT_RAM       3u /* a table or the page is not guest RAM in this map */
#define VMSIG_VMEM_RESERVED      4u /* the entry at `level` sets PS where it cannot (PML4, PML5) */

/* Access rights of a translation: the AND (W, U) or OR (NX) over every level. */
#define VMSIG_VMEM_W  0x1u
#define VMSIG_VMEM_U  0x2u
#define VMSIG_VMEM_NX 0x4u

typedef struct vmsig_vmem_xlat {
    uint64_t va;
    uint64_t pa;        /* physical address of va (valid if fault == OK) */
    uint64_t page_size; /* 4096, 2 MiB, 4 MiB, 1 GiB; the VA range one entry maps */
    uint64_t entry;     /* the last entry read: the leaf, or the one not present */
    uint64_t entry_gpa; /* where that entry is in guest RAM */
    uint32_t level;     /* its level (1..5); 0 when no entry was read (NONCANONICAL, PHYS) */
    uint32_t fault;     /* VMSIG_VMEM_OK or why not */
    uint32_t access;    /* VMSIG_VMEM_W | _U | _NX */
    uint32_t reserved;
} vmsig_vmem_xlat;

/* The mode flags for a vCPU's CR0, CR4 and EFER (CR0.PG, EFER.LMA, CR4.LA57,
 * CR4.PAE, CR4.PSE). */
uint32_t vmsig_vmem_mode(uint64_t cr0, uint64_t cr4, uint64_t efer);

/* "PT", "PD", "PDPT", "PML4", "PML5" for a level in a mode; "?" if none. */
const char *vmsig_vmem_level_name(uint32_t flags, uint32_t level);

/* Translate va. Returns 0 (x filled), -EFAULT (x->fault, x->level and
 * x->entry say where and why), -EINVAL (unknown flags, m NULL). x may be
 * NULL. The root's low 12 bits (PCID, PWT, PCD) and bit 63 are ignored, so a
 * CR3 value works as it is. */
int vmsig_vmem_translate(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                         vmsig_vmem_xlat *x);

/* Copy len bytes at va into buf, across pages (each translated; physically
 * contiguous runs are copied at once). Returns 0, -EFAULT if some byte is
 * not mapped or not guest RAM (the bytes before it are copied), -EINVAL. */
int vmsig_vmem_read(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va, void *buf,
                    size_t len);
/* vmsig_vmem_read that says how far it got: *done = bytes copied (all of
 * them on 0), and on -EFAULT *fault = the failed translation (both
 * optional). */
int vmsig_vmem_read_partial(const vmsig_memmap *m, uint64_t root, uint32_t flags, uint64_t va,
                            void *buf, size_t len, size_t *done, vmsig_vmem_xlat *fault);

/* ---- the Linux guest's own map: VMCOREINFO ---- */

/*
 * A Linux kernel built with crash support (CONFIG_CRASH_CORE, every distro
 * kernel) keeps its VMCOREINFO text in RAM, once as an ELF note "VMCOREINFO"
 * and once as a bare page: "OSRELEASE=6.1.0-57-amd64\nPAGESIZE=4096\n
 * SYMBOL(swapper_pg_dir)=ffffffff89610000\n...NUMBER(phys_base)=...\n
 * KERNELOFFSET=6c00000\n...". vmsig_linux_find searches guest RAM's data
 * (never a hole) for "OSRELEASE=", takes the first candidate that is a valid
 * note (or a page-aligned bare copy) with a plausible text, and derives:
 *
 *   root = SYMBOL(swapper_pg_dir) - __START_KERNEL_map (0xffffffff80000000)
 *          + NUMBER(phys_base)
 *
 * the kernel's page-table root (without any vCPU), then checks it by
 * reading init_uts_ns's release through it (VMSIG_LINUX_F_VERIFIED).
 */
#define VMSIG_LINUX_TEXT_MAX 4096u
#define VMSIG_LINUX_START_KERNEL_MAP 0xffffffff80000000ull

#define VMSIG_LINUX_F_NOTE      0x1u /* the text was found as an ELF note (else a bare copy) */
#define VMSIG_LINUX_F_PHYS_BASE 0x2u /* NUMBER(phys_base) was in the text (else 0 assumed) */
#define VMSIG_LINUX_F_ROOT      0x4u /* root is set (swapper_pg_dir or init_top_pgt given) */
#define VMSIG_LINUX_F_VERIFIED  0x8u /* init_uts_ns.name.release read through root == release */

typedef struct vmsig_linux_info {
    char release[65];        /* OSRELEASE, NUL-terminated */
    uint8_t pad[3];
    uint32_t flags;          /* VMSIG_LINUX_F_* */
    uint32_t vmem_flags;     /* VMSIG_VMEM_LA57 if NUMBER(pgtable_l5_enabled)=1, else 4LEVEL */
    uint32_t page_size;      /* PAGESIZE */
    uint32_t text_len;       /* bytes of text[] */
    uint64_t text_gpa;       /* guest-physical address of the text */
    uint64_t kaslr_offset;   /* KERNELOFFSET (0 without KASLR) */
    int64_t phys_base;       /* NUMBER(phys_base) */
    uint64_t pgd_va;         /* SYMBOL(swapper_pg_dir) */
    uint64_t root;           /* its physical address: the kernel page-table root */
    uint64_t uts_va;         /* SYMBOL(init_uts_ns) + OFFSET(uts_namespace.name) */
    uint64_t reserved[8];
    char text[VMSIG_LINUX_TEXT_MAX + 1]; /* the VMCOREINFO text, NUL-terminated */
} vmsig_linux_info;

/* Find and parse the VMCOREINFO. Returns 0, -ENOENT (no valid VMCOREINFO in
 * guest RAM: not Linux, no crash support, or not booted that far), -EINVAL. */
int vmsig_linux_find(const vmsig_memmap *m, vmsig_linux_info *li);
/* Parse a VMCOREINFO text (as found, or from /sys/kernel/vmcoreinfo's
 * note): everything vmsig_linux_find fills except text_gpa, F_NOTE and
 * F_VERIFIED. 0 or -EINVAL (no OSRELEASE= line). */
int vmsig_linux_parse(const char *text, size_t len, vmsig_linux_info *li);

/* The value of KEY ("OSRELEASE", "SYMBOL(init_uts_ns)", "NUMBER(phys_base)",
 * "OFFSET(list_head.next)") copied NUL-terminated into out[0..outlen).
 * Returns its length, -ENOENT, -ENOSPC (out too small). */
int vmsig_linux_value(const vmsig_linux_info *li, const char *key, char *out, size_t outlen);
/* SYMBOL(name): its (KASLR-relocated) virtual address. 0 or -ENOENT. */
int vmsig_linux_symbol(const vmsig_linux_info *li, const char *name, uint64_t *va);
/* NUMBER(name), OFFSET(name), SIZE(name), LENGTH(name) as a signed number:
 * key is the whole "NUMBER(phys_base)". 0, -ENOENT, -EINVAL (not a number). */
int vmsig_linux_number(const vmsig_linux_info *li, const char *key, int64_t *v);
/* Any kernel symbol by name through the kernel's own kallsyms tables (their
 * addresses are in VMCOREINFO: kallsyms_names, _offsets, _token_table, ...),
 * read through li->root: e.g. "linux_banner", "jiffies". 0, -ENOENT (no
 * such symbol, or the kernel lists no kallsyms), -EFAULT (a table could not
 * be read). Linear in the number of symbols (~100k, a few ms). */
int vmsig_linux_kallsyms(const vmsig_memmap *m, const vmsig_linux_info *li, const char *name,
                         uint64_t *va);

#endif /* VMSIG_VMEM_H */
