/* Puts a kernel into guest memory with everything its entry protocol needs:
 * GDT, identity page tables, MP table, command line, initrd, and either the
 * Linux zero page (boot_params) or the PVH hvm_start_info. */
#include <string.h>

#include "../error.h"
#include "../x86/layout.h"
#include "boot.h"
#include "bzimage.h"

#define PAGE_SIZE 4096ull
#define PTE_PRESENT_RW 0x3ull
#define PDE_2M_PAGE 0x80ull
#define LINUX_TYPE_OF_LOADER 0xff /* "undefined" boot loader */
#define LINUX_DEFAULT_INITRD_MAX 0x37ffffffull
#define LINUX_OLD_CMDLINE_MAX 255

/* Offsets in struct boot_params (Documentation/arch/x86/zero-page.rst). */
#define ZP_ACPI_RSDP_ADDR 0x070
#define ZP_E820_ENTRIES 0x1e8
#define ZP_E820_TABLE 0x2d0
#define ZP_SIZE 4096

/* PVH (xen/include/public/arch-x86/hvm/start_info.h). */
#define PVH_MAGIC 0x336ec578u
#define PVH_MODLIST_OFF 0x40
#define PVH_MEMMAP_OFF 0x80

struct __attribute__((packed)) hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct __attribute__((packed)) hvm_modlist_entry {
    uint64_t paddr, size, cmdline_paddr, reserved;
};
struct __attribute__((packed)) hvm_memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};
struct __attribute__((packed)) zp_e820_entry {
    uint64_t addr, size;
    uint32_t type;
};

int boot_write_page_tables(struct guest_memory *gm)
{
    uint64_t *pml4 = gm_ptr(gm, LAYOUT_PML4, PAGE_SIZE);
    uint64_t *pdpt = gm_ptr(gm, LAYOUT_PDPT, PAGE_SIZE);
    uint64_t *pd = gm_ptr(gm, LAYOUT_PD, 4 * PAGE_SIZE);
    if (!pml4 || !pdpt || !pd)
        return kvmc_fail(KVMC_EINVAL, "guest memory too small for page tables");
    memset(pml4, 0, PAGE_SIZE);
    memset(pdpt, 0, PAGE_SIZE);
    pml4[0] = LAYOUT_PDPT | PTE_PRESENT_RW;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (LAYOUT_PD + i * PAGE_SIZE) | PTE_PRESENT_RW;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | PTE_PRESENT_RW | PDE_2M_PAGE;
    return KVMC_OK;
}

int boot_write_gdt(struct guest_memory *gm)
{
    static const uint64_t gdt[] = {
        0,                     /* null */
        0x00cf9b000000ffffull, /* 0x08: 32-bit code, flat (PVH) */
        0x00af9b000000ffffull, /* 0x10: 64-bit code (__BOOT_CS) */
        0x00cf93000000ffffull, /* 0x18: data, flat (__BOOT_DS) */
        0x0000890000000067ull, /* 0x20: TSS (never used, but valid) */
    };
    uint64_t zero_idt = 0;
    if (gm_write(gm, LAYOUT_BOOT_GDT, gdt, sizeof(gdt)) ||
        gm_write(gm, LAYOUT_BOOT_IDT, &zero_idt, sizeof(zero_idt)))
        return kvmc_fail(KVMC_EINVAL, "guest memory too small for the GDT");
    return KVMC_OK;
}

static int write_cmdline(struct guest_memory *gm, const char *cmdline, size_t max)
{
    size_t len = cmdline ? strlen(cmdline) : 0;
    if (len > max)
        return kvmc_fail(KVMC_EINVAL,
                         "kernel command line is %zu bytes; this kernel takes at most %zu",
                         len, max);
    if (gm_write(gm, LAYOUT_CMDLINE, cmdline ? cmdline : "", len) ||
        gm_write(gm, LAYOUT_CMDLINE + len, "", 1))
        return kvmc_fail(KVMC_EINVAL, "no guest RAM for the command line");
    return KVMC_OK;
}

/* Highest 4 KiB-aligned spot for the initrd below `limit`, above the kernel. */
static int place_initrd(struct guest_memory *gm, const struct boot_request *req,
                        uint64_t limit, struct boot_entry *entry)
{
    if (req->initrd.len == 0)
        return KVMC_OK;
    uint64_t top = gm_low_end(gm);
    if (limit < top)
        top = limit;
    uint64_t size = req->initrd.len;
    if (size > top || ((top - size) & ~(PAGE_SIZE - 1)) < entry->kernel_end)
        return kvmc_fail(KVMC_EINVAL,
                         "initrd (%llu KiB) does not fit in guest memory between the "
                         "kernel end (0x%llx) and 0x%llx; give the guest more memory",
                         (unsigned long long)(size >> 10),
                         (unsigned long long)entry->kernel_end,
                         (unsigned long long)top);
    uint64_t addr = (top - size) & ~(PAGE_SIZE - 1);
    uint8_t *dst = gm_ptr(gm, addr, size);
    if (!dst)
        return kvmc_fail(KVMC_EINVAL, "initrd does not fit in guest memory");
    if (image_read(&req->initrd, 0, dst, size))
        return kvmc_fail(KVMC_EIO, "initrd: the file shrank or could not be read");
    entry->initrd_start = addr;
    entry->initrd_size = size;
    return KVMC_OK;
}

