/* Boot loaders: put a kernel, its initrd and command line into guest memory
 * following the Linux 64-bit boot protocol or the PVH entry, and describe
 * the initial vCPU state. Everything read from an image is untrusted. */
#ifndef KVMC_BOOT_H
#define KVMC_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../files.h"
#include "../guest_memory.h"
#include "kvmc/kvmc.h"

enum boot_entry_mode {
    BOOT_ENTRY_LONG64, /* 64-bit mode, paging on, rsi = boot_params */
    BOOT_ENTRY_PVH32,  /* 32-bit protected mode, paging off, rbx = start_info */
};

struct boot_entry {
    enum boot_entry_mode mode;
    uint64_t rip;
    uint64_t arg; /* rsi (LONG64) or rbx (PVH32) */
    uint64_t kernel_start, kernel_end; /* guest range the kernel occupies */
    uint64_t initrd_start, initrd_size;
    uint64_t rsdp; /* ACPI RSDP, handed over in the zero page or start info */
};

/* A virtio-mmio device, described to the guest in the DSDT. */
struct mmio_device_desc {
    uint64_t base;
    uint32_t size;
    uint32_t gsi;
};

/* The PCI root complex, described in the MCFG, the DSDT (PNP0A08) and E820. */
struct pci_host_desc {
    bool present;
    uint64_t ecam_base, ecam_size;  /* bus 0 only */
    uint64_t mmio32_base, mmio32_size;
    uint64_t mmio64_base, mmio64_size;
    uint32_t io_base, io_size;
};

struct boot_request {
    struct image kernel;
    struct image initrd;   /* len 0: none */
    const char *cmdline;   /* may be NULL */
    kvmc_boot_protocol protocol;
    unsigned cpus;
    const struct mmio_device_desc *virtio; /* for the DSDT */
    unsigned nvirtio;
    struct pci_host_desc pci;
    bool pic; /* an 8259 pair exists (the kernel's full irqchip): MADT PCAT_COMPAT */
};

/* Loads everything and fills *entry; KVMC_EFORMAT/EINVAL with a message. */
int boot_load(struct guest_memory *gm, const struct boot_request *req,
              struct boot_entry *entry);

/* ---- pieces, exposed for the loader and the unit tests ---- */

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_MAX_ENTRIES 8

struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

/* The memory map of gm (with the PCI ECAM window reserved, if pci says
 * there is one; pci may be NULL); returns the number of entries. */
unsigned e820_build(const struct guest_memory *gm, const struct pci_host_desc *pci,
                    struct e820_entry out[E820_MAX_ENTRIES]);

/* The byte that makes p[0..len) plus it sum to zero (MP and ACPI tables). */
static inline uint8_t boot_checksum(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    while (len--)
        sum += *b++;
    return (uint8_t)-sum;
}

/* Writes the ACPI tables (RSDP, XSDT, FADT, DSDT, MADT, and MCFG with a
 * PCI host bridge) for `cpus` CPUs into the reserved BIOS area; *rsdp_gpa
 * gets the RSDP's address. pic: the MADT says a PC-AT 8259 pair is
 * present. pci may be NULL (no PCI). */
int acpi_write_tables(struct guest_memory *gm, unsigned cpus,
                      const struct mmio_device_desc *virtio, unsigned nvirtio,
                      const struct pci_host_desc *pci, bool pic, uint64_t *rsdp_gpa);

/* Writes an MP table for `cpus` CPUs at LAYOUT_EBDA. */
int mptable_write(struct guest_memory *gm, unsigned cpus);

/* Identity-maps the first 4 GiB with 2 MiB pages and writes the boot GDT. */
int boot_write_page_tables(struct guest_memory *gm);
int boot_write_gdt(struct guest_memory *gm);

/* GDT selectors of the boot GDT. */
#define BOOT_SEL_CODE32 0x08
#define BOOT_SEL_CODE64 0x10
#define BOOT_SEL_DATA 0x18
#define BOOT_SEL_TSS 0x20

/* The first bytes of an image, which the probes and header parsers read. */
#define BOOT_HEAD_BYTES 1024
/* bzImage: kernel recognised by its setup header (in head, the image's
 * first head_len bytes). */
int bzimage_probe(const uint8_t *head, size_t head_len);
/* ELF64 x86-64 recognised by its identification. */
int elf_probe(const uint8_t *head, size_t head_len);

struct elf_info {
    uint64_t entry;      /* e_entry: the 64-bit entry (physical) */
    uint64_t pvh_entry;  /* 32-bit PVH entry, 0 if no note */
    uint64_t low, high;  /* physical range of the loaded segments */
};
/* Validates the ELF and, if gm is non-NULL, loads its PT_LOAD segments. */
int elf_load(struct guest_memory *gm, const struct image *img, struct elf_info *info);

#endif
