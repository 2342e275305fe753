/* ACPI tables for a hardware-reduced machine: RSDP, XSDT, FADT, DSDT, MADT,
 * and MCFG when there is a PCI root complex.
 *
 * Why hardware-reduced: no PM timer, no GPE blocks, no SCI plumbing. The
 * guest powers off by writing SLP_TYP|SLP_EN to the FADT's sleep control
 * register (a port kvmc owns), resets through the FADT reset register (the
 * i8042 command port), learns its CPUs and I/O APIC from the MADT, and finds
 * COM1 and the pvpanic device in the DSDT. Everything goes to [LAYOUT_ACPI_START,
 * LAYOUT_ACPI_END), which E820 marks reserved. */
#include <stddef.h>
#include <string.h>

#include "../error.h"
#include "../x86/layout.h"
#include "boot.h"

#define ACPI_OEM_ID "KVMC  "
#define ACPI_OEM_TABLE_ID "KVMCVM  "
#define ACPI_CREATOR_ID "KVMC"
#define ACPI_AREA_SIZE (LAYOUT_ACPI_END - LAYOUT_ACPI_START)

struct __attribute__((packed)) acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem_id[6], oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
};

struct __attribute__((packed)) acpi_rsdp {
    char signature[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt_address, length;
    uint64_t xsdt_address;
    uint8_t extended_checksum, reserved[3];
};

struct __attribute__((packed)) acpi_gas { /* Generic Address Structure */
    uint8_t space_id, bit_width, bit_offset, access_size;
    uint64_t address;
};
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

struct __attribute__((packed)) acpi_fadt {
    struct acpi_header h;
    uint32_t firmware_ctrl, dsdt;
    uint8_t reserved0, preferred_pm_profile;
    uint16_t sci_int;
    uint32_t smi_cmd;
    uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
    uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
    uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
    uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
    uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
    uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
    uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
    uint16_t iapc_boot_arch;
    uint8_t reserved1;
    uint32_t flags;
    struct acpi_gas reset_reg;
    uint8_t reset_value;
    uint16_t arm_boot_arch;
    uint8_t minor_version;
    uint64_t x_firmware_ctrl, x_dsdt;
    struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
    struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
    struct acpi_gas sleep_control, sleep_status;
    uint64_t hypervisor_vendor;
};
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT revision 6 is 276 bytes");

#define FADT_WBINVD (1u << 0)
#define FADT_RESET_REG_SUP (1u << 10)
#define FADT_HW_REDUCED_ACPI (1u << 20)
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)
#define IAPC_8042 (1u << 1) /* an i8042 keyboard controller is there */
#define FADT_SCI_IRQ 9
#define PM_PROFILE_ENTERPRISE_SERVER 4

struct __attribute__((packed)) madt_lapic { uint8_t type, length, uid, apic_id; uint32_t flags; };
struct __attribute__((packed)) madt_ioapic {
    uint8_t type, length, id, reserved;
    uint32_t address, gsi_base;
};
struct __attribute__((packed)) madt_lapic_nmi { uint8_t type, length, uid; uint16_t flags; uint8_t lint; };
struct __attribute__((packed)) madt_iso { /* Interrupt Source Override */
    uint8_t type, length, bus, source;
    uint32_t gsi;
    uint16_t flags;
};
#define MADT_PCAT_COMPAT 1u
#define MADT_ISA_IRQS 16
/* MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2. */
#define INTI_EDGE_HIGH 0x5
#define INTI_LEVEL_HIGH 0xd

/* ------------------------------------------------------------ builder */

struct area {
    uint8_t *base;     /* host view of the ACPI area */
    uint64_t gpa;      /* its guest address */
    size_t used, size;
};

/* Reserves len bytes (16-byte aligned) and returns their offset. */
static int area_alloc(struct area *a, size_t len, size_t *offset)
{
    size_t at = (a->used + 15) & ~(size_t)15;
    if (at > a->size || len > a->size - at)
        return kvmc_fail(KVMC_EINVAL, "ACPI tables do not fit in 0x%llx bytes",
                         (unsigned long long)a->size);
    *offset = at;
    a->used = at + len;
    return KVMC_OK;
}

