#include "host.h"

#include <string.h>

#include "../error.h"
#include "../services.h"
#include "../x86/layout.h"

/* 1b36:0008, the PCIe host bridge ID Linux knows from QEMU's q35. */
#define HOST_BRIDGE_VENDOR 0x1b36
#define HOST_BRIDGE_DEVICE 0x0008
#define CLASS_HOST_BRIDGE 0x060000
#define CONFIG_ENABLE 0x80000000u
#define MMIO32_SMALL_BAR (64ull << 20) /* larger 64-bit BARs go above 4 GiB */

/* ------------------------------------------------------- config access */

static struct pci_device *lookup(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn)
{
    if (bus != 0 || fn != 0 || dev >= PCI_MAX_DEVICES)
        return NULL;
    return dev == 0 ? &h->bridge : h->slots[dev];
}

/* Only naturally aligned accesses within one dword reach a device. */
static bool well_formed(unsigned reg, unsigned size)
{
    return (size == 1 || size == 2 || size == 4) && (reg & (size - 1)) == 0;
}

static uint32_t all_ones(unsigned size) { return size == 4 ? ~0u : (1u << (8 * size)) - 1; }

uint32_t pci_host_config_read(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
                              unsigned reg, unsigned size)
{
    struct pci_device *d = lookup(h, bus, dev, fn);
    if (!d || !well_formed(reg, size))
        return all_ones(size == 1 || size == 2 ? size : 4);
    if (reg >= PCI_CFG_SIZE)
        return 0; /* extended space: no extended capabilities */
    return pci_config_read(d, reg, size);
}

void pci_host_config_write(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
                           unsigned reg, unsigned size, uint32_t value)
{
    struct pci_device *d = lookup(h, bus, dev, fn);
    if (d && well_formed(reg, size) && reg < PCI_CFG_SIZE)
        pci_config_write(d, reg, size, value);
}

/* ECAM: bus 0, offset = device << 15 | function << 12 | register. */
static uint64_t ecam_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_host *h = opaque;
    pthread_mutex_lock(&h->lock);
    uint32_t v = pci_host_config_read(h, 0, (offset >> 15) & 0x1f, (offset >> 12) & 7,
                                      offset & 0xfff, size);
    pthread_mutex_unlock(&h->lock);
    return v;
}

static void ecam_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_host *h = opaque;
    pthread_mutex_lock(&h->lock);
    pci_host_config_write(h, 0, (offset >> 15) & 0x1f, (offset >> 12) & 7, offset & 0xfff,
                          size, (uint32_t)value);
    pthread_mutex_unlock(&h->lock);
}

/* 0xcf8: CONFIG_ADDRESS (32-bit accesses only); 0xcfc-0xcff: CONFIG_DATA
 * for the register it selects. */
static bool port_target(const struct pci_host *h, uint64_t offset, unsigned size,
                        unsigned *bus, unsigned *dev, unsigned *fn, unsigned *reg)
{
    uint32_t a = h->config_address;
    if (!(a & CONFIG_ENABLE) || offset < 4 || (offset - 4) + size > 4)
        return false;
    *bus = (a >> 16) & 0xff;
    *dev = (a >> 11) & 0x1f;
    *fn = (a >> 8) & 7;
    *reg = (a & 0xfc) + (unsigned)(offset - 4);
    return true;
}

static uint64_t ports_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_host *h = opaque;
    pthread_mutex_lock(&h->lock);
    uint32_t v = all_ones(size == 1 || size == 2 ? size : 4);
    unsigned bus, dev, fn, reg;
    if (offset == 0 && size == 4)
        v = h->config_address;
    else if (port_target(h, offset, size, &bus, &dev, &fn, &reg))
        v = pci_host_config_read(h, bus, dev, fn, reg, size);
    pthread_mutex_unlock(&h->lock);
    return v;
}

static void ports_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_host *h = opaque;
    pthread_mutex_lock(&h->lock);
    unsigned bus, dev, fn, reg;
    if (offset == 0 && size == 4)
        h->config_address = (uint32_t)value & 0x80fffffcu;
    else if (port_target(h, offset, size, &bus, &dev, &fn, &reg))
        pci_host_config_write(h, bus, dev, fn, reg, size, (uint32_t)value);
    pthread_mutex_unlock(&h->lock);
}

/* ------------------------------------------------------------- set-up */

int pci_host_create(struct pci_host *h, const struct vm_services *svc, uint64_t ram_top)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    h->svc = svc;
    h->created = true;
    h->mmio32_next = LAYOUT_PCI_MMIO32;
    uint64_t top = ram_top > LAYOUT_HOLE_END ? ram_top : LAYOUT_HOLE_END;
    h->mmio64_base = h->mmio64_next = (top + (1ull << 30) - 1) & ~((1ull << 30) - 1);
    h->io_next = LAYOUT_PCI_IO;
    pci_device_init(&h->bridge, "PCIe host bridge", HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE,
                    CLASS_HOST_BRIDGE, 0);
    h->bridge.svc = svc;
    static const struct bus_ops ecam = {.read = ecam_read, .write = ecam_write};
    static const struct bus_ops ports = {.read = ports_read, .write = ports_write};
    int err = bus_add(svc->mmio, LAYOUT_PCI_ECAM, LAYOUT_PCI_ECAM_SIZE, &ecam, h, "PCI ECAM");
    return err ? err : bus_add(svc->pio, PORT_PCI_CONFIG, 8, &ports, h, "PCI config ports");
}

