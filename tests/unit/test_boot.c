/* Boot loaders against real and corrupted images, without KVM. */
#include <criterion/criterion.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/boot.h"
#include "boot/bzimage.h"
#include "x86/layout.h"

static uint8_t *load_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*len);
    cr_assert_eq(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static struct guest_memory gm;
static void setup_memory(void) { cr_assert_eq(gm_init(&gm, 64ull << 20, 0), KVMC_OK); }
static void teardown_memory(void) { gm_destroy(&gm); }

TestSuite(boot, .init = setup_memory, .fini = teardown_memory);

Test(boot, e820_for_small_and_large_guests)
{
    struct e820_entry map[E820_MAX_ENTRIES];
    unsigned n = e820_build(&gm, NULL, map);
    cr_assert_eq(n, 4);
    cr_assert_eq(map[0].addr, 0);
    cr_assert_eq(map[0].size, LAYOUT_EBDA);
    cr_assert_eq(map[0].type, E820_RAM);
    cr_assert_eq(map[1].type, E820_RESERVED);
    cr_assert_eq(map[2].addr, LAYOUT_BIOS_START);
    cr_assert_eq(map[3].addr, LAYOUT_HIMEM);
    cr_assert_eq(map[3].size, (64ull << 20) - LAYOUT_HIMEM);
    struct guest_memory big;
    cr_assert_eq(gm_init(&big, 6ull << 30, 0), KVMC_OK);
    n = e820_build(&big, NULL, map);
    cr_assert_eq(n, 5);
    cr_assert_eq(map[3].addr + map[3].size, LAYOUT_HOLE_START);
    cr_assert_eq(map[4].addr, LAYOUT_HOLE_END);
    cr_assert_eq(map[4].size, (6ull << 30) - LAYOUT_HOLE_START);
    gm_destroy(&big);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

static void check_mptable(unsigned want_cpus)
{
    cr_assert_eq(mptable_write(&gm, want_cpus), KVMC_OK, "%s", kvmc_last_error());
    const uint8_t *mpf = gm_ptr(&gm, LAYOUT_EBDA, 16);
    cr_assert_eq(memcmp(mpf, "_MP_", 4), 0);
    cr_assert_eq(sum(mpf, 16), 0, "floating pointer checksum");
    uint32_t table_addr;
    memcpy(&table_addr, mpf + 4, 4);
    const uint8_t *t = gm_ptr(&gm, table_addr, 44);
    uint16_t len;
    memcpy(&len, t + 4, 2);
    cr_assert_eq(memcmp(t, "PCMP", 4), 0);
    cr_assert_eq(sum(t, len), 0, "table checksum");
    cr_assert(table_addr >= LAYOUT_BIOS_START && table_addr + len <= LAYOUT_HIMEM,
              "in the reserved BIOS area");
    unsigned cpus = 0, bsp = 0, ioapics = 0;
    for (const uint8_t *p = t + 44; p < t + len;) {
        if (p[0] == 0) {
            cr_assert_eq(p[1], cpus, "APIC IDs in order");
            bsp += (p[3] & 2) != 0;
            cpus++;
            p += 20;
        } else {
            ioapics += p[0] == 2;
            p += 8;
        }
    }
    cr_assert_eq(cpus, want_cpus);
    cr_assert_eq(bsp, 1);
    cr_assert_eq(ioapics, 1);
}

Test(boot, mptable_lists_every_cpu_with_valid_checksums)
{
    for (unsigned n = 1; n <= KVMC_MAX_VCPUS; n++)
        check_mptable(n); /* 41 and more did not fit the EBDA */
    cr_assert_eq(mptable_write(&gm, 0), KVMC_EINVAL);
    cr_assert_eq(mptable_write(&gm, 255), KVMC_EINVAL);
}

Test(boot, bzimage_header_of_the_test_guest)
{
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_BZIMAGE, &len);
    struct bzimage bz;
    cr_assert_eq(bzimage_parse(img, len, len, &bz), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(bz.payload_offset, 1024);
    cr_assert_eq(bz.hdr.version, 0x020f);
    cr_assert(bz.hdr.xloadflags & BZ_XLF_KERNEL_64);
    free(img);
}

Test(boot, bzimage_corruptions_are_rejected)
{
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_BZIMAGE, &len);
    struct bzimage bz;
    cr_assert_eq(bzimage_parse(img, 0x100, 0x100, &bz), KVMC_EFORMAT, "too short for a header");
    uint8_t *bad = malloc(len);
    memcpy(bad, img, len);
    bad[0x202] = 'X';
    cr_assert_eq(bzimage_parse(bad, len, len, &bz), KVMC_EFORMAT, "bad HdrS magic");
    memcpy(bad, img, len);
    bad[0x206] = 0x0a; /* protocol 2.10: no 64-bit entry */
    cr_assert_eq(bzimage_parse(bad, len, len, &bz), KVMC_ENOTSUP);
    memcpy(bad, img, len);
    bad[0x1f1] = 200; /* setup sectors past the end of the file */
    cr_assert_eq(bzimage_parse(bad, len, len, &bz), KVMC_EFORMAT);
    cr_assert(strstr(kvmc_last_error(), "truncated"));
    memcpy(bad, img, len);
    bad[0x201] = 0xff; /* header claims to run past the struct */
    cr_assert_eq(bzimage_parse(bad, len, len, &bz), KVMC_OK);
    free(bad);
    free(img);
}

Test(boot, elf_of_the_test_guest_has_both_entries)
{
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_ELF, &len);
    struct elf_info info;
    struct image image = image_mem(img, len);
    cr_assert_eq(elf_load(&gm, &image, &info), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(info.entry, 0x100200, "64-bit entry");
    cr_assert_eq(info.pvh_entry, 0x100000, "PVH entry from the note");
    cr_assert_eq(info.low, 0x100000);
    cr_assert(info.high > info.low);
    free(img);
}

static void assert_elf_rejected(uint8_t *img, size_t len, const char *want)
{
    struct elf_info info;
    struct image image = image_mem(img, len);
    int err = elf_load(&gm, &image, &info);
    cr_assert(err == KVMC_EFORMAT || err == KVMC_EINVAL, "err %d", err);
    cr_assert(strstr(kvmc_last_error(), want), "'%s' lacks '%s'", kvmc_last_error(), want);
}

Test(boot, elf_corruptions_are_rejected)
{
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_ELF, &len);
    uint8_t *bad = malloc(len);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)bad;
    Elf64_Phdr *ph;

    memcpy(bad, img, len);
    eh->e_machine = EM_AARCH64;
    assert_elf_rejected(bad, len, "not for x86-64");

    memcpy(bad, img, len);
    eh->e_phoff = len - 10;
    assert_elf_rejected(bad, len, "program headers");

    memcpy(bad, img, len);
    eh->e_phnum = 1000;
    assert_elf_rejected(bad, len, "program headers");

    memcpy(bad, img, len);
    ph = (Elf64_Phdr *)(bad + eh->e_phoff);
    ph[0].p_offset = len;
    assert_elf_rejected(bad, len, "outside the file");

    memcpy(bad, img, len);
    ph = (Elf64_Phdr *)(bad + eh->e_phoff);
    ph[0].p_memsz = ph[0].p_filesz - 1;
    assert_elf_rejected(bad, len, "bad sizes");

    memcpy(bad, img, len);
    ph = (Elf64_Phdr *)(bad + eh->e_phoff);
    ph[0].p_paddr = 0x7000;
    assert_elf_rejected(bad, len, "below 1 MiB");

    memcpy(bad, img, len);
    ph = (Elf64_Phdr *)(bad + eh->e_phoff);
    ph[0].p_paddr = 63ull << 20; /* runs off the end of 64 MiB */
    ph[0].p_memsz = 2ull << 20;
    assert_elf_rejected(bad, len, "does not fit in guest memory");

    memcpy(bad, img, len);
    ph = (Elf64_Phdr *)(bad + eh->e_phoff);
    ph[0].p_paddr = UINT64_MAX - 0x1000;
    assert_elf_rejected(bad, len, "bad sizes");

    memcpy(bad, img, len);
    ph = (Elf64_Phdr *)(bad + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_NOTE) {
            Elf64_Nhdr *nh = (Elf64_Nhdr *)(bad + ph[i].p_offset);
            nh->n_descsz = 0x7fffffff;
        }
    assert_elf_rejected(bad, len, "truncated");

    free(bad);
    free(img);
}

