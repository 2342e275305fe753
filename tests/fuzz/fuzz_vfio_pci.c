/* libFuzzer: a passed-through device, hostile from both sides. The device's
 * own config space is the first 256 bytes of the input (a broken or
 * malicious device: capability lists that loop or point anywhere, MSI-X
 * tables outside its BARs, bridges), and the rest is a hostile guest:
 * config reads and writes through ECAM, BAR accesses wherever the guest put
 * BAR 0 (registers, the MSI-X table and PBA, past the end). The "device"
 * is a memfd laid out as VFIO regions; the services are fakes that check
 * what would reach KVM: MSI routes only to local APIC addresses, irqfds
 * only on routes, host mappings only page-aligned and outside RAM, each
 * taken away before the device goes.
 *
 * Input: [256 bytes of device config] then 8-byte operations
 *   [op] [a] [b] [size] [value: 4 bytes LE]
 *   op % 3: 0 ECAM write (register a | b << 8 & 0xff), 1 ECAM read,
 *           2 BAR 0 access (offset (a | b << 8) << 2 & 0x7fff, write if value
 *             bit 31) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "bus.h"
#include "guest_memory.h"
#include "pci/host.h"
#include "services.h"
#include "vfio/vfio_pci.h"
#include "x86/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BAR0_OFFSET 0x10000
#define BAR0_SIZE 0x8000
#define MAX_ROUTES 4096

struct shell {
    struct bus pio, mmio;
    struct guest_memory mem;
    struct vm_services svc;
    struct pci_host host;
    unsigned routes;
    bool routed[MAX_ROUTES];
    int maps;
};

static void no_irq(void *ctx, unsigned gsi, int level) { (void)ctx, (void)gsi, (void)level; }
static void no_pulse(void *ctx, unsigned gsi) { (void)ctx, (void)gsi; }
static int no_irqfd(void *ctx, int fd, unsigned gsi)
{
    (void)ctx, (void)fd, (void)gsi;
    return KVMC_ENOTSUP;
}
static int no_ioeventfd(void *ctx, uint64_t addr, unsigned len, uint64_t match, int fd, bool on)
{
    (void)ctx, (void)addr, (void)len, (void)match, (void)fd, (void)on;
    return KVMC_OK;
}
static int no_msi(void *ctx, uint64_t addr, uint32_t data)
{
    (void)ctx, (void)addr, (void)data;
    abort(); /* a VFIO device's interrupts never pass through kvmc */
}
static int checked_route(void *ctx, int *gsi, uint64_t address, uint32_t data)
{
    struct shell *sh = ctx;
    (void)data;
    if ((address >> 20) != 0xfee)
        abort(); /* a hostile address reached KVM's routing table */
    if (*gsi < 0) {
        if (sh->routes == MAX_ROUTES)
            return KVMC_ENOTSUP;
        *gsi = (int)sh->routes++;
    }
    sh->routed[*gsi] = true;
    return KVMC_OK;
}
static void free_route(void *ctx, unsigned gsi)
{
    struct shell *sh = ctx;
    if (gsi >= sh->routes || !sh->routed[gsi])
        abort();
    sh->routed[gsi] = false;
}
static int checked_irqfd(void *ctx, int fd, unsigned gsi, bool assign)
{
    struct shell *sh = ctx;
    (void)assign;
    if (fd < 0 || gsi >= sh->routes || !sh->routed[gsi])
        abort(); /* an irqfd on a GSI that is no route */
    return KVMC_OK;
}
static int checked_map(void *ctx, uint64_t gpa, uint64_t len, void *host, unsigned *slot)
{
    struct shell *sh = ctx;
    if (!len || ((gpa | len | (uintptr_t)host) & 4095) || gpa + len < gpa)
        abort();
    if (gpa < KVMC_MIN_MEMORY)
        return KVMC_EINVAL; /* over RAM: the VM refuses it, so does this */
    *slot = (unsigned)sh->maps++;
    return KVMC_OK;
}
static void checked_unmap(void *ctx, unsigned slot)
{
    struct shell *sh = ctx;
    (void)slot;
    if (sh->maps-- <= 0)
        abort();
}
static void no_exit(void *ctx, const kvmc_exit_info *info) { (void)ctx, (void)info; }

