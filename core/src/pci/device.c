/* A PCI function's type 0 header: writable bits, BAR sizing and placement,
 * the capability list. */
#include <stdio.h>
#include <string.h>

#include "../error.h"
#include "../services.h"
#include "msix.h"
#include "pci.h"

#define BAR_MEM_TYPE_64 0x4
#define BAR_MEM_PREFETCH 0x8
#define BAR_IO_SPACE 0x1
#define FIRST_CAP 0x40

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor,
                     uint16_t device, uint32_t class_code, uint8_t revision)
{
    memset(d, 0, sizeof(*d));
    d->name = name;
    pci_set16(d, PCI_VENDOR_ID, vendor);
    pci_set16(d, PCI_DEVICE_ID, device);
    d->cfg[PCI_REVISION_ID] = revision;
    d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
    d->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
    d->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
    d->cfg[PCI_HEADER_TYPE] = 0; /* type 0, single function */
    /* Command: I/O, memory, bus master, INTx disable. */
    d->wmask[PCI_COMMAND] = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    d->wmask[PCI_COMMAND + 1] = PCI_COMMAND_INTX_DISABLE >> 8;
    d->wmask[0x0c] = 0xff; /* cache line size */
    d->wmask[0x0d] = 0xff; /* latency timer */
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    d->next_cap = FIRST_CAP;
}

void pci_device_set_subsystem(struct pci_device *d, uint16_t vendor, uint16_t id)
{
    pci_set16(d, PCI_SUBSYSTEM_VENDOR_ID, vendor);
    pci_set16(d, PCI_SUBSYSTEM_ID, id);
}

static bool power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

int pci_device_add_bar(struct pci_device *d, unsigned i, enum pci_bar_kind kind,
                       bool prefetchable, uint64_t size, const struct bus_ops *ops,
                       void *opaque)
{
    if (i >= PCI_NUM_BARS || d->bars[i].kind != PCI_BAR_UNUSED || kind == PCI_BAR_UNUSED ||
        kind == PCI_BAR_MEM64_HIGH ||
        (kind == PCI_BAR_MEM64 && (i == PCI_NUM_BARS - 1 || d->bars[i + 1].kind)))
        return kvmc_fail(KVMC_EINVAL, "%s: BAR %u is taken or out of range", d->name, i);
    uint64_t max = kind == PCI_BAR_MEM64 ? 1ull << 40 : kind == PCI_BAR_IO ? 256 : 1ull << 31;
    uint64_t min = kind == PCI_BAR_IO ? 4 : 16;
    if (!power_of_two(size) || size < min || size > max)
        return kvmc_fail(KVMC_EINVAL, "%s: BAR %u size 0x%llx must be a power of two from "
                         "0x%llx to 0x%llx", d->name, i, (unsigned long long)size,
                         (unsigned long long)min, (unsigned long long)max);
    struct pci_bar *b = &d->bars[i];
    *b = (struct pci_bar){.kind = kind, .prefetchable = prefetchable, .size = size,
                          .ops = ops ? *ops : (struct bus_ops){0}, .opaque = opaque,
                          .name = d->name};
    unsigned off = PCI_BAR0 + 4 * i;
    uint64_t mask = ~(size - 1);
    uint32_t low_type = kind == PCI_BAR_IO ? BAR_IO_SPACE
                        : (kind == PCI_BAR_MEM64 ? BAR_MEM_TYPE_64 : 0) |
                              (prefetchable ? BAR_MEM_PREFETCH : 0);
    pci_set32(d, off, low_type);
    uint32_t low_mask = (uint32_t)mask & (kind == PCI_BAR_IO ? ~0x3u : ~0xfu);
    if (kind == PCI_BAR_IO)
        low_mask &= 0xffff;
    for (unsigned k = 0; k < 4; k++)
        d->wmask[off + k] = (uint8_t)(low_mask >> (8 * k));
    if (kind == PCI_BAR_MEM64) {
        d->bars[i + 1].kind = PCI_BAR_MEM64_HIGH;
        for (unsigned k = 0; k < 4; k++)
            d->wmask[off + 4 + k] = (uint8_t)((mask >> 32) >> (8 * k));
    }
    return KVMC_OK;
}

unsigned pci_device_add_cap(struct pci_device *d, uint8_t id, unsigned len)
{
    unsigned off = d->next_cap;
    if (len < 2 || off + len > PCI_CFG_SIZE)
        return 0;
    d->cfg[off] = id;
    d->cfg[off + 1] = 0;
    if (d->last_cap)
        d->cfg[d->last_cap + 1] = (uint8_t)off;
    else
        d->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
    d->last_cap = (uint8_t)off;
    d->next_cap = (uint8_t)((off + len + 3) & ~3u);
    pci_set16(d, PCI_STATUS, pci_cfg16(d, PCI_STATUS) | PCI_STATUS_CAP_LIST);
    return off;
}

uint64_t pci_bar_address(const struct pci_device *d, unsigned i)
{
    const struct pci_bar *b = &d->bars[i];
    uint32_t low = pci_cfg32(d, PCI_BAR0 + 4 * i);
    switch (b->kind) {
    case PCI_BAR_IO: return low & 0xfffcu;
    case PCI_BAR_MEM32: return low & ~0xfu;
    case PCI_BAR_MEM64:
        return (low & ~0xfull) | (uint64_t)pci_cfg32(d, PCI_BAR0 + 4 * i + 4) << 32;
    default: return 0;
    }
}