Test(boot, linux_zero_page_and_initrd_placement)
{
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_BZIMAGE, &len);
    const uint8_t initrd[] = "initrd-bytes";
    struct boot_request req = {.kernel = image_mem(img, len),
                               .initrd = image_mem(initrd, sizeof(initrd)), .cmdline = "console=ttyS0",
                               .cpus = 2};
    struct boot_entry entry;
    cr_assert_eq(boot_load(&gm, &req, &entry), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(entry.mode, BOOT_ENTRY_LONG64);
    cr_assert_eq(entry.rip, LAYOUT_HIMEM + 0x200);
    cr_assert_eq(entry.arg, LAYOUT_ZERO_PAGE);
    cr_assert(entry.initrd_start >= entry.kernel_end, "initrd above the kernel");
    cr_assert_eq(entry.initrd_start % 4096, 0);
    cr_assert(entry.initrd_start + entry.initrd_size <= 64ull << 20);
    const uint8_t *zp = gm_ptr(&gm, LAYOUT_ZERO_PAGE, 4096);
    struct bz_setup_header h;
    memcpy(&h, zp + BZ_OFF_SETUP_HDR, sizeof(h));
    cr_assert_eq(h.cmd_line_ptr, LAYOUT_CMDLINE);
    cr_assert_eq(h.ramdisk_image, entry.initrd_start);
    cr_assert_eq(h.ramdisk_size, sizeof(initrd));
    cr_assert_eq(h.type_of_loader, 0xff);
    cr_assert_eq(zp[0x1e8], 4, "e820 entries");
    cr_assert_str_eq((const char *)gm_ptr(&gm, LAYOUT_CMDLINE, 14), "console=ttyS0");
    cr_assert_eq(memcmp(gm_ptr(&gm, entry.initrd_start, sizeof(initrd)), initrd,
                        sizeof(initrd)), 0);
    uint64_t pml4;
    memcpy(&pml4, gm_ptr(&gm, LAYOUT_PML4, 8), 8);
    cr_assert_eq(pml4, LAYOUT_PDPT | 3, "identity page tables");
    free(img);
}