static void fill_header(struct acpi_header *h, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(h->signature, sig, 4);
    h->length = len;
    h->revision = rev;
    memcpy(h->oem_id, ACPI_OEM_ID, 6);
    memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
    h->oem_revision = 1;
    memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
    h->creator_revision = 1;
}

/* Copies a finished table into the area, fixing its checksum; returns gpa. */
static int place_table(struct area *a, void *table, uint64_t *gpa)
{
    struct acpi_header *h = table;
    size_t off = 0;
    int err = area_alloc(a, h->length, &off);
    if (err)
        return err;
    h->checksum = 0;
    h->checksum = boot_checksum(table, h->length);
    memcpy(a->base + off, table, h->length);
    *gpa = a->gpa + off;
    return KVMC_OK;
}

/* ------------------------------------------------------------------ AML */

struct aml {
    uint8_t buf[2048];
    size_t len;
    bool overflow;
};

static void aml_bytes(struct aml *m, const void *p, size_t n)
{
    if (m->len + n > sizeof(m->buf)) {
        m->overflow = true;
        return;
    }
    memcpy(m->buf + m->len, p, n);
    m->len += n;
}

static void aml_byte(struct aml *m, uint8_t b) { aml_bytes(m, &b, 1); }

/* Wraps body in opcode(s) + PkgLength: the encoded length counts itself. */
static void aml_package(struct aml *out, const uint8_t *op, size_t oplen,
                        const struct aml *body)
{
    aml_bytes(out, op, oplen);
    size_t total = body->len + 1;
    if (total <= 0x3f) {
        aml_byte(out, (uint8_t)total);
    } else {
        total = body->len + 2;
        aml_byte(out, (uint8_t)(0x40 | (total & 0xf)));
        aml_byte(out, (uint8_t)(total >> 4));
    }
    aml_bytes(out, body->buf, body->len);
    out->overflow |= body->overflow;
}

#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_STRING_PREFIX 0x0d
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_EXT_PREFIX 0x5b
#define AML_DEVICE_OP 0x82
#define AML_METHOD_OP 0x14
#define AML_RETURN_OP 0xa4
#define AML_ARG3_OP 0x6b
#define AML_ZERO_OP 0x00

/* Name(_S5_, Package() {5, 0, 0, 0}): the S5 (soft-off) sleep type. */
static void aml_s5(struct aml *m)
{
    struct aml pkg = {0};
    aml_byte(&pkg, 4); /* NumElements */
    aml_byte(&pkg, AML_BYTE_PREFIX);
    aml_byte(&pkg, ACPI_S5_SLEEP_TYPE);
    for (int i = 0; i < 3; i++)
        aml_byte(&pkg, 0x00); /* ZeroOp */
    aml_byte(m, AML_NAME_OP);
    aml_bytes(m, "_S5_", 4);
    const uint8_t op = AML_PACKAGE_OP;
    aml_package(m, &op, 1, &pkg);
}

/* Name(_CRS, ResourceTemplate() { ... }) from raw resource descriptors
 * (an end tag is appended). */
static void aml_crs(struct aml *dev, const uint8_t *resources, size_t len)
{
    struct aml buffer = {0};
    aml_byte(&buffer, AML_BYTE_PREFIX);
    aml_byte(&buffer, (uint8_t)(len + 2));
    aml_bytes(&buffer, resources, len);
    aml_byte(&buffer, 0x79); /* end tag, checksum 0 */
    aml_byte(&buffer, 0x00);
    aml_byte(dev, AML_NAME_OP);
    aml_bytes(dev, "_CRS", 4);
    const uint8_t buffer_op = AML_BUFFER_OP;
    aml_package(dev, &buffer_op, 1, &buffer);
}

/* Device(NAME) { body } appended to scope. */
static void aml_device(struct aml *scope, const struct aml *body)
{
    const uint8_t device_op[] = {AML_EXT_PREFIX, AML_DEVICE_OP};
    aml_package(scope, device_op, 2, body);
}

#define IO_DESCRIPTOR(port, len)                                                \
    0x47, 0x01, (port) & 0xff, (port) >> 8, (port) & 0xff, (port) >> 8, 0x01, (len)