static void fill_zero_page_e820(const struct guest_memory *gm,
                                const struct pci_host_desc *pci, uint8_t *zp)
{
    struct e820_entry map[E820_MAX_ENTRIES];
    unsigned n = e820_build(gm, pci, map);
    zp[ZP_E820_ENTRIES] = (uint8_t)n;
    for (unsigned i = 0; i < n; i++) {
        struct zp_e820_entry e = {map[i].addr, map[i].size, map[i].type};
        memcpy(zp + ZP_E820_TABLE + i * sizeof(e), &e, sizeof(e));
    }
}

/* Zero page for the 64-bit entry. hdr is the kernel's own setup header for
 * a bzImage, or a minimal one for an ELF vmlinux. */
static int write_zero_page(struct guest_memory *gm, const struct bz_setup_header *hdr,
                           size_t hdr_len, const struct boot_entry *entry,
                           const struct boot_request *req)
{
    const char *cmdline = req->cmdline;
    uint8_t zp[ZP_SIZE] = {0};
    struct bz_setup_header h = {0};
    memcpy(&h, hdr, hdr_len);
    h.type_of_loader = LINUX_TYPE_OF_LOADER;
    h.loadflags |= BZ_LOADED_HIGH | BZ_CAN_USE_HEAP;
    h.heap_end_ptr = 0xfe00;
    h.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
    h.cmdline_size = cmdline ? (uint32_t)strlen(cmdline) : 0;
    h.ramdisk_image = (uint32_t)entry->initrd_start;
    h.ramdisk_size = (uint32_t)entry->initrd_size;
    memcpy(zp + BZ_OFF_SETUP_HDR, &h, sizeof(h));
    memcpy(zp + ZP_ACPI_RSDP_ADDR, &entry->rsdp, sizeof(entry->rsdp));
    fill_zero_page_e820(gm, &req->pci, zp);
    if (gm_write(gm, LAYOUT_ZERO_PAGE, zp, sizeof(zp)))
        return kvmc_fail(KVMC_EINVAL, "no guest RAM for the zero page");
    return KVMC_OK;
}

static int write_pvh_start_info(struct guest_memory *gm, const struct boot_entry *entry,
                                const struct boot_request *req)
{
    struct e820_entry map[E820_MAX_ENTRIES];
    unsigned n = e820_build(gm, &req->pci, map);
    struct hvm_start_info si = {
        .magic = PVH_MAGIC, .version = 1,
        .cmdline_paddr = LAYOUT_CMDLINE,
        .rsdp_paddr = entry->rsdp,
        .memmap_paddr = LAYOUT_PVH_INFO + PVH_MEMMAP_OFF,
        .memmap_entries = n,
    };
    if (entry->initrd_size) {
        struct hvm_modlist_entry mod = {.paddr = entry->initrd_start,
                                        .size = entry->initrd_size};
        si.nr_modules = 1;
        si.modlist_paddr = LAYOUT_PVH_INFO + PVH_MODLIST_OFF;
        if (gm_write(gm, si.modlist_paddr, &mod, sizeof(mod)))
            return kvmc_fail(KVMC_EINVAL, "no guest RAM for the PVH module list");
    }
    for (unsigned i = 0; i < n; i++) {
        struct hvm_memmap_entry e = {map[i].addr, map[i].size, map[i].type, 0};
        if (gm_write(gm, si.memmap_paddr + i * sizeof(e), &e, sizeof(e)))
            return kvmc_fail(KVMC_EINVAL, "no guest RAM for the PVH memory map");
    }
    if (gm_write(gm, LAYOUT_PVH_INFO, &si, sizeof(si)))
        return kvmc_fail(KVMC_EINVAL, "no guest RAM for the PVH start info");
    return KVMC_OK;
}