Test(boot, pvh_start_info)
{
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_ELF, &len);
    struct boot_request req = {.kernel = image_mem(img, len), .cmdline = "pvh", .cpus = 1};
    struct boot_entry entry;
    cr_assert_eq(boot_load(&gm, &req, &entry), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(entry.mode, BOOT_ENTRY_PVH32);
    cr_assert_eq(entry.rip, 0x100000);
    const uint32_t *si = gm_ptr(&gm, LAYOUT_PVH_INFO, 56);
    cr_assert_eq(si[0], 0x336ec578u, "magic");
    cr_assert_eq(si[1], 1, "version");
    cr_assert_eq(si[3], 0, "no modules");
    free(img);
}

Test(boot, garbage_and_oversized_inputs)
{
    uint8_t junk[4096];
    memset(junk, 0x5a, sizeof(junk));
    struct boot_request req = {.kernel = image_mem(junk, sizeof(junk)), .cpus = 1};
    struct boot_entry entry;
    cr_assert_eq(boot_load(&gm, &req, &entry), KVMC_EFORMAT);
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_ELF, &len);
    static uint8_t huge_initrd[70u << 20];
    req = (struct boot_request){.kernel = image_mem(img, len),
                                .initrd = image_mem(huge_initrd, sizeof(huge_initrd)), .cpus = 1};
    cr_assert_eq(boot_load(&gm, &req, &entry), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "initrd"));
    free(img);
}

static const uint8_t *acpi_table(const char *sig)
{
    const uint8_t *rsdp = gm_ptr(&gm, LAYOUT_ACPI_START, 36);
    uint64_t xsdt_gpa;
    memcpy(&xsdt_gpa, rsdp + 24, 8);
    const uint8_t *xsdt = gm_ptr(&gm, xsdt_gpa, 36);
    uint32_t xlen;
    memcpy(&xlen, xsdt + 4, 4);
    for (uint32_t off = 36; off < xlen; off += 8) {
        uint64_t gpa;
        memcpy(&gpa, xsdt + off, 8);
        const uint8_t *t = gm_ptr(&gm, gpa, 36);
        if (memcmp(t, sig, 4) == 0)
            return t;
    }
    return NULL;
}