void pci_bar_set_address(struct pci_device *d, unsigned i, uint64_t addr)
{
    unsigned off = PCI_BAR0 + 4 * i;
    uint32_t type = pci_cfg32(d, off) & (d->bars[i].kind == PCI_BAR_IO ? 0x3u : 0xfu);
    pci_set32(d, off, ((uint32_t)addr & ~(d->bars[i].kind == PCI_BAR_IO ? 0x3u : 0xfu)) | type);
    if (d->bars[i].kind == PCI_BAR_MEM64)
        pci_set32(d, off + 4, (uint32_t)(addr >> 32));
}

/* ------------------------------------------------------- BAR placement */

static struct bus *bar_bus(const struct pci_device *d, const struct pci_bar *b)
{
    return b->kind == PCI_BAR_IO ? d->svc->pio : d->svc->mmio;
}

static void unmap_bar(struct pci_device *d, unsigned i)
{
    struct pci_bar *b = &d->bars[i];
    if (!b->mapped)
        return;
    bus_remove(bar_bus(d, b), b->at);
    b->mapped = false;
    if (d->ops && d->ops->bar_moved)
        d->ops->bar_moved(d, i, false, 0);
}

static void refuse(struct pci_device *d, unsigned i, uint64_t addr)
{
    struct pci_bar *b = &d->bars[i];
    if (!b->refused)
        fprintf(stderr, "kvmc: PCI %s: BAR %u at 0x%llx: %s; it stays off the bus\n", d->name,
                i, (unsigned long long)addr, kvmc_last_error());
    b->refused = true;
}

/* Puts BAR i where config space says, if decoding is on and the place is
 * free; off the bus otherwise. */
static void place_bar(struct pci_device *d, unsigned i)
{
    struct pci_bar *b = &d->bars[i];
    uint16_t cmd = pci_cfg16(d, PCI_COMMAND);
    bool decode = b->kind == PCI_BAR_IO ? (cmd & PCI_COMMAND_IO) : (cmd & PCI_COMMAND_MEMORY);
    uint64_t addr = pci_bar_address(d, i);
    bool wanted = decode && addr != 0 && addr + b->size > addr &&
                  (b->kind != PCI_BAR_IO || addr + b->size <= 0x10000);
    if (!wanted) {
        unmap_bar(d, i);
        return;
    }
    if (b->mapped && b->at == addr)
        return;
    struct bus *bus = bar_bus(d, b);
    int err = b->mapped ? bus_move(bus, b->at, addr)
                        : bus_add(bus, addr, b->size, &b->ops, b->opaque, b->name);
    if (err) {
        unmap_bar(d, i);
        refuse(d, i, addr);
        return;
    }
    b->mapped = true;
    b->at = addr;
    b->refused = false;
    if (d->ops && d->ops->bar_moved)
        d->ops->bar_moved(d, i, true, addr);
}

static void place_bars(struct pci_device *d)
{
    for (unsigned i = 0; i < PCI_NUM_BARS; i++)
        if (d->bars[i].kind != PCI_BAR_UNUSED && d->bars[i].kind != PCI_BAR_MEM64_HIGH)
            place_bar(d, i);
}

void pci_device_unmap(struct pci_device *d)
{
    for (unsigned i = 0; i < PCI_NUM_BARS; i++)
        unmap_bar(d, i);
}

void pci_device_save_config(const struct pci_device *d, uint8_t cfg[PCI_CFG_SIZE])
{
    memcpy(cfg, d->cfg, PCI_CFG_SIZE);
}

void pci_device_restore_config(struct pci_device *d, const uint8_t cfg[PCI_CFG_SIZE])
{
    pci_device_unmap(d); /* no BAR is placed at a half-written address */
    for (unsigned k = 0; k < PCI_CFG_SIZE; k++)
        d->cfg[k] = (uint8_t)((d->cfg[k] & ~d->wmask[k]) | (cfg[k] & d->wmask[k]));
    place_bars(d);
    if (d->msix)
        pci_msix_config_written(d->msix, d->msix->cap, 4);
}

/* ------------------------------------------------------- config access */

uint32_t pci_config_read(struct pci_device *d, unsigned offset, unsigned size)
{
    if (d->ops && d->ops->config_reading && offset >= FIRST_CAP)
        d->ops->config_reading(d, offset, size);
    uint32_t v = 0;
    for (unsigned k = 0; k < size; k++)
        v |= (uint32_t)d->cfg[offset + k] << (8 * k);
    return v;
}

static bool overlaps(unsigned off, unsigned size, unsigned start, unsigned end)
{
    return off < end && start < off + size;
}

void pci_config_write(struct pci_device *d, unsigned offset, unsigned size, uint32_t value)
{
    for (unsigned k = 0; k < size; k++) {
        uint8_t m = d->wmask[offset + k], v = (uint8_t)(value >> (8 * k));
        d->cfg[offset + k] = (uint8_t)((d->cfg[offset + k] & ~m) | (v & m));
    }
    if (overlaps(offset, size, PCI_COMMAND, PCI_COMMAND + 2) ||
        overlaps(offset, size, PCI_BAR0, PCI_BAR0 + 4 * PCI_NUM_BARS))
        place_bars(d);
    if (offset >= FIRST_CAP && d->msix)
        pci_msix_config_written(d->msix, offset, size);
    if (d->ops && d->ops->config_written)
        d->ops->config_written(d, offset, size);
}