/* COM1: Device(COM1) { Name(_HID, EisaId("PNP0501")) Name(_UID, One)
 *   Name(_CRS, ResourceTemplate() { IO(Decode16, 0x3f8, 0x3f8, 1, 8)
 *   IRQNoFlags() {4} }) }. Without a legacy PIC, Linux maps IRQ 4 to its
 * GSI only for a port it enumerates here. */
static void aml_com1(struct aml *scope)
{
    const uint8_t resources[] = {IO_DESCRIPTOR(0x3f8, 8), 0x22, 1u << 4, 0x00};
    const uint8_t pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01}; /* DWordPrefix EISAID */
    struct aml dev = {0};
    aml_bytes(&dev, "COM1", 4);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_HID", 4);
    aml_bytes(&dev, pnp0501, sizeof(pnp0501));
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_UID", 4);
    aml_byte(&dev, 0x01); /* OneOp */
    aml_crs(&dev, resources, sizeof(resources));
    aml_device(scope, &dev);
}

/* Device(PS2K) { Name(_HID, EisaId("PNP0303"))
 *   Name(_CRS, ResourceTemplate() { IO(Decode16, 0x60, 0x60, 1, 1)
 *   IO(Decode16, 0x64, 0x64, 1, 1) IRQNoFlags() {1} }) }: the keyboard
 * controller, which Linux looks for here before it probes the ports. */
static void aml_ps2k(struct aml *scope)
{
    const uint8_t resources[] = {IO_DESCRIPTOR(0x60, 1), IO_DESCRIPTOR(0x64, 1), 0x22,
                                 1u << 1, 0x00};
    const uint8_t pnp0303[] = {0x0c, 0x41, 0xd0, 0x03, 0x03}; /* DWordPrefix EISAID */
    struct aml dev = {0};
    aml_bytes(&dev, "PS2K", 4);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_HID", 4);
    aml_bytes(&dev, pnp0303, sizeof(pnp0303));
    aml_crs(&dev, resources, sizeof(resources));
    aml_device(scope, &dev);
}

/* Device(PEVT) { Name(_HID, "QEMU0001")
 *   Name(_CRS, ResourceTemplate() { IO(Decode16, 0x505, 0x505, 1, 1) }) } */
static void aml_pvpanic(struct aml *scope)
{
    const uint8_t resources[] = {IO_DESCRIPTOR(PORT_PVPANIC, 1)};
    struct aml dev = {0};
    aml_bytes(&dev, "PEVT", 4);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_HID", 4);
    aml_byte(&dev, AML_STRING_PREFIX);
    aml_bytes(&dev, "QEMU0001", 9);
    aml_crs(&dev, resources, sizeof(resources));
    aml_device(scope, &dev);
}

/* Device(VRnn) { Name(_HID, "LNRO0005") Name(_UID, n) Name(_CRS,
 *   ResourceTemplate() { Memory32Fixed(ReadWrite, base, size)
 *   Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi} }) } */