Test(boot, acpi_tables_are_consistent)
{
    uint64_t rsdp_gpa;
    const struct mmio_device_desc virtio[2] = {{0xc0000000, 0x1000, 16},
                                               {0xc0001000, 0x1000, 17}};
    cr_assert_eq(acpi_write_tables(&gm, 3, virtio, 2, NULL, false, &rsdp_gpa), KVMC_OK, "%s",
                 kvmc_last_error());
    cr_assert_eq(rsdp_gpa, LAYOUT_ACPI_START);
    const uint8_t *rsdp = gm_ptr(&gm, rsdp_gpa, 36);
    cr_assert_eq(memcmp(rsdp, "RSD PTR ", 8), 0);
    cr_assert_eq(sum(rsdp, 20), 0);
    cr_assert_eq(sum(rsdp, 36), 0);
    const uint8_t *fadt = acpi_table("FACP"), *madt = acpi_table("APIC");
    cr_assert_not_null(fadt);
    cr_assert_not_null(madt);
    uint32_t len, flags;
    memcpy(&len, fadt + 4, 4);
    cr_assert_eq(len, 276);
    cr_assert_eq(sum(fadt, len), 0);
    memcpy(&flags, fadt + 112, 4);
    cr_assert(flags & (1u << 20), "hardware-reduced ACPI");
    cr_assert(flags & (1u << 10), "reset register supported");
    cr_assert_eq(fadt[116], 1, "reset register in I/O space");
    cr_assert_eq(fadt[128], 0xfe, "reset value: i8042 pulse");
    uint64_t sleep_port, dsdt_gpa;
    memcpy(&sleep_port, fadt + 244 + 4, 8);
    cr_assert_eq(sleep_port, PORT_ACPI_SLEEP_CONTROL);
    memcpy(&dsdt_gpa, fadt + 140, 8);
    const uint8_t *dsdt = gm_ptr(&gm, dsdt_gpa, 36);
    memcpy(&len, dsdt + 4, 4);
    cr_assert_eq(memcmp(dsdt, "DSDT", 4), 0);
    cr_assert_eq(sum(dsdt, len), 0);
    cr_assert_not_null(memmem(dsdt, len, "_S5_", 4));
    cr_assert_not_null(memmem(dsdt, len, "QEMU0001", 8));
    const uint8_t io[] = {0x47, 0x01, 0x05, 0x05, 0x05, 0x05};
    cr_assert_not_null(memmem(dsdt, len, io, sizeof(io)), "pvpanic I/O port 0x505");
    const uint8_t com1[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00};
    cr_assert_not_null(memmem(dsdt, len, com1, sizeof(com1)), "COM1 at 0x3f8, IRQ 4");
    const uint8_t pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
    cr_assert_not_null(memmem(dsdt, len, pnp0501, sizeof(pnp0501)), "EISAID PNP0501");
    cr_assert_not_null(memmem(dsdt, len, "VR01", 4));
    cr_assert_not_null(memmem(dsdt, len, "LNRO0005", 8), "virtio-mmio _HID");
    const uint8_t vr1[] = {0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, 0x00, 0x10, 0x00,
                           0x00, 0x89, 0x06, 0x00, 0x03, 0x01, 17, 0, 0, 0};
    cr_assert_not_null(memmem(dsdt, len, vr1, sizeof(vr1)), "VR01: 0xc0001000, GSI 17");
    memcpy(&len, madt + 4, 4);
    cr_assert_eq(sum(madt, len), 0);
    memcpy(&flags, madt + 40, 4);
    cr_assert_eq(flags, 0u, "no 8259 with kvmc's I/O APIC: PCAT_COMPAT clear");
    cr_assert_eq(acpi_write_tables(&gm, 3, virtio, 2, NULL, true, &rsdp_gpa), KVMC_OK);
    madt = acpi_table("APIC");
    memcpy(&flags, madt + 40, 4);
    cr_assert_eq(flags, 1u, "the kernel's irqchip (--pit) has the 8259s: PCAT_COMPAT");
    unsigned cpus = 0, ioapics = 0, overrides = 0;
    for (uint32_t e = 44; e < len; e += madt[e + 1]) {
        cpus += madt[e] == 0;
        ioapics += madt[e] == 1;
        if (madt[e] == 2 && madt[e + 3] == 4) { /* COM1: edge, active high */
            uint16_t inti;
            memcpy(&inti, madt + e + 8, 2);
            cr_assert_eq(inti, 0x5);
        }
        overrides += madt[e] == 2;
    }
    cr_assert_eq(cpus, 3);
    cr_assert_eq(ioapics, 1);
    cr_assert_eq(overrides, 16);
    cr_assert(rsdp_gpa + 4096 <= LAYOUT_ACPI_END);
}