void pci_host_destroy(struct pci_host *h)
{
    if (!h->created)
        return;
    for (unsigned i = 1; i < PCI_MAX_DEVICES; i++)
        if (h->slots[i])
            pci_device_unmap(h->slots[i]);
    bus_remove(h->svc->mmio, LAYOUT_PCI_ECAM);
    bus_remove(h->svc->pio, PORT_PCI_CONFIG);
    pthread_mutex_destroy(&h->lock);
    h->created = false;
}

static bool take(uint64_t *next, uint64_t end, uint64_t size, uint64_t *at)
{
    uint64_t a = (*next + size - 1) & ~(size - 1);
    if (a < *next || a + size > end || a + size < a)
        return false;
    *at = a;
    *next = a + size;
    return true;
}

/* An address for BAR i in a window, or KVMC_EBUSY. */
static int allot(struct pci_host *h, struct pci_device *d, unsigned i)
{
    const struct pci_bar *b = &d->bars[i];
    uint64_t at = 0, io_next = h->io_next;
    bool ok;
    if (b->kind == PCI_BAR_IO) {
        ok = take(&io_next, LAYOUT_PCI_IO_END, b->size, &at);
        h->io_next = (uint32_t)io_next;
    } else if (b->kind == PCI_BAR_MEM64 && b->size > MMIO32_SMALL_BAR) {
        ok = take(&h->mmio64_next, h->mmio64_base + LAYOUT_PCI_MMIO64_SIZE, b->size, &at);
    } else {
        ok = take(&h->mmio32_next, LAYOUT_PCI_MMIO32_END, b->size, &at) ||
             (b->kind == PCI_BAR_MEM64 &&
              take(&h->mmio64_next, h->mmio64_base + LAYOUT_PCI_MMIO64_SIZE, b->size, &at));
    }
    if (!ok)
        return kvmc_fail(KVMC_EBUSY, "PCI %s: no room for BAR %u (0x%llx bytes) in the %s "
                         "window", d->name, i, (unsigned long long)b->size,
                         b->kind == PCI_BAR_IO ? "I/O" : "memory");
    pci_bar_set_address(d, i, at);
    return KVMC_OK;
}

int pci_host_add(struct pci_host *h, struct pci_device *d)
{
    pthread_mutex_lock(&h->lock);
    unsigned slot = 1;
    while (slot < PCI_MAX_DEVICES && h->slots[slot])
        slot++;
    int err = slot < PCI_MAX_DEVICES
                  ? KVMC_OK
                  : kvmc_fail(KVMC_EBUSY, "PCI %s: all %u slots of bus 0 are taken", d->name,
                              PCI_MAX_DEVICES - 1);
    for (unsigned i = 0; i < PCI_NUM_BARS && !err; i++)
        if (d->bars[i].kind != PCI_BAR_UNUSED && d->bars[i].kind != PCI_BAR_MEM64_HIGH)
            err = allot(h, d, i);
    if (!err) {
        d->svc = h->svc;
        d->slot = slot;
        h->slots[slot] = d;
    }
    pthread_mutex_unlock(&h->lock);
    return err;
}

void pci_host_unplug(struct pci_host *h, struct pci_device *d)
{
    pthread_mutex_lock(&h->lock);
    if (d->slot && d->slot < PCI_MAX_DEVICES && h->slots[d->slot] == d) {
        pci_device_unmap(d);
        h->slots[d->slot] = NULL;
    }
    pthread_mutex_unlock(&h->lock);
}

struct pci_device *pci_host_device(struct pci_host *h, unsigned slot)
{
    pthread_mutex_lock(&h->lock);
    struct pci_device *d = slot < PCI_MAX_DEVICES && slot ? h->slots[slot] : NULL;
    pthread_mutex_unlock(&h->lock);
    return d;
}

void pci_host_describe(const struct pci_host *h, struct pci_host_desc *out)
{
    *out = (struct pci_host_desc){
        .present = h->created,
        .ecam_base = LAYOUT_PCI_ECAM, .ecam_size = LAYOUT_PCI_ECAM_SIZE,
        .mmio32_base = LAYOUT_PCI_MMIO32, .mmio32_size = LAYOUT_PCI_MMIO32_END - LAYOUT_PCI_MMIO32,
        .mmio64_base = h->mmio64_base, .mmio64_size = LAYOUT_PCI_MMIO64_SIZE,
        .io_base = LAYOUT_PCI_IO, .io_size = LAYOUT_PCI_IO_END - LAYOUT_PCI_IO,
    };
}
