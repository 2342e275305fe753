/* Intel MultiProcessor Specification 1.4 table: how an SMP guest without
 * ACPI learns its CPUs, the I/O APIC and the ISA interrupt wiring. */
#include <stddef.h>
#include <string.h>

#include "../error.h"
#include "../x86/layout.h"
#include "boot.h"

#define MP_APIC_VERSION 0x14
#define MP_IOAPIC_VERSION 0x11
#define MP_CPU_ENABLED 0x1
#define MP_CPU_BSP 0x2
#define MP_IRQ_INT 0
#define MP_IRQ_NMI 1
#define MP_IRQ_EXTINT 3
#define MP_ISA_IRQS 16

struct __attribute__((packed)) mpf_intel {
    char signature[4];
    uint32_t physptr;
    uint8_t length, specification, checksum, feature1;
    uint8_t feature2, feature3, feature4, feature5;
};

struct __attribute__((packed)) mpc_table {
    char signature[4];
    uint16_t length;
    uint8_t spec, checksum;
    char oem[8], productid[12];
    uint32_t oemptr;
    uint16_t oemsize, oemcount;
    uint32_t lapic;
    uint16_t ext_length;
    uint8_t ext_checksum, reserved;
};

struct __attribute__((packed)) mpc_cpu {
    uint8_t type, apicid, apicver, cpuflag;
    uint32_t cpufeature, featureflag, reserved[2];
};

struct __attribute__((packed)) mpc_bus {
    uint8_t type, busid;
    char bustype[6];
};

struct __attribute__((packed)) mpc_ioapic {
    uint8_t type, apicid, apicver, flags;
    uint32_t apicaddr;
};

struct __attribute__((packed)) mpc_intsrc {
    uint8_t type, irqtype;
    uint16_t irqflag;
    uint8_t srcbus, srcbusirq, dstapic, dstirq;
};

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };

/* Appends one entry to the table being built at `cursor`. */
#define APPEND(cursor, entry)                                                  \
    do {                                                                       \
        memcpy(cursor, &(entry), sizeof(entry));                               \
        cursor += sizeof(entry);                                               \
    } while (0)

/* The floating pointer goes into the EBDA, where guests scan for it; the
 * table it points to goes to the reserved BIOS area below 1 MiB, which has
 * room for every CPU kvmc supports (the EBDA's 1 KiB held 40). */
int mptable_write(struct guest_memory *gm, unsigned cpus)
{
    const size_t room = LAYOUT_HIMEM - LAYOUT_MPTABLE;
    size_t size = sizeof(struct mpc_table) + cpus * sizeof(struct mpc_cpu) +
                  sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
                  (MP_ISA_IRQS + 2) * sizeof(struct mpc_intsrc);
    /* APIC IDs are 8 bits and the I/O APIC takes the ID after the CPUs. */
    if (cpus == 0 || cpus > 254 || size > room)
        return kvmc_fail(KVMC_EINVAL, "MP table cannot describe %u CPUs", cpus);
    uint8_t *table = gm_ptr(gm, LAYOUT_MPTABLE, size);
    uint8_t *floating = gm_ptr(gm, LAYOUT_EBDA, sizeof(struct mpf_intel));
    if (!table || !floating)
        return kvmc_fail(KVMC_EINVAL, "no guest RAM for the MP table");
    memset(table, 0, size);
    uint8_t *cursor = table + sizeof(struct mpc_table);
    for (unsigned i = 0; i < cpus; i++) {
        struct mpc_cpu cpu = {
            .type = MP_PROCESSOR, .apicid = (uint8_t)i, .apicver = MP_APIC_VERSION,
            .cpuflag = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
            .cpufeature = 0x600, .featureflag = 0x201, /* FPU, APIC */
        };
        APPEND(cursor, cpu);
    }
    struct mpc_bus bus = {.type = MP_BUS, .busid = 0, .bustype = "ISA   "};
    APPEND(cursor, bus);
    const uint8_t ioapic_id = (uint8_t)cpus;
    struct mpc_ioapic ioapic = {.type = MP_IOAPIC, .apicid = ioapic_id,
                                .apicver = MP_IOAPIC_VERSION, .flags = 1,
                                .apicaddr = (uint32_t)LAYOUT_IOAPIC};
    APPEND(cursor, ioapic);
    for (uint8_t irq = 0; irq < MP_ISA_IRQS; irq++) {
        struct mpc_intsrc src = {.type = MP_INTSRC, .irqtype = MP_IRQ_INT,
                                 .srcbus = 0, .srcbusirq = irq,
                                 .dstapic = ioapic_id, .dstirq = irq};
        APPEND(cursor, src);
    }
    struct mpc_intsrc lint0 = {.type = MP_LINTSRC, .irqtype = MP_IRQ_EXTINT,
                               .dstapic = 0xff, .dstirq = 0};
    struct mpc_intsrc lint1 = {.type = MP_LINTSRC, .irqtype = MP_IRQ_NMI,
                               .dstapic = 0xff, .dstirq = 1};
    APPEND(cursor, lint0);
    APPEND(cursor, lint1);

    struct mpc_table hdr = {
        .signature = "PCMP", .length = (uint16_t)(cursor - table), .spec = 4,
        .oem = "KVMC    ", .productid = "KVMC-VM     ",
        .oemcount = (uint16_t)(cpus + 1 + 1 + MP_ISA_IRQS + 2),
        .lapic = (uint32_t)LAYOUT_LAPIC,
    };
    memcpy(table, &hdr, sizeof(hdr));
    table[offsetof(struct mpc_table, checksum)] = boot_checksum(table, hdr.length);

    struct mpf_intel mpf = {.signature = "_MP_", .physptr = (uint32_t)LAYOUT_MPTABLE,
                            .length = 1, .specification = 4};
    mpf.checksum = boot_checksum(&mpf, sizeof(mpf));
    memcpy(floating, &mpf, sizeof(mpf));
    return KVMC_OK;
}
