/* The x86 guest physical address layout kvmc builds. One place, so the boot
 * code, the devices and the tests agree. */
#ifndef KVMC_LAYOUT_H
#define KVMC_LAYOUT_H

#define LAYOUT_BOOT_GDT 0x500ull       /* GDT used at entry (5 entries) */
#define LAYOUT_BOOT_IDT 0x540ull       /* empty IDT used at entry */
#define LAYOUT_PVH_INFO 0x6000ull      /* hvm_start_info, modules, memmap */
#define LAYOUT_ZERO_PAGE 0x7000ull     /* Linux boot_params */
#define LAYOUT_PML4 0x9000ull          /* identity-map page tables: PML4, */
#define LAYOUT_PDPT 0xa000ull          /* PDPT, then 4 PDs mapping 4 GiB */
#define LAYOUT_PD 0xb000ull
#define LAYOUT_CMDLINE 0x20000ull
#define LAYOUT_CMDLINE_MAX 0x10000ull  /* bytes reserved for the command line */
#define LAYOUT_EBDA 0x9fc00ull         /* MP floating pointer, reserved in E820 */
#define LAYOUT_LOW_RAM_END 0xa0000ull  /* VGA hole / BIOS area above */
#define LAYOUT_BIOS_START 0xe0000ull  /* reserved to 1 MiB: ACPI tables */
#define LAYOUT_ACPI_START 0xe0000ull  /* RSDP first, where Linux scans */
#define LAYOUT_ACPI_END 0xf0000ull
#define LAYOUT_MPTABLE 0xf0000ull     /* MP configuration table, to 1 MiB */
#define LAYOUT_HIMEM 0x100000ull       /* kernels load here */
#define LAYOUT_HOLE_START 0xc0000000ull/* 32-bit PCI/MMIO hole, to 4 GiB */
#define LAYOUT_HOLE_END 0x100000000ull
#define LAYOUT_VIRTIO_MMIO 0xc0000000ull /* virtio-mmio windows, 4 KiB each */
#define LAYOUT_VIRTIO_MMIO_STRIDE 0x1000ull
#define LAYOUT_VIRTIO_GSI 16           /* first GSI of virtio devices (to 23) */
#define LAYOUT_PCI_MMIO32 0xc1000000ull  /* PCI BARs below 4 GiB, to the ECAM */
#define LAYOUT_PCI_MMIO32_END 0xe0000000ull
#define LAYOUT_PCI_ECAM 0xe0000000ull  /* PCIe config space, bus 0 only */
#define LAYOUT_PCI_ECAM_SIZE 0x100000ull
#define LAYOUT_PCI_MMIO64_SIZE (64ull << 30) /* PCI BARs above RAM and 4 GiB */
#define LAYOUT_PCI_IO 0xc000u          /* PCI I/O BARs, to 0xffff */
#define LAYOUT_PCI_IO_END 0x10000u
#define PORT_PCI_CONFIG 0xcf8          /* CONFIG_ADDRESS; CONFIG_DATA at 0xcfc */
#define LAYOUT_IOAPIC 0xfec00000ull
#define LAYOUT_LAPIC 0xfee00000ull

/* Port I/O of the built-in platform devices. */
#define PORT_ACPI_SLEEP_CONTROL 0xb000 /* FADT SLEEP_CONTROL_REG */
#define PORT_ACPI_SLEEP_STATUS 0xb001  /* FADT SLEEP_STATUS_REG */
#define PORT_PVPANIC 0x505             /* QEMU0001 pvpanic */
#define PORT_DEBUG_EXIT 0x501
#define PORT_I8042_COMMAND 0x64
#define I8042_CMD_RESET 0xfe
#define ACPI_S5_SLEEP_TYPE 5

#endif