static void aml_virtio_mmio(struct aml *scope, unsigned n, const struct mmio_device_desc *d)
{
    const uint32_t base = (uint32_t)d->base, size = d->size, gsi = d->gsi;
    const uint8_t resources[] = {
        0x86, 0x09, 0x00, 0x01, /* Memory32Fixed, read-write */
        base & 0xff, (base >> 8) & 0xff, (base >> 16) & 0xff, base >> 24,
        size & 0xff, (size >> 8) & 0xff, (size >> 16) & 0xff, size >> 24,
        0x89, 0x06, 0x00, 0x03, 0x01, /* Extended IRQ: consumer, edge, high; 1 */
        gsi & 0xff, (gsi >> 8) & 0xff, (gsi >> 16) & 0xff, gsi >> 24,
    };
    const char name[4] = {'V', 'R', (char)('0' + n / 10), (char)('0' + n % 10)};
    struct aml dev = {0};
    aml_bytes(&dev, name, 4);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_HID", 4);
    aml_byte(&dev, AML_STRING_PREFIX);
    aml_bytes(&dev, "LNRO0005", 9);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_UID", 4);
    aml_byte(&dev, AML_BYTE_PREFIX);
    aml_byte(&dev, (uint8_t)n);
    aml_crs(&dev, resources, sizeof(resources));
    aml_device(scope, &dev);
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Address space descriptors of a host bridge's _CRS, all "ResourceProducer,
 * PosDecode, MinFixed, MaxFixed" windows (general flags 0x0c). */
static size_t word_space(uint8_t *p, uint8_t type, uint8_t type_flags, uint64_t min,
                         uint64_t len)
{
    p[0] = 0x88, p[1] = 0x0d, p[2] = 0, p[3] = type, p[4] = 0x0c, p[5] = type_flags;
    put_le(p + 6, 0, 2);
    put_le(p + 8, min, 2);
    put_le(p + 10, min + len - 1, 2);
    put_le(p + 12, 0, 2);
    put_le(p + 14, len, 2);
    return 16;
}

static size_t dword_memory(uint8_t *p, uint64_t min, uint64_t len)
{
    p[0] = 0x87, p[1] = 0x17, p[2] = 0, p[3] = 0, p[4] = 0x0c, p[5] = 0x01; /* RW, uncached */
    put_le(p + 6, 0, 4);
    put_le(p + 10, min, 4);
    put_le(p + 14, min + len - 1, 4);
    put_le(p + 18, 0, 4);
    put_le(p + 22, len, 4);
    return 26;
}

static size_t qword_memory(uint8_t *p, uint64_t min, uint64_t len)
{
    p[0] = 0x8a, p[1] = 0x2b, p[2] = 0, p[3] = 0, p[4] = 0x0c, p[5] = 0x01;
    put_le(p + 6, 0, 8);
    put_le(p + 14, min, 8);
    put_le(p + 22, min + len - 1, 8);
    put_le(p + 30, 0, 8);
    put_le(p + 38, len, 8);
    return 46;
}

/* Device(PCI0) { Name(_HID, EisaId("PNP0A08")) Name(_CID, EisaId("PNP0A03"))
 *   Name(_SEG, 0) Name(_BBN, 0) Name(_UID, 0)
 *   Name(_CRS, ResourceTemplate() { bus 0; IO 0xcf8-0xcff; the I/O, 32-bit
 *     and 64-bit memory windows })
 *   Method(_OSC, 4) { Return(Arg3) } }: everything the OS asks to control
 * (native PCIe, MSI) is granted. */
static void aml_pci_host(struct aml *scope, const struct pci_host_desc *pci)
{
    uint8_t res[128];
    size_t n = word_space(res, 2, 0, 0, 1); /* WordBusNumber 0-0 */
    const uint8_t ports[] = {IO_DESCRIPTOR(PORT_PCI_CONFIG, 8)};
    memcpy(res + n, ports, sizeof(ports));
    n += sizeof(ports);
    n += word_space(res + n, 1, 0x03, pci->io_base, pci->io_size); /* WordIO, EntireRange */
    n += dword_memory(res + n, pci->mmio32_base, pci->mmio32_size);
    n += qword_memory(res + n, pci->mmio64_base, pci->mmio64_size);
    const uint8_t pnp0a08[] = {0x0c, 0x41, 0xd0, 0x0a, 0x08}, pnp0a03[] = {0x0c, 0x41, 0xd0,
                                                                            0x0a, 0x03};
    struct aml dev = {0};
    aml_bytes(&dev, "PCI0", 4);
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_HID", 4);
    aml_bytes(&dev, pnp0a08, sizeof(pnp0a08));
    aml_byte(&dev, AML_NAME_OP);
    aml_bytes(&dev, "_CID", 4);
    aml_bytes(&dev, pnp0a03, sizeof(pnp0a03));
    static const char *const zero_names[] = {"_SEG", "_BBN", "_UID"};
    for (unsigned i = 0; i < 3; i++) {
        aml_byte(&dev, AML_NAME_OP);
        aml_bytes(&dev, zero_names[i], 4);
        aml_byte(&dev, AML_ZERO_OP);
    }
    aml_crs(&dev, res, n);
    struct aml osc = {0};
    aml_bytes(&osc, "_OSC", 4);
    aml_byte(&osc, 0x04); /* 4 arguments, not serialized */
    aml_byte(&osc, AML_RETURN_OP);
    aml_byte(&osc, AML_ARG3_OP);
    const uint8_t method_op = AML_METHOD_OP;
    aml_package(&dev, &method_op, 1, &osc);
    aml_device(scope, &dev);
}

/* Scope(\_SB) { the platform's devices } */
static void aml_system_bus(struct aml *m, const struct mmio_device_desc *virtio,
                           unsigned nvirtio, const struct pci_host_desc *pci)
{
    struct aml scope = {0};
    aml_bytes(&scope, "\\_SB_", 5);
    aml_com1(&scope);
    aml_ps2k(&scope);
    aml_pvpanic(&scope);
    for (unsigned i = 0; i < nvirtio; i++)
        aml_virtio_mmio(&scope, i, &virtio[i]);
    if (pci && pci->present)
        aml_pci_host(&scope, pci);
    const uint8_t scope_op = AML_SCOPE_OP;
    aml_package(m, &scope_op, 1, &scope);
}

/* ------------------------------------------------------------- tables */

static int write_dsdt(struct area *a, const struct mmio_device_desc *virtio,
                      unsigned nvirtio, const struct pci_host_desc *pci, uint64_t *gpa)
{
    struct aml body = {0};
    aml_s5(&body);
    aml_system_bus(&body, virtio, nvirtio, pci);
    if (body.overflow)
        return kvmc_fail(KVMC_EINVAL, "DSDT AML overflows its buffer");
    uint8_t table[sizeof(struct acpi_header) + sizeof(body.buf)];
    struct acpi_header *h = (struct acpi_header *)table;
    memset(h, 0, sizeof(*h));
    fill_header(h, "DSDT", (uint32_t)(sizeof(*h) + body.len), 2);
    memcpy(table + sizeof(*h), body.buf, body.len);
    return place_table(a, table, gpa);
}

static struct acpi_gas io_register(uint16_t port)
{
    return (struct acpi_gas){.space_id = GAS_SYSTEM_IO, .bit_width = 8,
                             .access_size = GAS_ACCESS_BYTE, .address = port};
}

static int write_fadt(struct area *a, uint64_t dsdt, uint64_t *gpa)
{
    struct acpi_fadt f;
    memset(&f, 0, sizeof(f));
    fill_header(&f.h, "FACP", sizeof(f), 6);
    f.dsdt = (uint32_t)dsdt;
    f.x_dsdt = dsdt;
    f.preferred_pm_profile = PM_PROFILE_ENTERPRISE_SERVER;
    f.sci_int = FADT_SCI_IRQ;
    f.iapc_boot_arch = IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT;
    f.flags = FADT_WBINVD | FADT_RESET_REG_SUP | FADT_HW_REDUCED_ACPI;
    f.reset_reg = io_register(PORT_I8042_COMMAND);
    f.reset_value = I8042_CMD_RESET;
    f.sleep_control = io_register(PORT_ACPI_SLEEP_CONTROL);
    f.sleep_status = io_register(PORT_ACPI_SLEEP_STATUS);
    memcpy(&f.hypervisor_vendor, "KVMC\0\0\0\0", 8);
    return place_table(a, &f, gpa);
}

static int write_madt(struct area *a, unsigned cpus, bool pic, uint64_t *gpa)
{
    uint8_t table[sizeof(struct acpi_header) + 8 + 255 * sizeof(struct madt_lapic) +
                  sizeof(struct madt_ioapic) + MADT_ISA_IRQS * sizeof(struct madt_iso) +
                  sizeof(struct madt_lapic_nmi)];
    if (cpus == 0 || cpus > 254)
        return kvmc_fail(KVMC_EINVAL, "MADT cannot describe %u CPUs", cpus);
    memset(table, 0, sizeof(table));
    size_t len = sizeof(struct acpi_header);
    uint32_t lapic_addr = (uint32_t)LAYOUT_LAPIC, flags = pic ? MADT_PCAT_COMPAT : 0;
    memcpy(table + len, &lapic_addr, 4);
    memcpy(table + len + 4, &flags, 4);
    len += 8;
    for (unsigned i = 0; i < cpus; i++) {
        struct madt_lapic l = {.type = 0, .length = sizeof(l), .uid = (uint8_t)i,
                               .apic_id = (uint8_t)i, .flags = 1};
        memcpy(table + len, &l, sizeof(l));
        len += sizeof(l);
    }
    struct madt_ioapic io = {.type = 1, .length = sizeof(io), .id = (uint8_t)cpus,
                             .address = (uint32_t)LAYOUT_IOAPIC, .gsi_base = 0};
    memcpy(table + len, &io, sizeof(io));
    len += sizeof(io);
    /* Without a legacy PIC (hardware-reduced ACPI) Linux takes GSIs without
     * an override as level/active-low. kvmc's ISA devices raise edges on
     * the identity-mapped pin, so say so for every ISA IRQ; the SCI is
     * level-triggered by ACPI convention. */
    for (uint8_t irq = 0; irq < MADT_ISA_IRQS; irq++) {
        struct madt_iso iso = {.type = 2, .length = sizeof(iso), .bus = 0, .source = irq,
                               .gsi = irq,
                               .flags = irq == FADT_SCI_IRQ ? INTI_LEVEL_HIGH : INTI_EDGE_HIGH};
        memcpy(table + len, &iso, sizeof(iso));
        len += sizeof(iso);
    }
    struct madt_lapic_nmi nmi = {.type = 4, .length = sizeof(nmi), .uid = 0xff, .lint = 1};
    memcpy(table + len, &nmi, sizeof(nmi));
    len += sizeof(nmi);
    fill_header((struct acpi_header *)table, "APIC", (uint32_t)len, 5);
    return place_table(a, table, gpa);
}

/* MCFG: where ECAM is, for segment 0, bus 0. */
static int write_mcfg(struct area *a, const struct pci_host_desc *pci, uint64_t *gpa)
{
    uint8_t table[sizeof(struct acpi_header) + 8 + 16];
    memset(table, 0, sizeof(table));
    uint8_t *e = table + sizeof(struct acpi_header) + 8;
    put_le(e, pci->ecam_base, 8); /* segment 0, buses 0 to 0 */
    fill_header((struct acpi_header *)table, "MCFG", sizeof(table), 1);
    return place_table(a, table, gpa);
}

static int write_xsdt(struct area *a, const uint64_t *entries, unsigned n, uint64_t *gpa)
{
    uint8_t table[sizeof(struct acpi_header) + 8 * 8];
    memset(table, 0, sizeof(table));
    memcpy(table + sizeof(struct acpi_header), entries, n * 8);
    fill_header((struct acpi_header *)table, "XSDT",
                (uint32_t)(sizeof(struct acpi_header) + n * 8), 1);
    return place_table(a, table, gpa);
}

int acpi_write_tables(struct guest_memory *gm, unsigned cpus,
                      const struct mmio_device_desc *virtio, unsigned nvirtio,
                      const struct pci_host_desc *pci, bool pic, uint64_t *rsdp_gpa)
{
    struct area a = {.base = gm_ptr(gm, LAYOUT_ACPI_START, ACPI_AREA_SIZE),
                     .gpa = LAYOUT_ACPI_START, .size = ACPI_AREA_SIZE};
    if (!a.base)
        return kvmc_fail(KVMC_EINVAL, "no guest RAM for the ACPI tables");
    memset(a.base, 0, a.size);
    size_t rsdp_off = 0;
    int err = area_alloc(&a, sizeof(struct acpi_rsdp), &rsdp_off);
    uint64_t dsdt, xsdt, entries[3];
    unsigned n = 0;
    if (err || (err = write_dsdt(&a, virtio, nvirtio, pci, &dsdt)) ||
        (err = write_fadt(&a, dsdt, &entries[n++])) ||
        (err = write_madt(&a, cpus, pic, &entries[n++])) ||
        (pci && pci->present && (err = write_mcfg(&a, pci, &entries[n++]))) ||
        (err = write_xsdt(&a, entries, n, &xsdt)))
        return err;
    struct acpi_rsdp rsdp;
    memset(&rsdp, 0, sizeof(rsdp));
    memcpy(rsdp.signature, "RSD PTR ", 8);
    memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
    rsdp.revision = 2;
    rsdp.length = sizeof(rsdp);
    rsdp.xsdt_address = xsdt;
    rsdp.checksum = boot_checksum(&rsdp, 20);
    rsdp.extended_checksum = boot_checksum(&rsdp, sizeof(rsdp));
    memcpy(a.base + rsdp_off, &rsdp, sizeof(rsdp));
    *rsdp_gpa = a.gpa + rsdp_off;
    return KVMC_OK;
}