static int load_bzimage(struct guest_memory *gm, const struct boot_request *req,
                        const uint8_t *head, size_t head_len, struct boot_entry *entry)
{
    struct bzimage bz;
    int err = bzimage_parse(head, head_len, req->kernel.len, &bz);
    if (err)
        return err;
    if (req->protocol == KVMC_BOOT_PVH)
        return kvmc_fail(KVMC_EINVAL,
                         "PVH boot needs an ELF kernel with a PVH note, not a bzImage");
    uint64_t footprint = bz.payload_len;
    if (bz.hdr.init_size > footprint)
        footprint = bz.hdr.init_size; /* room the kernel needs to decompress */
    uint8_t *dst = gm_ptr(gm, LAYOUT_HIMEM, footprint);
    if (!dst)
        return kvmc_fail(KVMC_EINVAL,
                         "kernel needs %llu MiB above 1 MiB; guest memory is too small",
                         (unsigned long long)(footprint >> 20) + 1);
    if (image_read(&req->kernel, bz.payload_offset, dst, bz.payload_len))
        return kvmc_fail(KVMC_EIO, "bzImage: the file shrank or could not be read");
    entry->mode = BOOT_ENTRY_LONG64;
    entry->rip = LAYOUT_HIMEM + BZ_ENTRY64_OFFSET;
    entry->arg = LAYOUT_ZERO_PAGE;
    entry->kernel_start = LAYOUT_HIMEM;
    entry->kernel_end = LAYOUT_HIMEM + footprint;

    size_t cmdline_max = bz.hdr.version >= 0x0206 ? bz.hdr.cmdline_size
                                                  : LINUX_OLD_CMDLINE_MAX;
    if (cmdline_max == 0 || cmdline_max >= LAYOUT_CMDLINE_MAX)
        cmdline_max = LAYOUT_CMDLINE_MAX - 1;
    uint64_t initrd_max = bz.hdr.initrd_addr_max ? bz.hdr.initrd_addr_max
                                                 : LINUX_DEFAULT_INITRD_MAX;
    if ((err = write_cmdline(gm, req->cmdline, cmdline_max)) ||
        (err = place_initrd(gm, req, initrd_max + 1, entry)))
        return err;
    return write_zero_page(gm, &bz.hdr, bz.hdr_len, entry, req);
}

static int load_elf(struct guest_memory *gm, const struct boot_request *req,
                    struct boot_entry *entry)
{
    struct elf_info info;
    int err = elf_load(gm, &req->kernel, &info);
    if (err)
        return err;
    bool pvh = info.pvh_entry != 0 && req->protocol != KVMC_BOOT_LINUX;
    if (req->protocol == KVMC_BOOT_PVH && !info.pvh_entry)
        return kvmc_fail(KVMC_ENOTSUP,
                         "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
    entry->kernel_start = info.low;
    entry->kernel_end = (info.high + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    if ((err = write_cmdline(gm, req->cmdline, LAYOUT_CMDLINE_MAX - 1)) ||
        (err = place_initrd(gm, req, LAYOUT_HOLE_START, entry)))
        return err;
    if (pvh) {
        entry->mode = BOOT_ENTRY_PVH32;
        entry->rip = info.pvh_entry;
        entry->arg = LAYOUT_PVH_INFO;
        return write_pvh_start_info(gm, entry, req);
    }
    entry->mode = BOOT_ENTRY_LONG64;
    entry->rip = info.entry;
    entry->arg = LAYOUT_ZERO_PAGE;
    struct bz_setup_header hdr = {
        .boot_flag = 0xaa55, .header = BZ_HDRS_MAGIC, .version = 0x020f,
        .kernel_alignment = 0x1000000, .initrd_addr_max = (uint32_t)LINUX_DEFAULT_INITRD_MAX,
    };
    return write_zero_page(gm, &hdr, sizeof(hdr), entry, req);
}

int boot_load(struct guest_memory *gm, const struct boot_request *req,
              struct boot_entry *entry)
{
    memset(entry, 0, sizeof(*entry));
    int err;
    if ((err = boot_write_gdt(gm)) || (err = boot_write_page_tables(gm)) ||
        (err = mptable_write(gm, req->cpus)) ||
        (err = acpi_write_tables(gm, req->cpus, req->virtio, req->nvirtio, &req->pci, req->pic,
                                 &entry->rsdp)))
        return err;
    uint8_t head[BOOT_HEAD_BYTES];
    size_t head_len = req->kernel.len < sizeof(head) ? (size_t)req->kernel.len : sizeof(head);
    if (image_read(&req->kernel, 0, head, head_len))
        return kvmc_fail(KVMC_EIO, "the kernel could not be read");
    if (bzimage_probe(head, head_len))
        return load_bzimage(gm, req, head, head_len, entry);
    if (elf_probe(head, head_len))
        return load_elf(gm, req, entry);
    return kvmc_fail(KVMC_EFORMAT, "not a Linux bzImage or ELF kernel");
}