Test(boot, rsdp_handed_over_by_both_protocols)
{
    size_t len;
    uint8_t *img = load_file(KVMC_TEST_GUEST_BZIMAGE, &len);
    struct boot_request req = {.kernel = image_mem(img, len), .cpus = 1};
    struct boot_entry entry;
    cr_assert_eq(boot_load(&gm, &req, &entry), KVMC_OK);
    uint64_t rsdp;
    memcpy(&rsdp, gm_ptr(&gm, LAYOUT_ZERO_PAGE + 0x70, 8), 8);
    cr_assert_eq(rsdp, LAYOUT_ACPI_START, "boot_params.acpi_rsdp_addr");
    free(img);
    img = load_file(KVMC_TEST_GUEST_ELF, &len);
    req = (struct boot_request){.kernel = image_mem(img, len), .cpus = 1};
    cr_assert_eq(boot_load(&gm, &req, &entry), KVMC_OK);
    memcpy(&rsdp, gm_ptr(&gm, LAYOUT_PVH_INFO + 32, 8), 8);
    cr_assert_eq(rsdp, LAYOUT_ACPI_START, "hvm_start_info.rsdp_paddr");
    free(img);
}

/* The PCI root complex: ECAM reserved in E820, an MCFG entry for it, and a
 * PNP0A08 host bridge with its windows and an _OSC in the DSDT. */
Test(boot, a_pci_host_bridge_is_described)
{
    const struct pci_host_desc pci = {
        .present = true, .ecam_base = LAYOUT_PCI_ECAM, .ecam_size = LAYOUT_PCI_ECAM_SIZE,
        .mmio32_base = LAYOUT_PCI_MMIO32, .mmio32_size = LAYOUT_PCI_MMIO32_END - LAYOUT_PCI_MMIO32,
        .mmio64_base = 0x140000000ull, .mmio64_size = LAYOUT_PCI_MMIO64_SIZE,
        .io_base = LAYOUT_PCI_IO, .io_size = LAYOUT_PCI_IO_END - LAYOUT_PCI_IO,
    };
    struct e820_entry map[E820_MAX_ENTRIES];
    unsigned n = e820_build(&gm, &pci, map);
    bool ecam_reserved = false;
    for (unsigned i = 0; i < n; i++) {
        ecam_reserved |= map[i].addr == LAYOUT_PCI_ECAM && map[i].size == LAYOUT_PCI_ECAM_SIZE &&
                         map[i].type == E820_RESERVED;
        if (i)
            cr_assert_geq(map[i].addr, map[i - 1].addr + map[i - 1].size, "sorted, disjoint");
    }
    cr_assert(ecam_reserved);

    uint64_t rsdp_gpa;
    cr_assert_eq(acpi_write_tables(&gm, 2, NULL, 0, &pci, false, &rsdp_gpa), KVMC_OK, "%s",
                 kvmc_last_error());
    const uint8_t *mcfg = acpi_table("MCFG");
    cr_assert_not_null(mcfg);
    uint32_t len;
    uint64_t base;
    memcpy(&len, mcfg + 4, 4);
    cr_assert_eq(len, 60);
    cr_assert_eq(sum(mcfg, len), 0);
    memcpy(&base, mcfg + 44, 8);
    cr_assert_eq(base, LAYOUT_PCI_ECAM);
    cr_assert_eq(mcfg[54], 0, "segment 0");
    cr_assert_eq(mcfg[55], 0, "buses 0 to 0");

    const uint8_t *fadt = acpi_table("FACP");
    uint64_t dsdt_gpa;
    memcpy(&dsdt_gpa, fadt + 140, 8);
    const uint8_t *dsdt = gm_ptr(&gm, dsdt_gpa, 36);
    memcpy(&len, dsdt + 4, 4);
    cr_assert_eq(sum(dsdt, len), 0);
    const uint8_t pnp0a08[] = {0x0c, 0x41, 0xd0, 0x0a, 0x08};
    cr_assert_not_null(memmem(dsdt, len, pnp0a08, sizeof(pnp0a08)), "EISAID PNP0A08");
    cr_assert_not_null(memmem(dsdt, len, "PCI0", 4));
    const uint8_t osc[] = {'_', 'O', 'S', 'C', 0x04, 0xa4, 0x6b};
    cr_assert_not_null(memmem(dsdt, len, osc, sizeof(osc)), "_OSC returns Arg3");
    const uint8_t bus[] = {0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    cr_assert_not_null(memmem(dsdt, len, bus, sizeof(bus)), "bus 0 only");
    const uint8_t mem32[] = {0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0,
                             0x00, 0x00, 0x00, 0xc1, 0xff, 0xff, 0xff, 0xdf};
    cr_assert_not_null(memmem(dsdt, len, mem32, sizeof(mem32)), "0xc1000000-0xdfffffff");
    const uint8_t ports[] = {0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08};
    cr_assert_not_null(memmem(dsdt, len, ports, sizeof(ports)), "0xcf8-0xcff");
}