static int set_irqs(struct vfio_host_device *d, bool msix, const int *fds, unsigned count)
{
    (void)d;
    if (count > (msix ? 64u : 8u))
        abort(); /* more vectors than VFIO offers */
    for (unsigned i = 0; i < count; i++)
        if (fds[i] < 0)
            abort();
    return KVMC_OK;
}
static int reset(struct vfio_host_device *d)
{
    (void)d;
    return KVMC_OK;
}
static const struct vfio_device_io io = {.set_irqs = set_irqs, .reset = reset};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < PCI_CFG_SIZE)
        return 0;
    struct shell *sh = calloc(1, sizeof(*sh));
    if (!sh || bus_init(&sh->pio, "PIO", 0) || bus_init(&sh->mmio, "MMIO", 0) ||
        gm_init(&sh->mem, KVMC_MIN_MEMORY, 0))
        abort();
    sh->svc = (struct vm_services){
        .mem = &sh->mem, .pio = &sh->pio, .mmio = &sh->mmio, .set_irq = no_irq,
        .pulse_irq = no_pulse, .irqfd = no_irqfd, .ioeventfd = no_ioeventfd,
        .signal_msi = no_msi, .msi_route = checked_route, .msi_route_free = free_route,
        .msi_irqfd = checked_irqfd, .map_host = checked_map, .unmap_host = checked_unmap,
        .request_exit = no_exit, .ctx = sh,
    };
    if (pci_host_create(&sh->host, &sh->svc, KVMC_MIN_MEMORY))
        abort();
    int fd = memfd_create("fuzz-vfio", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, BAR0_OFFSET + BAR0_SIZE) ||
        pwrite(fd, data, PCI_CFG_SIZE, 0) != PCI_CFG_SIZE)
        abort();
    struct vfio_host_device d = {.bdf = "0000:00:03.0", .fd = fd, .msix_count = 64,
                                 .msi_count = 8, .io = &io};
    d.regions[0] = (struct vfio_region){BAR0_OFFSET, BAR0_SIZE, VFIO_REGION_INFO_FLAG_READ |
                                        VFIO_REGION_INFO_FLAG_WRITE |
                                        VFIO_REGION_INFO_FLAG_MMAP};
    d.regions[2] = (struct vfio_region){BAR0_OFFSET, 0x100, 3}; /* an I/O BAR, say */
    d.regions[VFIO_REGION_CONFIG] = (struct vfio_region){0, PCI_CFG_SIZE, 3};
    struct vfio_pci *v = NULL;
    if (vfio_pci_create(&sh->host, &d, &v) == KVMC_OK) {
        unsigned slot = v->pci.slot;
        for (size_t at = PCI_CFG_SIZE; at + 8 <= size; at += 8) {
            const uint8_t *op = data + at;
            unsigned width = 1u << (op[3] % 4);
            uint32_t value;
            memcpy(&value, op + 4, 4);
            uint64_t got;
            uint64_t ecam = LAYOUT_PCI_ECAM + ((uint64_t)slot << 15) + op[1];
            switch (op[0] % 3) {
            case 0: bus_write(&sh->mmio, BUS_NO_READER, ecam, width, value); break;
            case 1: bus_read(&sh->mmio, BUS_NO_READER, ecam, width, &got); break;
            default:
                if (v->pci.bars[0].mapped) {
                    uint64_t addr = v->pci.bars[0].at +
                                    ((((uint64_t)op[1] | (uint64_t)op[2] << 8) << 2) & 0x7fff);
                    if (value >> 31)
                        bus_write(&sh->mmio, BUS_NO_READER, addr, width, value);
                    else
                        bus_read(&sh->mmio, BUS_NO_READER, addr, width, &got);
                }
                break;
            }
        }
        pci_host_unplug(&sh->host, &v->pci);
        vfio_pci_destroy(v);
        if (sh->maps != 0)
            abort(); /* a host mapping outlived the device */
        for (unsigned i = 0; i < sh->routes; i++)
            if (sh->routed[i])
                abort(); /* a route outlived it */
    }
    pci_host_destroy(&sh->host);
    gm_destroy(&sh->mem);
    bus_destroy(&sh->pio);
    bus_destroy(&sh->mmio);
    free(sh);
    return 0;
}
